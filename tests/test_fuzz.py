"""The fuzzing harness (tests/fuzz_cases.py) over every class of generated bad input:
0 tracebacks, 0 refusals that do not name the file, 0 files silently dropped, 0 reads
outside the data root; damaged records of a work directory: refused in one line naming
the file, or set aside and redone."""

import fuzz_cases as fc
import pytest

import augment_offline
import ensemble
import train
from conftest import make_folder_dataset, write_image

pytestmark = pytest.mark.slow  # ~300 generated cases (CI runs them: make test-slow)

CASES = list(fc.all_cases())


def test_the_harness_generates_at_least_300_cases():
    records = list(fc.record_cases(RECORD_CASES_EACH))
    assert len(CASES) + len(records) >= 300


@pytest.mark.parametrize("name,build", CASES, ids=[name for name, _ in CASES])
def test_a_generated_bad_input_is_refused_in_one_line_or_used(name, build, tmp_path):
    outcome = fc.run_case(name, build, tmp_path)
    assert outcome.holds, outcome


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A work directory after augmentation, the head phase and ensemble.py."""
    root = tmp_path_factory.mktemp("fuzz")
    data = make_folder_dataset(root / "data", {"a": 5, "b": 5, "c": 5})
    for i in range(3):
        write_image(root / "test" / f"t{i}.png", seed=60 + i)
    work = str(root / "work")
    augment_offline.main(["--data", str(data), "--workdir", work, "--copies", "1", "--size",
                          "32", "--workers", "1", "--set", "augment.flips=none"])  # fmt: skip
    train.main(["--phase", "head", "--workdir", work, "--set", "train.image_size=32", "--set",
                "train.weights=none", "--set", "train.head_epochs=1",
                "--model", "original"])  # fmt: skip
    ensemble.main(["--workdir", work, "--test", str(root / "test"), "--out",
                   str(root / "s.csv"), "--members", "original:head", "--tta", "none",
                   "--select", "none"])  # fmt: skip
    return root


RECORD_CASES_EACH = 3
RECORDS = list(fc.record_cases(RECORD_CASES_EACH))


@pytest.mark.parametrize("name,record,rng", RECORDS, ids=[r[0] for r in RECORDS])
def test_a_damaged_record_is_one_line_naming_it_or_set_aside(name, record, rng, trained, tmp_path):
    outcome = fc.run_record_case(name, record, rng, trained, tmp_path)
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
