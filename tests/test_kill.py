"""``kill -9`` at chosen moments of a training phase, then the same command again: it
finishes, with the model an uninterrupted run makes (the phases are deterministic on
CPU with a fixed seed); and at seeded random moments of every command (the k-th commit
of any write, or a random delay), whose rerun leaves what an uninterrupted run leaves.

Each moment is a real SIGKILL, sent by the child to itself just before a chosen write
is committed (the n-th ``os.replace`` or rename onto a given name): the states a kill
leaves are exactly those, since every write is a temporary file and one rename
(tests/kill_cases.py).
"""

import kill_cases as kc
import pytest
from kill_cases import SMALL

from ripik_clf import workdir as wd

pytestmark = pytest.mark.slow  # about twenty child processes (CI runs them: make test-slow)


def _run(work, phase, kill=None):
    return _script(["train.py", "--phase", phase, "--workdir", str(work), *SMALL], kill)


def _script(argv, kill=None):
    return kc.run_script(argv, kill)


def _killed_then_run_again(command, kill):
    """``command(kill)`` dies by the kill; the same command again (``command(None)``)
    exits 0."""
    killed = command(kill)
    assert killed.returncode == -9, killed.stderr[-2000:]
    again = command(None)
    assert again.returncode == 0, again.stderr[-2000:]


def _phase_rerun_matches(work, phase, kill, reference, phases):
    """A phase killed at ``kill`` and run again: the uninterrupted run's model (that of
    ``reference``), and the metrics of ``phases``."""
    _killed_then_run_again(lambda k: _run(work, phase, k), kill)
    run = wd.run_dir(work, "original")
    model = f"{phase}.keras"
    assert _same_model(run / model, wd.run_dir(reference, "original") / model)
    assert set(wd.read_run_metrics(run)) == phases


@pytest.fixture(scope="module")
def augmented_workdir(tmp_path_factory):
    return kc.augmented_colour_classes(tmp_path_factory.mktemp("kill"))


def _copy(work, tmp_path, name):
    import shutil

    target = tmp_path / name
    shutil.copytree(work, target)
    return target


def _same_model(a, b):
    return kc.same(kc.fingerprint_of_model(a), kc.fingerprint_of_model(b))


@pytest.fixture(scope="module")
def reference(augmented_workdir, tmp_path_factory):
    """The uninterrupted head and full phases."""
    work = _copy(augmented_workdir, tmp_path_factory.mktemp("ref"), "work")
    for phase in ("head", "full"):
        done = _run(work, phase)
        assert done.returncode == 0, done.stderr[-2000:]
    return work


HEAD_MOMENTS = [
    ("replace", "metrics.json", 1),  # the phase's records half written
    ("replace", "head.keras", 1),  # the model's commit
]


@pytest.mark.parametrize("kill", HEAD_MOMENTS, ids=lambda k: f"{k[0]}-{k[1]}-{k[2]}")
def test_a_head_phase_killed_anywhere_finishes_when_run_again(
    augmented_workdir, reference, tmp_path, kill
):
    work = _copy(augmented_workdir, tmp_path, "work")
    _phase_rerun_matches(work, "head", kill, reference, {"head"})


FULL_MOMENTS = [
    ("replace", "full_best.keras", 1),  # the best checkpoint's write, epoch 1
    ("replace", "history_full.csv", 2),  # the history row of epoch 2
    ("rename", "next", 2),  # the commit of epoch 2's backup
    ("replace", "metrics.json", 1),  # after training, the records
    ("replace", "full.keras", 1),  # the model's commit
]


@pytest.mark.parametrize("kill", FULL_MOMENTS, ids=lambda k: f"{k[0]}-{k[1]}-{k[2]}")
def test_a_full_phase_killed_anywhere_finishes_with_the_uninterrupted_model(
    reference, tmp_path, kill
):
    work = _copy(reference, tmp_path, "work")
    run = wd.run_dir(work, "original")
    for name in ("full.keras", "history_full.csv", "val_probabilities_full.csv"):
        (run / name).unlink()
    metrics = wd.read_run_metrics(run)
    wd.write_run_metrics(run, {"head": metrics["head"]})
    _killed_then_run_again(lambda k: _run(work, "full", k), kill)
    assert _same_model(run / "full.keras", wd.run_dir(reference, "original") / "full.keras")
    history = wd.read_history(wd.history_path(run, "full"))
    assert history["epoch"].tolist() == list(range(len(history)))
    assert wd.read_run_metrics(run)["full"]["epochs"] == len(history)


PROBE_MOMENTS = [
    ("replace", "val_probabilities_probe.csv", 1),  # the phase's records half written
    ("replace", "probe.keras", 1),  # the model's commit
]


OVERWRITE_MOMENTS = [  # --overwrite with another input size: trained beside, swapped in
    ("replace", "head.keras", 1),  # the new run's model, beside the old one
    ("replace", "original.replaced", 1),  # the swap: the old run set aside
    ("replace", "original", 1),  # the swap: the new run in its place
]


