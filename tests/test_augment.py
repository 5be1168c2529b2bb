import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import augment_offline  # the script is importable: its work is in main()
from conftest import REPO, make_folder_dataset
from ripik_clf.augment.recipe import augment_copy, build_recipe, copy_seed, plan_copies


def run(data, workdir, *extra, copies=3, size=32, workers=1):
    argv = [
        "--data",
        str(data),
        "--workdir",
        str(workdir),
        "--copies",
        str(copies),
        "--size",
        str(size),
        "--workers",
        str(workers),
        *(["--set", "augment.flips=all"] if not any("flips" in a for a in extra) else []),
        *extra,
    ]  # flips: as conftest.QUICK_COPIES
    augment_offline.main(argv)


def digests(workdir):
    out = workdir / "augmented"
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*.jpg"))
    }


def test_copies_layout_and_manifest(small_dataset, tmp_path):
    run(small_dataset, tmp_path / "w")
    splits = pd.read_csv(tmp_path / "w" / "splits.csv")
    manifest = pd.read_csv(tmp_path / "w" / "augmented" / "manifest.csv")
    train = set(splits.loc[splits.split == "train", "image"])
    assert list(manifest.columns) == ["source", "path", "label", "copy", "source_sha256"]
    first = manifest.iloc[0]  # the content each copy was made from
    source = (small_dataset / first["source"]).read_bytes()
    assert first["source_sha256"] == hashlib.sha256(source).hexdigest()
    assert len(manifest) == 3 * len(train)
    assert set(manifest["source"]) == train  # validation images are never augmented
    assert set(manifest["copy"]) == {0, 1, 2}
    row = manifest.iloc[0]
    assert row["path"] == f"{row['label']}/{row['source'].split('/')[-1][:-4]}__aug0.jpg"
    assert sorted(digests(tmp_path / "w")) == sorted(manifest["path"])
    assert (tmp_path / "w" / "augmented" / "config.yaml").exists()


@pytest.mark.slow  # child processes: make test-slow (CI runs it)
def test_same_bytes_across_runs_workers_and_shards(small_dataset, tmp_path, capsys):
    run(small_dataset, tmp_path / "one", workers=1)
    run(small_dataset, tmp_path / "two", workers=2)
    run(small_dataset, tmp_path / "shards", "--shard", "1/2", workers=1)
    assert "manifest INCOMPLETE" in capsys.readouterr().out
    run(small_dataset, tmp_path / "shards", "--shard", "2/2", workers=1)
    reference = digests(tmp_path / "one")
    assert digests(tmp_path / "two") == reference
    assert digests(tmp_path / "shards") == reference
    run(small_dataset, tmp_path / "one")  # a rerun does no work
    assert " 0 written" in capsys.readouterr().out
    assert digests(tmp_path / "one") == reference


def _slow_job(tmp_path, workers):
    """A job long enough to interrupt: the command and its data."""
    data = make_folder_dataset(tmp_path / "data", {"a": 30, "b": 30}, size=64)
    return [sys.executable, str(REPO / "augment_offline.py"), "--data", str(data),
            "--copies", "6", "--size", "256", "--workers", str(workers)]  # fmt: skip


