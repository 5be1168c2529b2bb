"""Records are checked by value, not only by shape: an ensemble.json edited by hand (its
classes reversed or cut, a negative temperature, one weight for two families) and a
metrics.json with numbers that are not numbers are refused or shown blank in one line,
never used to predict wrong labels with exit 0, never a traceback."""

import json
import math

import pytest
from fuzz_cases import call
from test_ensemble_run import run, setup  # noqa: F401 - the trained members, reused

from ripik_clf.cli.main import main as cli
from ripik_clf.report.leaderboard import leaderboard_rows


def edits():
    """(name, edit(record)) per way a record can hold a wrong value."""
    yield "classes reversed", lambda r: r.update(classes=r["classes"][::-1])
    yield "classes cut to two", lambda r: r.update(classes=r["classes"][:2])
    yield "one class", lambda r: r.update(classes=r["classes"][:1])
    yield "classes repeated", lambda r: r.update(classes=[r["classes"][0]] * len(r["classes"]))
    yield "temperature -1", lambda r: r.update(temperature=-1)
    yield "temperature 0", lambda r: r.update(temperature=0)
    yield "one weight for two families", lambda r: r.update(weights=r["weights"][:1])
    yield "negative weight", lambda r: r.update(weights=[-1.0] * len(r["weights"]))
    yield "zero weights", lambda r: r.update(weights=[0.0] * len(r["weights"]))
    yield "threshold 7", lambda r: r.update(tta_threshold=7)
    yield "member temperature -2", lambda r: r["members"][0]["temperatures"].update(none=-2)
    yield "member of no family", lambda r: r["members"][0].update(family="nobody")


EDITS = list(edits())


@pytest.fixture(scope="module")
def submitted(setup):  # noqa: F811
    """The ensemble.json of one ensemble run, as written (each case edits a copy)."""
    run(setup, "--select", "none", "--tta", "none")
    return (setup / "work" / "report" / "ensemble.json").read_text()


@pytest.mark.parametrize("name,edit", EDITS, ids=[e[0] for e in EDITS])
def test_an_ensemble_record_edited_by_value_is_refused(setup, submitted, name, edit):  # noqa: F811
    path = setup / "work" / "report" / "ensemble.json"
    record = json.loads(submitted)
    edit(record)
    path.write_text(json.dumps(record))
    code, line = call(cli, ["predict", str(setup / "test"), "--workdir", str(setup / "work")])
    assert code == 2 and "ensemble.json" in line and "Traceback" not in line, line


@pytest.mark.parametrize("value", ["many", 1e400, -3, None, [1], {"a": 1}, math.nan])
def test_metrics_that_are_not_numbers_leave_blanks_in_the_runs_table(value):
    from ripik_clf.workdir import RunRecord

    record = RunRecord(classes=["a", "b"], image_size=32)
    metrics = {"head": {"epochs": value, "train_images": value, "seconds": value,
                        "accuracy": value, "macro_f1": value, "n": value}}  # fmt: skip
    (row,) = leaderboard_rows([("run", record, metrics)], batch_size=32)
    assert row["epochs"] == 0 and row["seconds"] == 0.0 and row["val_macro_f1"] is None
