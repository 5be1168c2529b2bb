"""The ensemble's validation set and weights (predict/validation.py, predict/combiner.py),
with stand-in members: which images each member is scored on, and how weights are chosen."""

from types import SimpleNamespace

import numpy as np
import pytest

from conftest import make_folder_dataset
from ripik_clf.config import EnsembleConfig, load_config
from ripik_clf.data.dataset import load_dataset
from ripik_clf.data.splits import load_or_make_splits, split_record
from ripik_clf.errors import UserError
from ripik_clf.predict import validation
from ripik_clf.predict.combiner import SoftVote


def _member(name, family, held_out, split, classes=("cat", "dog")):
    record = SimpleNamespace(held_out=held_out, split=split)
    return SimpleNamespace(name=name, family=family, record=record, classes=list(classes))


@pytest.fixture
def folds(tmp_path):
    """A 3-fold split of 12 images and its record."""
    data = make_folder_dataset(tmp_path / "data", {"cat": 6, "dog": 6})
    config = load_config(
        None, {"workdir": str(tmp_path / "w"), "data.path": str(data), "split.folds": 3}
    )
    table = load_or_make_splits(load_dataset(config.data)[0], config.split, config.workdir)
    return config, table, split_record(table, config.split)


def test_fold_members_are_scored_out_of_fold_one_group_per_fold(folds):
    config, table, record = folds
    members = [
        _member(f"{family}_fold{k}", family, list(table[table.fold == k]["image"]), record)
        for family in ("original", "augmented")
        for k in range(3)
    ]
    work = validation.validation_work(config, members, ["original", "augmented"])
    assert len(work) == 3  # one group per fold: both families' models of that fold
    seen = []
    for group, paths in work:
        assert {m.name.split("_fold")[1] for m in group} == {group[0].name[-1]}
        assert len(group) == 2
        seen += paths
    assert sorted(seen) == sorted(table["path"])  # every image once: out-of-fold for all


def test_members_of_another_split_are_refused_unless_mixed_is_allowed(folds):
    config, table, record = folds
    other = dict(record, seed=record["seed"] + 1)
    members = [_member("original_fold0", "original", list(table["image"]), other)]
    with pytest.raises(UserError, match="another split"):
        validation.validation_work(config, members, ["original"])


def test_no_image_held_out_by_every_family_is_refused(folds):
    config, table, record = folds
    config.ensemble.allow_mixed = True
    first, second = list(table["image"][:6]), list(table["image"][6:])
    members = [_member("a", "a", first, record), _member("b", "b", second, record)]
    with pytest.raises(UserError, match="no image is held out by every member"):
        validation.validation_work(config, members, ["a", "b"])


def test_a_member_without_a_record_of_its_validation_images_is_refused(folds):
    config, _, record = folds
    with pytest.raises(UserError, match="no record of its validation images"):
        validation.validation_work(config, [_member("old", "old", None, record)], ["old"])


def _probabilities(y, accuracy, rng):
    """Softmax-like rows right on about ``accuracy`` of the images."""
    p = rng.dirichlet(np.ones(3), size=len(y)) * 0.3
    right = rng.random(len(y)) < accuracy
    p[np.arange(len(y)), np.where(right, y, (y + 1) % 3)] += 0.7
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("select", ["bagged", "greedy", "none"])
def test_weights_given_win_and_each_rule_returns_one_weight_per_family(select, capsys):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    stacked = np.stack([_probabilities(y, 0.9, rng), _probabilities(y, 0.4, rng)])
    ens = EnsembleConfig(select=select)
    combiner, choices, notes = SoftVote.fit(stacked, y, ens, ["good", "poor"])
    weights = combiner.weights
    choice = next((c for c in choices if c.name == "weights"), None)
    assert len(weights) == 2
    if select == "none":
        assert weights == (1.0, 1.0) and notes == [] and choice is None
    else:
        assert weights[0] > weights[1]  # the good member outweighs the poor one
        assert "good" in capsys.readouterr().out
        # bagged: its out-of-bag evidence, beyond noise here (200 images, 0.9 vs 0.4)
        assert (choice is None) == (select == "greedy")
        if choice:
            assert choice.chosen == "selected" and choice.candidates["selected"]["interval"][0] > 0
    given = EnsembleConfig(select=select, member_weights=[0.25, 0.75])
    assert SoftVote.fit(stacked, y, given, ["good", "poor"])[0].weights == (0.25, 0.75)
