"""The split records where each image is and what it held: only the stages that make the
split (augmentation, the head and probe phases) and the audit walk the dataset; every
later stage reads the split's own record and refuses images that changed or are gone."""

import os
from pathlib import Path

import pandas as pd
import pytest

import ensemble
import train
from conftest import (
    ONE_VARIANT,
    TINY_TRAIN,
    augmented_workdir,
    make_folder_dataset,
    write_image,
)
from ripik_clf import workdir as wd
from ripik_clf.cli.main import main as ripik_main
from ripik_clf.config import load_config
from ripik_clf.data.dataset import load_dataset
from ripik_clf.data.splits import load_or_make_splits, recorded_settings, recorded_split
from ripik_clf.errors import UserError
from ripik_clf.predict.members import predict_members

ONE, TRAIN = ONE_VARIANT, TINY_TRAIN


def _split(tmp_path, counts=None):
    data = make_folder_dataset(tmp_path / "data", counts or {"cat": 5, "dog": 5})
    config = load_config(None, {"workdir": str(tmp_path / "w"), "data.path": str(data)})
    table = load_or_make_splits(load_dataset(config.data)[0], config.split, config.workdir)
    return data, config, table


def test_the_split_records_each_image_path_and_content(tmp_path):
    data, config, table = _split(tmp_path)
    for column in wd.CHECK_COLUMNS:
        assert column in table.columns
    first = table.iloc[0]
    assert os.path.samefile(first["path"], data / first["image"])
    assert first["bytes"] == (data / first["image"]).stat().st_size
    read, classes = recorded_split(config)
    assert classes == ["cat", "dog"]
    assert list(read["path"]) == list(table["path"])


def _rewrite(path):  # other bytes
    write_image(path, seed=999)


def _touch(path):  # same bytes, another mtime (a copy without -p)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def _remove(path):
    path.unlink()


def _truncate(path):
    path.write_bytes(path.read_bytes()[:20])


CHANGES = [(_rewrite, "other content"), (_touch, None), (_remove, "cannot be read"),
           (_truncate, "other content")]  # fmt: skip


@pytest.mark.parametrize("change, refusal", CHANGES, ids=[c.__name__ for c, _ in CHANGES])
def test_a_later_stage_refuses_an_image_that_changed_and_accepts_one_only_touched(
    tmp_path, change, refusal
):
    _, config, table = _split(tmp_path)
    victim = table["path"].iloc[3]
    change(Path(victim))
    if refusal is None:
        recorded_split(config)  # the sha1 still matches: accepted
        return
    with pytest.raises(UserError) as err:
        recorded_split(config)
    message = str(err.value)
    assert "\n" not in message and refusal in message and victim in message
    assert "--resplit" in message


def test_a_split_of_an_older_version_gains_its_paths_once(tmp_path, capsys):
    _, config, table = _split(tmp_path)
    old = table[list(wd.SPLIT_COLUMNS)]
    wd.write_split_table(config.workdir, old)
    again, _ = recorded_split(config)
    assert "older version" in capsys.readouterr().err
    assert list(again["sha1"]) == list(table["sha1"])
    assert list(again["split"]) == list(table["split"])
    assert wd.CHECK_COLUMNS[0] in wd.read_split_table(config.workdir).columns  # saved
    recorded_split(config)
    assert "older version" not in capsys.readouterr().err  # once


@pytest.mark.parametrize("column, value", [("bytes", "many"), ("mtime_ns", ""), ("path", "")])
def test_a_damaged_check_column_names_the_file(tmp_path, column, value):
    _, config, table = _split(tmp_path)
    wd.write_split_table(config.workdir, table.astype(str).assign(**{column: value}))
    with pytest.raises(UserError, match="splits.csv is damaged"):
        recorded_split(config)


def test_a_moved_dataset_is_found_again_by_the_split_stage(tmp_path):
    data, config, table = _split(tmp_path)
    moved = data.rename(tmp_path / "moved")
    with pytest.raises(UserError, match="cannot be read"):
        recorded_split(config)
    config.data.path = str(moved)
    again = load_or_make_splits(load_dataset(config.data)[0], config.split, config.workdir)
    assert all(str(p).startswith(str(moved.resolve())) for p in again["path"])
    assert list(again["split"]) == list(table["split"])
    recorded_split(config)
    assert recorded_settings(config.workdir)["data.path"] == str(moved.resolve())


