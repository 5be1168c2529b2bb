"""The workdir records its dataset: after ``augment_offline.py --data X`` the later stages
need no ``--data`` (the design card's commands, as a user types them: test_split_record
runs them without the data, which they never walk)."""

import json

import pytest

import augment_offline
import train
from conftest import QUICK_COPIES, TINY_TRAIN, make_folder_dataset
from ripik_clf.data.splits import recorded_settings

TRAIN = TINY_TRAIN


def test_naming_another_dataset_ignores_the_record_and_the_split_check_refuses(tmp_path, capsys):
    data = make_folder_dataset(tmp_path / "data", {"cat": 4, "dog": 4})
    other = make_folder_dataset(tmp_path / "other", {"ant": 4, "bee": 4})
    work = str(tmp_path / "work")
    augment_offline.main(["--data", str(data), "--workdir", work, *QUICK_COPIES])
    assert recorded_settings(work)["data.path"] == str(data.resolve())
    with pytest.raises(SystemExit) as stop:
        train.main(["--phase", "head", "--workdir", work, "--data", str(other), *TRAIN])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resplit" in err[0]


def test_a_workdir_of_an_older_version_records_nothing(tmp_path):
    older = {"seed": 1, "folds": 0, "val_fraction": 0.2, "fingerprint": "f", "images": [],
             "labels": []}  # fmt: skip
    (tmp_path / "splits.json").write_text(json.dumps(older))  # no "data": nothing recorded
    assert recorded_settings(tmp_path) == {}
    assert recorded_settings(tmp_path / "missing") == {}