def _start_and_wait_for_copies(cmd, workdir, **popen):
    """Start the job and return once a few copies are on disk."""
    proc = subprocess.Popen(cmd + ["--workdir", str(workdir)], stdout=subprocess.DEVNULL, **popen)
    out = workdir / "augmented"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.rglob("*__aug*.jpg"))) < 5:
        time.sleep(0.01)
    return proc, out


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_bytes(tmp_path):
    cmd = _slow_job(tmp_path, workers=1)
    subprocess.run(cmd + ["--workdir", str(tmp_path / "clean")], check=True, capture_output=True)
    victim, out = _start_and_wait_for_copies(cmd, tmp_path / "killed", stderr=subprocess.DEVNULL)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    partial = len(list(out.rglob("*__aug*.jpg")))
    assert 0 < partial < len(digests(tmp_path / "clean")), "kill came too late to test resume"
    subprocess.run(cmd + ["--workdir", str(tmp_path / "killed")], check=True, capture_output=True)
    assert digests(tmp_path / "killed") == digests(tmp_path / "clean")
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_bad_images_are_listed_in_skipped_csv(small_dataset, tmp_path):
    (small_dataset / "cat" / "zero.jpg").write_bytes(b"")
    rng = np.random.default_rng(0)
    for i in range(8):  # truncated JPEGs pass the header check; most land in training
        path = small_dataset / "dog" / f"trunc_{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    run(small_dataset, tmp_path / "w")
    skipped = pd.read_csv(tmp_path / "w" / "augmented" / "skipped.csv")
    reasons = dict(zip(skipped["path"].map(lambda p: p.split("/")[-1]), skipped["reason"]))
    assert "empty" in reasons["zero.jpg"]
    splits = pd.read_csv(tmp_path / "w" / "splits.csv")
    assert not splits.image.str.contains("trunc").any()  # the split left them out
    for i in range(8):
        assert "truncated" in reasons[f"trunc_{i}.jpg"]


def test_changed_settings_are_refused_then_overwritten(small_dataset, tmp_path, capsys):
    run(small_dataset, tmp_path / "w", size=32)
    with pytest.raises(SystemExit) as exit_info:
        run(small_dataset, tmp_path / "w", size=48)
    assert exit_info.value.code == 2
    assert "size 32->48" in capsys.readouterr().err
    run(small_dataset, tmp_path / "w", "--overwrite", size=48)
    manifest = pd.read_csv(tmp_path / "w" / "augmented" / "manifest.csv")
    assert len(digests(tmp_path / "w")) == len(manifest)


def test_resplit_removes_copies_of_images_now_in_validation(small_dataset, tmp_path):
    run(small_dataset, tmp_path / "w")
    run(small_dataset, tmp_path / "w", "--resplit", "--set", "split.seed=7")
    splits = pd.read_csv(tmp_path / "w" / "splits.csv")
    val = set(splits.loc[splits.split == "val", "image"])
    on_disk = set(digests(tmp_path / "w"))
    manifest = pd.read_csv(tmp_path / "w" / "augmented" / "manifest.csv")
    assert on_disk == set(manifest["path"])
    assert not set(manifest["source"]) & val


def test_plan_disambiguates_same_stem():
    sources = pd.DataFrame({"image": ["a/x.png", "b/x.jpg", "c/y.png"], "label": ["k"] * 3})
    plan = plan_copies(sources, copies=2)
    assert plan["path"].is_unique and len(plan) == 6
    assert "k/y__aug1.jpg" in set(plan["path"])


def test_copy_seed_depends_on_every_part():
    seeds = {copy_seed(s, i, k) for s in (1, 2) for i in ("a.png", "b.png") for k in (0, 1)}
    assert len(seeds) == 8 and copy_seed(1, "a.png", 0) == copy_seed(1, "a.png", 0)


def test_each_transform_draws_independently():
    image = np.zeros((8, 8, 3), np.uint8)
    image[0, 1] = 255  # an asymmetric marker shows which flips fired
    pipeline = A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)])
    outcomes = {tuple(np.argwhere(augment_copy(pipeline, image, s)[:, :, 0])[0]) for s in range(40)}
    assert len(outcomes) == 4  # all four flip combinations occur


