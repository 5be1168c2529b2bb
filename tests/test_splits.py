import numpy as np
import pandas as pd
import pytest

from conftest import write_image
from ripik_clf.config import SplitConfig
from ripik_clf.data.dataset import discover
from ripik_clf.data.splits import (
    load_or_make_splits,
    stratified_folds,
    stratified_split,
    training_images,
)
from ripik_clf.errors import UserError

LABELS = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 10)


def test_split_is_stratified():
    split = stratified_split(LABELS, 0.2, seed=42)
    for label, n in (("a", 50), ("b", 30), ("c", 10)):
        assert (split[LABELS == label] == "val").sum() == round(n * 0.2)


def test_split_is_reproducible_and_seed_dependent():
    assert (stratified_split(LABELS, 0.2, 42) == stratified_split(LABELS, 0.2, 42)).all()
    assert (stratified_split(LABELS, 0.2, 42) != stratified_split(LABELS, 0.2, 7)).any()


def test_small_classes_keep_one_each_side_and_singletons_train(capsys):
    labels = np.array(["a", "a", "b", "c", "c", "c"])
    split = stratified_split(labels, 0.05, seed=0)
    assert (split[labels == "a"] == "val").sum() == 1  # at least one, even at 5%
    assert split[labels == "b"].tolist() == ["train"]
    assert "single image" in capsys.readouterr().err


def test_folds_cover_once_and_are_stratified():
    folds = stratified_folds(LABELS, 5, seed=0)
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    for fold in range(5):
        assert (folds[LABELS == "c"] == fold).sum() == 2


def test_too_many_folds():
    with pytest.raises(UserError, match="class 'c' has only 10"):
        stratified_folds(LABELS, 11, seed=0)


def test_saved_split_is_reused_and_guards_the_dataset(small_dataset, tmp_path):
    work = tmp_path / "work"
    dataset, _ = discover(small_dataset)
    first = load_or_make_splits(dataset, SplitConfig(), work)
    assert (work / "splits.csv").exists()
    again = load_or_make_splits(dataset, SplitConfig(), work)
    pd.testing.assert_frame_equal(first, again)
    assert set(first.loc[first.split == "train", "image"]).isdisjoint(
        first.loc[first.split == "val", "image"]
    )

    write_image(small_dataset / "cat" / "new.png", seed=99)
    changed, _ = discover(small_dataset)
    with pytest.raises(UserError, match=r"dataset changed .*1 added, 0 removed.*--resplit"):
        load_or_make_splits(changed, SplitConfig(), work)
    with pytest.raises(UserError, match="seed"):
        load_or_make_splits(dataset, SplitConfig(seed=1), work)
    remade = load_or_make_splits(changed, SplitConfig(), work, resplit=True)
    assert len(remade) == len(first) + 1


def test_training_images_never_include_validation(small_dataset, tmp_path):
    dataset, _ = discover(small_dataset)
    splits = load_or_make_splits(dataset, SplitConfig(), tmp_path / "w")
    train = training_images(splits)
    assert (train["split"] == "train").all() and len(train) == (splits.split == "train").sum()


def test_an_image_that_cannot_be_decoded_is_left_out_of_the_split_and_listed(tmp_path, capsys):
    """Its header reads (so discovery keeps it), its pixels do not: the split skips it,
    so no later stage (a validation pass in particular) ever meets it."""
    import json

    from conftest import make_folder_dataset, write_image
    from ripik_clf.config import load_config
    from ripik_clf.data.dataset import load_dataset
    from ripik_clf.train.phases import train_head

    data = make_folder_dataset(tmp_path / "data", {"a": 6, "b": 6})
    good = write_image(tmp_path / "big.png", size=256).read_bytes()
    for i in range(3):  # whichever side the split would have put them on
        (data / "a" / f"img_00{i}.png").write_bytes(good[: len(good) // 2])
    config = load_config(None, {
        "workdir": str(tmp_path / "work"), "data.path": str(data), "train.models": "original",
        "train.image_size": 32, "train.head_epochs": 1, "train.weights": "none",
    })  # fmt: skip
    train_head(config, "original")  # makes the split; would stop on an unreadable val image
    assert "3 image(s) cannot be decoded and are left out of the split" in capsys.readouterr().err
    splits = pd.read_csv(tmp_path / "work" / "splits.csv")
    left_out = [f"a/img_00{i}.png" for i in range(3)]
    assert not splits["image"].isin(left_out).any() and len(splits) == 9
    meta = json.loads((tmp_path / "work" / "splits.json").read_text())
    assert [u["image"] for u in meta["unreadable"]] == left_out
    dataset, _ = load_dataset(config.data)  # a later stage: same data, split accepted
    assert load_or_make_splits(dataset, config.split, config.workdir).equals(splits)


def test_a_later_stage_never_makes_the_split(small_dataset, tmp_path):
    from ripik_clf.data.splits import load_splits

    dataset, _ = discover(small_dataset)
    with pytest.raises(UserError, match="no split in .*: run augment_offline.py"):
        load_splits(dataset, SplitConfig(), tmp_path / "w")
    assert not (tmp_path / "w").exists()
    made = load_or_make_splits(dataset, SplitConfig(), tmp_path / "w")
    assert load_splits(dataset, SplitConfig(), tmp_path / "w").equals(made)
