"""Where each setting comes from: defaults < the work directory's record < --config file
< --set < dedicated flags (``cli/common.resolve_config``)."""

import pandas as pd
import pytest

from ripik_clf import workdir as wd
from ripik_clf.cli.common import add_data_args, make_parser, resolve_config
from ripik_clf.errors import UserError


def _resolve(argv, may_resplit=True):
    parser = make_parser("test")
    add_data_args(parser)
    parser.add_argument("--seed", type=int)  # a dedicated flag (augment.seed)
    return resolve_config(parser.parse_args(argv), may_resplit=may_resplit)


@pytest.fixture
def recorded(tmp_path):
    """A work directory whose split recorded data folder ``photos`` and split seed 5."""
    photos = tmp_path / "photos"
    photos.mkdir()
    work = tmp_path / "work"
    table = pd.DataFrame({"image": ["a/1.png"], "label": ["a"], "split": ["train"], "fold": [-1]})
    record = wd.SplitRecord(data={"data.path": str(photos.resolve())}, seed=5, val_fraction=0.3,
                            folds=0, fingerprint="f", images=["a/1.png"], labels=["a"])  # fmt: skip
    wd.write_split(work, table, record)
    config = tmp_path / "c.yaml"
    config.write_text("augment:\n  seed: 11\n  copies: 3\nsplit:\n  val_fraction: 0.25\n")
    return tmp_path, work, config


def test_each_layer_wins_over_the_one_below(recorded):
    root, work, config_file = recorded
    defaults = _resolve([])
    assert (defaults.augment.seed, defaults.augment.copies) == (42, 14)

    from_record = _resolve(["--workdir", str(work)])
    assert from_record.data.path == str((root / "photos").resolve())  # no --data needed
    assert (from_record.split.seed, from_record.split.val_fraction) == (5, 0.3)

    from_file = _resolve(["--workdir", str(work), "--config", str(config_file)])
    assert (from_file.augment.seed, from_file.augment.copies) == (11, 3)
    assert from_file.split.val_fraction == 0.25  # the file beats the record
    assert from_file.split.seed == 5  # what the file does not say, the record still does

    from_set = _resolve(["--workdir", str(work), "--config", str(config_file),
                         "--set", "augment.seed=12", "--set", "augment.copies=4"])  # fmt: skip
    assert (from_set.augment.seed, from_set.augment.copies) == (12, 4)

    from_flag = _resolve(["--workdir", str(work), "--config", str(config_file),
                          "--set", "augment.seed=12", "--seed", "13"])  # fmt: skip
    assert from_flag.augment.seed == 13


def test_another_dataset_ignores_the_record(recorded, tmp_path):
    _, work, _ = recorded
    other = tmp_path / "other"
    other.mkdir()
    config = _resolve(["--workdir", str(work), "--data", str(other)])
    assert config.data.path == str(other)
    assert config.split.seed == 42  # the default: the record was of another dataset


def test_a_stage_after_the_split_refuses_another_dataset(recorded, tmp_path):
    _, work, _ = recorded
    (tmp_path / "other").mkdir()
    with pytest.raises(UserError, match=r"--data .*other is not the data the split in"):
        _resolve(["--workdir", str(work), "--data", str(tmp_path / "other")], may_resplit=False)


def test_a_bad_set_is_one_error():
    with pytest.raises(UserError, match="KEY=VALUE"):
        _resolve(["--set", "augment.seed"])
