"""ensemble.tta: auto offers the flip views a member's training allows and keeps them only
when they lower the ensemble's validation log loss (the answers are known for these sets:
tests/orientation_sets.py)."""

import json
import shutil

import numpy as np
import pytest
from orientation_sets import write_set

import ensemble
from ripik_clf.config import load_config
from ripik_clf.predict.voting import choose_tta
from ripik_clf.train.phases import train_head


def test_the_lower_log_loss_wins_and_a_tie_keeps_no_tta():
    y = np.array([0, 1, 0, 1])
    sure = np.array([[[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]]])
    unsure = np.array([[[0.6, 0.4], [0.4, 0.6], [0.6, 0.4], [0.4, 0.6]]])
    assert choose_tta({"none": unsure, "auto": sure}, y)[0] == "auto"
    assert choose_tta({"none": sure, "auto": unsure}, y)[0] == "none"
    mode, scores = choose_tta({"none": sure, "auto": sure.copy()}, y)
    assert mode == "none" and scores["none"] == scores["auto"]
    # Given weights: the vote they make is judged (the second member has weight 0).
    pair_none, pair_auto = np.concatenate([sure, unsure]), np.concatenate([unsure, sure])
    assert choose_tta({"none": pair_none, "auto": pair_auto}, y, [1.0, 0.0])[0] == "none"
    assert choose_tta({"none": pair_none, "auto": pair_auto}, y, [0.0, 1.0])[0] == "auto"


def _tta_used(tmp_path, kind):
    """A member recorded as trained on every orientation, ensembled with tta auto."""
    data = write_set(tmp_path / kind, kind, per_class=20, size=64, seed=3)
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
    assert "TTA auto" in (work / "report" / "report.md").read_text()
    losses = definition["tta_log_loss"]  # recorded: the choice is the lower of the two
    assert set(losses) == {"none", "auto"} and definition["tta"] == min(losses, key=losses.get)
    return definition["tta"], definition["members"][0]["tta"]


@pytest.mark.parametrize("kind,expected", [("arrows", "none"), ("rotated_glyphs", "auto")])
def test_flip_views_are_kept_only_where_the_data_allows_them(tmp_path, kind, expected):
    """A mirrored arrow pointing left points right: flip views blur the answer, so none;
    a mirrored texture is another sample of its class, so the flip views stay."""
    tta, member_views = _tta_used(tmp_path, kind)
    assert tta == expected
    assert member_views == ("flip" if expected == "auto" else "none")