def test_the_stages_after_the_split_never_walk_the_data_nor_predict_validation_again(
    tmp_path, monkeypatch
):
    data, work = augmented_workdir(tmp_path)
    train.main(["--phase", "head", "--workdir", work, *TRAIN])

    def walked(*args, **kwargs):
        raise AssertionError("a stage after the split walked the dataset")

    import ripik_clf.data.dataset as dataset_module
    import ripik_clf.train.common as common

    for module in (dataset_module, common):
        monkeypatch.setattr(module, "load_dataset", walked)
    monkeypatch.setattr(dataset_module, "discover", walked)
    train.main(["--phase", "full", "--workdir", work, *TRAIN])
    import ripik_clf.predict.cache as cache_module

    predicted = []  # (path, TTA) of every image the ensemble's models ran on

    def counting(members, paths, tta, *args, **kwargs):
        predicted.extend((str(p), tta) for p in paths)
        return predict_members(members, paths, tta, *args, **kwargs)

    monkeypatch.setattr(cache_module, "predict_members", counting)
    out = tmp_path / "s.csv"
    ensemble.main(["--out", str(out), "--test", str(tmp_path / "test"), "--workdir", work,
                   "--tta", "none", *ONE])  # fmt: skip
    assert len(pd.read_csv(out)) == 3
    saved = (Path(work) / "runs" / "original" / "config.yaml").read_text()
    assert f"path: {data}" in saved  # the recorded dataset, resolved into each run
    assert "val_fraction: 0.34" in saved  # and its split settings
    val_paths = set(wd.read_split_table(work).query("split == 'val'")["path"])
    assert val_paths and {(p, "flip") for p in val_paths} <= set(predicted)  # TTA: predicted
    assert not {(p, "none") for p in val_paths} & set(predicted)  # the full phase's, reused
    exported = tmp_path / "exported"
    assert ripik_main(["export", "original", "--workdir", work, "--format",
                       "savedmodel", "--out", str(exported)]) in (0, None)  # fmt: skip


def test_finetune_has_no_resplit_and_the_full_phase_refuses_one(tmp_path, capsys):
    import finetune

    with pytest.raises(SystemExit) as stop:
        finetune.main(["--workdir", str(tmp_path / "w"), "--resplit"])
    assert stop.value.code == 2 and "--resplit" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        train.main(["--phase", "full", "--workdir", str(tmp_path / "w"), "--resplit"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "never makes a split" in err[0]
    assert not (tmp_path / "w" / "splits.csv").exists()


def test_the_split_stage_records_a_touched_image_s_new_mtime(tmp_path):
    _, config, table = _split(tmp_path)
    victim = Path(table["path"].iloc[2])
    _touch(victim)
    again = load_or_make_splits(load_dataset(config.data)[0], config.split, config.workdir)
    assert again["mtime_ns"].iloc[2] == victim.stat().st_mtime_ns  # later stages: a stat
    assert list(again["sha1"]) == list(table["sha1"])
    assert wd.read_split_table(config.workdir)["mtime_ns"].iloc[2] == victim.stat().st_mtime_ns


def test_a_pipe_in_place_of_a_recorded_image_is_refused_not_opened(tmp_path):
    """A FIFO given the recorded image's size and mtime used to block the reader."""
    import os

    import pandas as pd

    from ripik_clf.data import splits

    image = tmp_path / "x.png"
    image.write_bytes(b"")
    os.remove(image)
    os.mkfifo(image)
    stat = os.stat(image)
    table = pd.DataFrame({"path": [str(image)], "bytes": [stat.st_size],
                          "mtime_ns": [stat.st_mtime_ns], "sha1": ["0" * 40]})  # fmt: skip
    assert splits._changed_images(table) == [
        (str(image), "not a regular file (a pipe, socket or device)")
    ]


def split_edits():
    """(name, edit(table)) per way splits.csv can be edited by hand."""
    yield (
        "relabelled",
        lambda t: t.assign(label=t["label"].where(t.index != 0, t["label"].iloc[-1])),
    )
    yield "moved to val", lambda t: t.assign(split=t["split"].where(t.index != 0, "val"))
    yield "every row val", lambda t: t.assign(split="val")
    yield "a row deleted", lambda t: t.iloc[1:]
    yield "a row added", lambda t: pd.concat([t, t.iloc[:1].assign(image="new.png")])
    yield "an unknown label", lambda t: t.assign(label=t["label"].where(t.index != 0, "zebra"))
    yield "header alone", lambda t: t.iloc[:0]


@pytest.mark.parametrize("name,edit", list(split_edits()), ids=[e[0] for e in split_edits()])
def test_a_split_edited_by_hand_is_refused_naming_it(tmp_path, name, edit):
    from ripik_clf import workdir as wd
    from ripik_clf.errors import UserError

    data = make_folder_dataset(tmp_path / "data", {"a": 4, "b": 4})
    config = load_config(None, {"data.path": str(data), "workdir": str(tmp_path / "w")})
    dataset, _ = load_dataset(config.data)
    load_or_make_splits(dataset, config.split, config.workdir)
    table = pd.read_csv(tmp_path / "w" / "splits.csv", dtype=str, keep_default_na=False)
    wd.read_split_table(config.workdir)  # as written: read
    edit(table).to_csv(tmp_path / "w" / "splits.csv", index=False)
    with pytest.raises(UserError, match="splits.csv.*edited by hand"):
        wd.read_split_table(config.workdir)
