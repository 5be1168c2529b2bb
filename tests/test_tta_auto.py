"""ensemble.tta: auto offers the flip views a member's training allows and keeps them only
when they lower the ensemble's validation log loss beyond noise (the answers are known for
these sets: tests/orientation_sets.py; simulated sets: tests/test_evidence.py)."""

import json
import shutil

import pytest
from orientation_sets import write_set

import ensemble
from ripik_clf.config import load_config
from ripik_clf.train.phases import train_head


def _tta_used(tmp_path, kind):
    """A member recorded as trained on every orientation, ensembled with tta auto."""
    data = write_set(tmp_path / kind, kind, per_class=40, size=64, seed=3)
    test = tmp_path / "test"
    test.mkdir()
    for path in sorted(data.glob("*/000.png")):
        shutil.copy(path, test / f"{path.parent.name}.png")
    work = tmp_path / "w"
    config = load_config(None, {
        "workdir": str(work), "data.path": str(data), "train.models": "original",
        "train.image_size": 64, "train.head_epochs": 100, "train.batch_size": 16,
    })  # fmt: skip
    train_head(config, "original")
    run = work / "runs" / "original"
    shutil.copy(run / "head.keras", run / "full.keras")
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(dict(record, flips="all", trained_with_flips=True)))
    ensemble.main(["--data", str(data), "--workdir", str(work), "--test", str(test),
                   "--out", str(tmp_path / "sub.csv"), "--tta", "auto",
                   "--members", "original"])  # fmt: skip
    definition = json.loads((work / "report" / "ensemble.json").read_text())
    assert "- tta: " in (work / "report" / "report.md").read_text()
    losses = definition["tta_log_loss"]
    assert set(losses) == {"none", "auto"}
    (choice,) = [c for c in definition["choices"] if c["name"] == "tta"]  # its evidence
    assert choice["chosen"] == definition["tta"] and choice["n"] >= 30
    low, high = choice["candidates"]["auto"]["interval"]
    assert (low > 0) == (definition["tta"] == "auto")
    assert low <= choice["candidates"]["auto"]["estimate"] <= high
    return definition, choice["candidates"]["auto"]["estimate"]


@pytest.mark.parametrize("kind,helps", [("arrows", False), ("rotated_glyphs", True)])
def test_flip_views_are_kept_only_on_evidence(tmp_path, kind, helps):
    """A mirrored arrow pointing left points right: flip views raise the log loss, so
    none; a mirrored texture is another sample of its class, so the views lower it, and
    they are used when that gain is beyond noise (on 32 validation images it is not
    always: the simulated sets of tests/test_evidence.py check both ways at 110)."""
    definition, gain = _tta_used(tmp_path, kind)
    assert (gain > 0) == helps
    if not helps:
        assert definition["tta"] == "none" and definition["members"][0]["tta"] == "none"
    member_views = definition["members"][0]["tta"]
    assert member_views == ("flip" if definition["tta"] == "auto" else "none")
