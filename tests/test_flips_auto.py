"""augment.flips: auto chooses on the data: none where orientation is the label, all where
it carries nothing (the answers are known for these sets: tests/orientation_sets.py)."""

import json

import pytest
from orientation_sets import write_set

import augment_offline
from ripik_clf import workdir as wd
from ripik_clf.augment import flips
from ripik_clf.config import load_config
from ripik_clf.data.dataset import load_dataset
from ripik_clf.data.splits import load_or_make_splits

SMALL = {"train.image_size": 32, "train.weights": "imagenet", "augment.flips": "auto"}


def _measure(tmp_path, data):
    config = load_config(None, {"data.path": data, "workdir": str(tmp_path / "w"), **SMALL})
    dataset, _ = load_dataset(config.data)
    splits = load_or_make_splits(dataset, config.split, config.workdir)
    return flips.measure_flips(config, dataset, splits)


def test_arrows_get_no_flips_through_the_script(tmp_path):
    data = write_set(tmp_path / "arrows", "arrows", per_class=20)
    work = tmp_path / "w"
    augment_offline.main(["--data", str(data), "--workdir", str(work), "--copies", "1",
                          "--size", "32", "--workers", "1", "--set", "augment.flips=auto",
                          "--set", "train.image_size=32"])  # fmt: skip
    settings = json.loads((wd.augmented_dir(work) / "settings.json").read_text())
    assert settings["flips"] == "none"
    scores = settings["flips_auto"]["scores"]
    assert scores["none"]["log_loss"] < scores["horizontal"]["log_loss"] < scores["all"]["log_loss"]
    # The choice is kept: a rerun does not measure again, and the copies stay valid.
    augment_offline.main(["--data", str(data), "--workdir", str(work), "--copies", "1",
                          "--size", "32", "--workers", "1",
                          "--set", "train.image_size=32"])  # fmt: skip
    assert json.loads((wd.augmented_dir(work) / "settings.json").read_text())["flips"] == "none"


def test_rotated_textures_get_every_orientation(tmp_path):
    data = write_set(tmp_path / "glyphs", "rotated_glyphs", per_class=20)
    result = _measure(tmp_path, str(data))
    assert result["chosen"] == "all", result["scores"]


@pytest.mark.slow  # 3,000 feature vectors (about 25 s): make test-slow, CI
def test_the_demo_digits_get_no_flips(tmp_path, monkeypatch):
    monkeypatch.setattr(flips, "MAX_TRAIN_IMAGES", 400)  # a per-class sample keeps it fast
    from ripik_clf.data.demo import ensure_demo_data

    ensure_demo_data()
    result = _measure(tmp_path, None)
    assert result["chosen"] == "none", result["scores"]


def test_the_lowest_log_loss_wins_and_ties_go_to_fewer_orientations():
    def s(loss):
        return {"log_loss": loss, "macro_f1": 0.5, "accuracy": 0.5}

    assert flips.choose({"none": s(0.5), "horizontal": s(0.4), "all": s(0.45)}) == "horizontal"
    assert flips.choose({"none": s(0.4), "horizontal": s(0.4), "all": s(0.4)}) == "none"


@pytest.mark.parametrize("value, expected", [("true", "all"), ("false", "none"),
                                             ("horizontal", "horizontal")])  # fmt: skip
def test_flips_values_and_the_old_booleans(value, expected):
    assert load_config(None, {"augment.flips": value}).augment.flips == expected


def test_tta_auto_follows_what_training_showed():
    from types import SimpleNamespace

    from ripik_clf.predict.tta import member_tta

    def member(flips_seen):
        return SimpleNamespace(record=wd.RunRecord(classes=["a"], image_size=32, flips=flips_seen))

    assert member_tta(member("none"), "auto") == "none"
    assert member_tta(member("horizontal"), "auto") == "flip"
    assert member_tta(member("all"), "auto") == "flip"