@pytest.mark.parametrize("kill", OVERWRITE_MOMENTS, ids=lambda k: f"{k[0]}-{k[1]}")
def test_overwrite_killed_anywhere_loses_no_trained_model(reference, tmp_path, kill):
    """After the kill the old run is whole (its head and full models, as trained) or the
    swap is done; the same command again ends with the new run in its place."""
    work = _copy(reference, tmp_path, "work")
    run = wd.run_dir(work, "original")
    old = {name: (run / name).read_bytes() for name in ("head.keras", "full.keras")}
    argv = ["train.py", "--phase", "head", "--workdir", str(work), *SMALL, "--set",
            "train.image_size=48", "--overwrite"]  # fmt: skip
    killed = _script(argv, kill)
    assert killed.returncode == -9, killed.stderr[-2000:]
    wd.finish_swaps(work)  # what any next stage does first
    if wd.read_run_record(run).image_size == 32:  # not swapped: the old run, untouched
        assert {name: (run / name).read_bytes() for name in old} == old
    again = _script(argv)
    assert again.returncode == 0, again.stderr[-2000:]
    assert wd.read_run_record(run).image_size == 48 and (run / "head.keras").exists()
    assert sorted(p.name for p in run.parent.iterdir() if p.is_dir()) == ["original"]


PUBLISH_MOMENTS = [  # ensemble.py's publication: the journal's commit, then each rename
    ("replace", ".publish.json", 1),
    ("replace", "submission.csv", 1),
    ("replace", "submission_probabilities.csv", 1),
    ("replace", "report.html", 1),
    ("replace", "ensemble.json", 1),
]


@pytest.mark.parametrize("kill", PUBLISH_MOMENTS, ids=lambda k: f"{k[0]}-{k[1]}")
def test_a_kill_while_publishing_never_leaves_a_submission_predict_disagrees_with(
    reference, tmp_path, kill
):
    """A first submission (no TTA), then another (flip TTA: other probabilities) killed
    at a commit point of its publication, and no rerun: what predict rebuilds from
    ensemble.json gives the probabilities of the submission on disk, old or new."""
    import numpy as np
    import pandas as pd

    from conftest import write_image
    from ripik_clf.predict.ensemble import Ensemble

    work = _copy(reference, tmp_path, "work")
    tests = [write_image(tmp_path / "test" / f"t{i}.png", seed=90 + i) for i in range(3)]
    argv = ["ensemble.py", "--workdir", str(work), "--test", str(tmp_path / "test"), "--out",
            str(tmp_path / "submission.csv"), "--members", "original", "--tta"]  # fmt: skip
    assert _script([*argv, "none"]).returncode == 0
    killed = _script([*argv, "flip"], kill)
    assert killed.returncode == -9, killed.stderr[-2000:]
    result = Ensemble.load(work).predict([str(p) for p in tests])  # finishes a publication
    on_disk = pd.read_csv(tmp_path / "submission_probabilities.csv").set_index("image_id")
    expected = on_disk.loc[[p.name for p in tests], result.classes].to_numpy()
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    labels = pd.read_csv(tmp_path / "submission.csv").set_index("image_id")["label"]
    assert result.labels == [labels[p.name] for p in tests]


@pytest.fixture(scope="module")
def reference_probe(reference, tmp_path_factory):
    """The uninterrupted probe phase, after the head and full phases."""
    work = _copy(reference, tmp_path_factory.mktemp("probe_ref"), "work")
    done = _run(work, "probe")
    assert done.returncode == 0, done.stderr[-2000:]
    return work


@pytest.mark.parametrize("kill", PROBE_MOMENTS, ids=lambda k: f"{k[0]}-{k[1]}-{k[2]}")
def test_a_probe_phase_killed_anywhere_finishes_with_the_uninterrupted_model(
    reference, reference_probe, tmp_path, kill
):
    work = _copy(reference, tmp_path, "work")
    _phase_rerun_matches(work, "probe", kill, reference_probe, {"head", "full", "probe"})


ENSEMBLE_MOMENTS = [
    ("replace", "submission.csv", 1),  # the submission's commit
    ("replace", "report.md", 1),  # the report, half written
    ("replace", "report.html", 1),  # its page
    ("replace", "ensemble.json", 1),  # the ensemble record's commit (the last write)
]


@pytest.mark.parametrize("kill", ENSEMBLE_MOMENTS, ids=lambda k: f"{k[0]}-{k[1]}-{k[2]}")
def test_ensemble_killed_anywhere_writes_everything_when_run_again(reference, tmp_path, kill):
    import pandas as pd

    from conftest import write_image

    work = _copy(reference, tmp_path, "work")
    for i in range(3):
        write_image(tmp_path / "test" / f"t{i}.png", seed=80 + i)
    argv = ["ensemble.py", "--workdir", str(work), "--test", str(tmp_path / "test"), "--out",
            str(tmp_path / "submission.csv"), "--members", "original", "--tta", "none"]  # fmt: skip
    _killed_then_run_again(lambda k: _script(argv, k), kill)
    assert len(pd.read_csv(tmp_path / "submission.csv")) == 3
    assert wd.read_ensemble_definition(work).members[0].name == "original"
    assert (work / "report" / "report.md").exists() and (work / "report" / "report.html").exists()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Every command run once, uninterrupted: the state before each, and what each left."""
    return kc.reference_pipeline(tmp_path_factory.mktemp("pipeline"))


# One seeded moment per command (benchmarks/faults.py --kills N tries more).
RANDOM_KILLS = 1


def test_a_kill_at_a_random_moment_of_any_command_is_repaired_by_running_it_again(
    pipeline, tmp_path
):
    failed = []
    for name, stage, moment in kc.kill_cases(pipeline, RANDOM_KILLS):
        outcome = kc.run_kill_case(name, stage, moment, pipeline, tmp_path / stage)
        if not outcome.holds:
            failed.append(outcome)
    assert not failed, failed