def test_recipe_keeps_shape_and_dtype():
    image = np.full((64, 64, 3), 128, np.uint8)
    for flips in (True, False):
        out = augment_copy(build_recipe(flips), image, seed=3)
        assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def _script(*args, cwd):
    return subprocess.run(
        [sys.executable, str(REPO / "augment_offline.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["--data", "nowhere"], "error: data path not found: nowhere"),
        (["--shard", "3/2"], "error: --shard 3/2: I must be between 1 and N"),
        (["--copies", "0"], "error: invalid config value augment.copies=0"),
    ],
)
def test_script_errors_are_one_line(tmp_path, args, message):
    result = _script(*args, "--workdir", str(tmp_path / "w"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == message or result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "w" / "augmented").exists()


@pytest.mark.slow  # child processes: make test-slow (CI runs it)
def test_ctrl_c_leaves_no_partial_file(tmp_path):
    proc, out = _start_and_wait_for_copies(
        _slow_job(tmp_path, workers=2), tmp_path / "w", stderr=subprocess.PIPE, text=True
    )
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "interrupted after writing" in stderr and "Traceback" not in stderr
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_an_undecodable_source_is_a_listed_skip_not_an_incomplete_run(tmp_path, capsys):
    """A file whose header reads but whose pixels do not: a listed skip, never "manifest
    INCOMPLETE" on every rerun (the split leaves it out; augmentation lists it)."""
    from conftest import make_folder_dataset, write_image

    data = make_folder_dataset(tmp_path / "data", {"cat": 6, "dog": 6})
    good = write_image(tmp_path / "big.jpg", size=256, fmt="JPEG").read_bytes()
    for name in ("img_000.jpg", "img_001.jpg", "img_002.jpg", "img_003.jpg"):
        (data / "cat" / name).write_bytes(good[: len(good) // 2])  # truncated JPEGs
    for _ in range(2):
        run(data, tmp_path / "w", workers=1)
        out = capsys.readouterr().out
        summary = out.strip().splitlines()[-1]
        assert "INCOMPLETE" not in summary and "manifest complete" in summary
        assert "4 file(s) skipped" in summary
    skipped = pd.read_csv(tmp_path / "w" / "augmented" / "skipped.csv")
    assert skipped["path"].str.contains("img_00").all() and len(skipped) >= 1


def test_a_source_that_breaks_after_the_split_is_said_once_per_run(tmp_path, capsys):
    from conftest import make_folder_dataset, write_image

    data = make_folder_dataset(tmp_path / "data", {"cat": 6, "dog": 6})
    run(data, tmp_path / "w", workers=1)
    splits = pd.read_csv(tmp_path / "w" / "splits.csv")
    source = splits[splits.split == "train"]["image"].iloc[0]
    for copy in (tmp_path / "w" / "augmented").rglob(f"{Path(source).stem}__aug*.jpg"):
        copy.unlink()
    good = write_image(tmp_path / "big.png", size=256).read_bytes()
    (data / source).write_bytes(good[: len(good) // 2])  # same name: the split still fits
    for _ in range(2):
        run(data, tmp_path / "w", workers=1)
        summary = capsys.readouterr().out.strip().splitlines()[-1]
        assert "manifest complete (1 unreadable source image(s): no copies)" in summary


def test_a_read_only_work_folder_is_one_line(small_dataset, tmp_path, capsys, monkeypatch):
    import errno

    def read_only(self, data):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "write_bytes", read_only)  # every copy's write (one worker)
    with pytest.raises(SystemExit) as exit_info:
        run(small_dataset, tmp_path / "w", workers=1)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"error: cannot write {tmp_path / 'w' / 'augmented'}")
    assert err.endswith("Read-only file system")
    assert not list((tmp_path / "w" / "augmented").rglob("*.jpg"))


def test_a_source_edited_after_augmentation_gets_new_copies(small_dataset, tmp_path):
    """Content, not names: the manifest records what each copy was made from."""
    from conftest import write_image

    run(small_dataset, tmp_path / "w")
    before = digests(tmp_path / "w")
    manifest = pd.read_csv(tmp_path / "w" / "augmented" / "manifest.csv")
    edited = manifest["source"].iloc[0]
    mtime = (small_dataset / edited).stat().st_mtime_ns
    write_image(small_dataset / edited, seed=4321)
    os.utime(small_dataset / edited, ns=(mtime, mtime))  # same time: only content changed
    run(small_dataset, tmp_path / "w")
    after = digests(tmp_path / "w")
    changed = {p for p in before if before[p] != after.get(p)}
    assert changed == set(manifest.loc[manifest["source"] == edited, "path"])


def test_a_second_writer_of_the_copies_stops_and_names_the_holder(small_dataset, tmp_path):
    from ripik_clf.errors import UserError
    from ripik_clf.locks import exclusive

    work = tmp_path / "w"
    run(small_dataset, work)
    with exclusive(work, "augment_offline.py", shared=False, name=".augment.lock"):
        with pytest.raises(SystemExit) as stop:
            run(small_dataset, work, "--overwrite", size=48)
        assert stop.value.code == 2
    with exclusive(work, "augment_offline.py", shared=True, name=".augment.lock"):
        with pytest.raises(UserError, match="in use by another process"):
            with exclusive(work, "x", shared=False, name=".augment.lock"):
                pass
    assert (work / "augmented" / "settings.json").exists()  # nothing was deleted


def test_shards_started_together_with_other_settings_are_refused_not_mixed(
    small_dataset, tmp_path, capsys
):
    """Two shards of one job check the copies' settings in turn: while the first holds
    the check (here the test holds it and then writes other settings, as a shard with
    ``--size 48`` would), the second waits, then reads them and refuses."""
    import json
    import threading

    from ripik_clf.locks import exclusive

    work = tmp_path / "w"
    run(small_dataset, work, "--shard", "1/2")
    settings = work / "augmented" / "settings.json"
    codes = []

    def second_shard():
        try:
            run(small_dataset, work, "--shard", "2/2")
            codes.append(0)
        except SystemExit as stop:
            codes.append(stop.code)

    with exclusive(work, "augment_offline.py", name=".augment-settings.lock"):
        shard = threading.Thread(target=second_shard)
        shard.start()
        time.sleep(1.0)
        assert shard.is_alive() and not codes  # waiting for the check, not refused
        record = json.loads(settings.read_text())
        settings.write_text(json.dumps(dict(record, size=48)))  # the other shard's settings
    shard.join(timeout=60)
    assert codes == [2]
    assert "holds copies made with other settings (size 48->32)" in capsys.readouterr().err
    assert json.loads(settings.read_text())["size"] == 48  # left as the first shard wrote it


def test_every_setting_that_decides_a_copy_reaches_the_record_and_the_check():
    """Fields are derived, not listed: a new augment setting that is not declared
    NOT_IN_COPIES must be a field of settings.json's record, or this fails."""
    from dataclasses import fields

    from ripik_clf import workdir as wd
    from ripik_clf.augment.runner import _settings_record
    from ripik_clf.config import AugmentConfig

    aug = AugmentConfig(flips="none")
    record = _settings_record(aug)
    assert set(record) == set(wd.AugmentSettings(**record).made_with)
    assert set(aug.copy_settings()) | {"recipe_version"} == set(record)
    assert {f.name for f in fields(AugmentConfig)} - set(AugmentConfig.NOT_IN_COPIES) == set(
        aug.copy_settings()
    )


@pytest.mark.parametrize("left", ["an older version's plain lock", "a damaged lock database"])
def test_lock_files_left_by_an_older_version_or_damaged_are_not_fatal(tmp_path, left):
    """The copies' lock (a readers-writer lock in SQLite) beside what an older version
    left under its name (a plain lock file with a holder note), or a lock database that
    is no database: augmentation takes the lock all the same."""
    from ripik_clf.locks import exclusive

    (tmp_path / ".augment.lock").write_text('{"pid": 1, "command": "old", "since": 0}')
    if left == "a damaged lock database":
        (tmp_path / ".augment.lock.db").write_text("not a database")
    for shared in (False, True):
        with exclusive(tmp_path, "augment_offline.py", shared=shared, name=".augment.lock"):
            pass
