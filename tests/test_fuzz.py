"""The fuzzing harness (tests/fuzz_cases.py) over every class of generated bad input:
0 tracebacks, 0 refusals that do not name the file, 0 files silently dropped, 0 reads
outside the data root; damaged records of a work directory: refused in one line naming
the file, or set aside and redone."""

import fuzz_cases as fc
import fuzz_state_cases as fs
import pytest

import train

pytestmark = pytest.mark.slow  # ~300 generated cases (CI runs them: make test-slow)

CASES = list(fc.all_cases())


def test_the_harness_generates_at_least_400_cases():
    records = list(fc.record_cases(RECORD_CASES_EACH))
    assert len(CASES) + len(records) + len(STATE_CASES) >= 400


@pytest.mark.parametrize("name,build", CASES, ids=[name for name, _ in CASES])
def test_a_generated_bad_input_is_refused_in_one_line_or_used(name, build, tmp_path):
    outcome = fc.run_case(name, build, tmp_path)
    assert outcome.holds, outcome


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A work directory after augmentation, the head phase and ensemble.py."""
    return fs.build_trained(tmp_path_factory.mktemp("fuzz"))


RECORD_CASES_EACH = 3
RECORDS = list(fc.record_cases(RECORD_CASES_EACH))


@pytest.mark.parametrize("name,record,rng", RECORDS, ids=[r[0] for r in RECORDS])
def test_a_damaged_record_is_one_line_naming_it_or_set_aside(name, record, rng, trained, tmp_path):
    outcome = fc.run_record_case(name, record, rng, trained, tmp_path)
    assert outcome.holds, outcome


STATE_CASES = list(fs.all_state_cases())


@pytest.mark.parametrize("name,run", STATE_CASES, ids=[name for name, _ in STATE_CASES])
def test_a_generated_state_fault_is_refused_in_one_line_or_harmless(name, run, trained, tmp_path):
    """Outputs aimed at owned or read files, work folders linked elsewhere, records
    edited by value, caches poisoned by value: no traceback, hang, silent wrong result,
    lost state or write outside (tests/fuzz_state_cases.py)."""
    outcome = run(trained, tmp_path)
    assert outcome.holds, outcome


def test_export_of_a_run_path_finds_its_work_directory(trained, tmp_path, capsys):
    """`export W/runs/original/` without --workdir once said the hint-less `no
    validation image ... found` (the path names its work directory)."""
    from ripik_clf.cli.main import main as cli

    run = trained / "work" / "runs" / "original"
    code, message = fc.call(cli, ["export", f"{run}/", "--format", "savedmodel", "--out",
                                  str(tmp_path / "exp")])  # fmt: skip
    assert code == 0, message
    assert (tmp_path / "exp" / "original_savedmodel" / "saved_model.pb").exists()


def test_an_input_size_that_cannot_fit_in_memory_is_refused_before_any_work(trained, tmp_path):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(trained / "work", work)
    code, message = fc.call(train.main, ["--phase", "head", "--workdir", str(work),
                                         "--image-size", "20000", "--run", "huge"])  # fmt: skip
    assert code == 2 and "needs about" in message and "GiB" in message
    run = work / "runs" / "huge"  # at most the run's lock file: no record, no model
    assert not [p.name for p in run.glob("*") if p.name != ".lock"]
