import json
import shutil
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest

from conftest import REPO, make_folder_dataset, write_image
from ripik_clf import workdir as wd
from ripik_clf.augment.runner import run_augmentation
from ripik_clf.config import load_config
from ripik_clf.data.dataset import load_dataset
from ripik_clf.data.images import load_for_model
from ripik_clf.data.splits import load_or_make_splits
from ripik_clf.errors import UserError
from ripik_clf.models.classifier import build_classifier, feature_extractor, unfreeze
from ripik_clf.train.phases import model_data, run_dir, train_full, train_head


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny 3-class dataset, augmented, with the head phase trained for both models."""
    root = tmp_path_factory.mktemp("train")
    data = make_folder_dataset(root / "data", {"a": 8, "b": 8, "c": 8}, size=32)
    config = load_config(
        None,
        {
            "workdir": str(root / "work"),
            "data.path": str(data),
            "augment.copies": 2,
            "augment.size": 32,
            "augment.workers": 1,
            "train.image_size": 32,
            "train.batch_size": 8,
            "train.head_epochs": 3,
            "train.full_epochs": 2,
            "train.full_min_steps": 0,  # tiny data: no step floor
        },
    )
    dataset, skipped = load_dataset(config.data)
    splits = load_or_make_splits(dataset, config.split, config.workdir)
    run_augmentation(config, dataset, splits, skipped)
    for model in ("original", "augmented"):
        train_head(config, model)
    return config


def _own_copy(trained, tmp_path):
    """The trained workdir copied for one test that changes it: no test depends on what
    another left behind, in whatever order they run."""
    import copy
    import shutil

    config = copy.deepcopy(trained)
    config.workdir = str(tmp_path / "work")
    shutil.copytree(trained.workdir, config.workdir)
    return config


def test_no_validation_image_or_copy_in_training(trained):
    data = model_data(trained, "augmented")
    manifest = pd.read_csv(f"{trained.workdir}/augmented/manifest.csv")

    def source_id(path):  # "<class>/<stem>" for an original or any of its copies
        folder, name = path.rsplit("/", 2)[-2:]
        return f"{folder}/{name.split('__aug')[0].rsplit('.', 1)[0]}"

    assert not {source_id(p) for p in data.val_paths} & {source_id(p) for p in data.train_paths}
    assert len(data.train_paths) == 3 * len(set(manifest["source"]))  # originals + 2 copies


def test_copies_of_validation_images_are_refused(trained, tmp_path):
    config = _own_copy(trained, tmp_path)
    manifest_path = f"{config.workdir}/augmented/manifest.csv"
    manifest = pd.read_csv(manifest_path)
    splits = pd.read_csv(f"{config.workdir}/splits.csv")
    leaked = manifest.iloc[[0]].assign(source=splits.loc[splits.split == "val", "image"].iloc[0])
    pd.concat([manifest, leaked]).to_csv(manifest_path, index=False)
    with pytest.raises(UserError, match="copies of 1 validation image"):
        model_data(config, "augmented")


def test_head_on_cached_features_equals_full_model(trained):
    model = keras.models.load_model(run_dir(trained, "original") / "head.keras")
    data = model_data(trained, "original")
    images = np.stack([load_for_model(p, 32) for p in data.val_paths]).astype("float32")
    through_model = model.predict(images, verbose=0)
    features = feature_extractor(model.get_layer(index=1)).predict(images, verbose=0)
    kernel, bias = model.get_layer("classifier").get_weights()
    logits = features @ kernel + bias
    by_hand = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(through_model, by_hand / by_hand.sum(1, keepdims=True), atol=1e-5)
    metrics = json.loads((run_dir(trained, "original") / "metrics.json").read_text())
    assert set(metrics["head"]) >= {"accuracy", "macro_f1", "per_class", "epochs"}


@pytest.mark.slow
def test_batchnorm_statistics_survive_a_full_phase_step(trained):
    model = unfreeze(keras.models.load_model(run_dir(trained, "original") / "head.keras"))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    bns = [
        layer
        for layer in model.get_layer(index=1).layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    before = [np.array(w) for bn in bns for w in (bn.moving_mean, bn.moving_variance)]
    kernel_before = np.array(model.get_layer(index=1).get_layer("stem_conv").kernel)
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    model.train_on_batch(x, keras.utils.to_categorical(np.arange(8) % 3, 3))
    after = [np.array(w) for bn in bns for w in (bn.moving_mean, bn.moving_variance)]
    assert all(np.array_equal(b, a) for b, a in zip(before, after))
    assert not np.array_equal(kernel_before, model.get_layer(index=1).get_layer("stem_conv").kernel)


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise RuntimeError("simulated interruption")


@pytest.mark.slow
def test_full_phase_resumes_after_interruption(trained, tmp_path):
    trained = _own_copy(trained, tmp_path)
    out = run_dir(trained, "original")
    with pytest.raises(RuntimeError, match="simulated"):
        train_full(trained, "original", extra_callbacks=[_StopAfterFirstEpoch()])
    assert (out / "backup_full").exists()
    metrics = train_full(trained, "original")
    history = pd.read_csv(out / "history_full.csv")
    assert history["epoch"].tolist() == [0, 1]  # epoch 0 was not redone
    assert metrics["epochs"] == 2 and (out / "full.keras").exists()
    assert not keras.models.load_model(out / "full.keras").compiled  # weights only
    assert not (out / "backup_full").exists()
    assert set(json.loads((out / "metrics.json").read_text())) == {"head", "full"}


@pytest.mark.slow
@pytest.mark.parametrize("killed", ["while writing", "between the renames", "old layout"])
def test_full_phase_resumes_whatever_moment_a_kill_hit_the_backup(
    trained, killed, capsys, tmp_path
):
    """The states ``kill -9`` can leave in backup_full/ while the end-of-epoch backup is
    written: Keras' own layout left a truncated latest.weights.h5 that broke every rerun."""
    trained = _own_copy(trained, tmp_path)
    out = run_dir(trained, "original")
    with pytest.raises(RuntimeError, match="simulated"):
        train_full(trained, "original", extra_callbacks=[_StopAfterFirstEpoch()])
    backup = out / "backup_full"
    good = (backup / "current" / "latest.weights.h5").read_bytes()
    if killed == "while writing":  # a half-written next/ beside the good current/
        (backup / "next").mkdir()
        (backup / "next" / "latest.weights.h5").write_bytes(good[: len(good) // 3])
    elif killed == "between the renames":  # current/ -> previous/ done, next/ half there
        (backup / "current").rename(backup / "previous")
        (backup / "next").mkdir()
        (backup / "next" / "latest.weights.h5").write_bytes(good[:100])
    else:  # what Keras' BackupAndRestore leaves: a truncated file at the top
        for name in ("latest.weights.h5", "training_metadata.json"):
            (backup / "current" / name).rename(backup / name)
        (backup / "current").rmdir()
        (backup / "latest.weights.h5").write_bytes(good[: len(good) // 3])
    counter = _CountEpochs()
    metrics = train_full(trained, "original", extra_callbacks=[counter])
    assert pd.read_csv(out / "history_full.csv")["epoch"].tolist() == [0, 1]
    if killed == "old layout":  # unreadable: set aside, with a warning, and started over
        assert "resume backup could not be read" in capsys.readouterr().err
        assert list(out.glob("backup_full.unreadable-*")) and counter.epochs == [0, 1]
    else:
        assert counter.epochs == [1]  # resumed: epoch 0 was not redone
    assert metrics["epochs"] == 2 and not backup.exists()


class _CountEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_class_list_or_split_mismatch_is_refused(trained, tmp_path):
    config = _own_copy(trained, tmp_path)
    out = run_dir(config, "augmented")
    record = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps(dict(record, classes=["a", "b"])))
    with pytest.raises(UserError, match=r"trained on classes \['a', 'b'\]"):
        train_full(config, "augmented")


def test_a_resplit_with_another_seed_is_refused(trained, tmp_path):
    """Same images, same labels, another assignment: the dataset hash cannot see it."""
    other = _own_copy(trained, tmp_path)
    other.split.seed = 7
    dataset, _ = load_dataset(other.data)
    load_or_make_splits(dataset, other.split, other.workdir, resplit=True)
    with pytest.raises(UserError, match=r"run original was trained on another split of the "
                       r"data \(seed 42 -> 7\)"):  # fmt: skip
        train_full(other, "original")


def test_full_before_head_is_one_line(tmp_path):
    data = make_folder_dataset(tmp_path / "data", {"a": 3, "b": 3})
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "--phase",
            "full",
            "--data",
            str(data),
            "--workdir",
            str(tmp_path / "w"),
            "--model",
            "original",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: no head model in")
    assert "Traceback" not in result.stderr


def test_classifier_save_load_round_trip(tmp_path):
    from ripik_clf.models.registry import create_backbone

    model = build_classifier(create_backbone("efficientnetb0", weights=None, image_size=32), 4, 0.2)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "c.keras")
    np.testing.assert_allclose(
        keras.models.load_model(tmp_path / "c.keras").predict(x, verbose=0),
        model.predict(x, verbose=0),
        atol=1e-6,
    )


def test_a_shipped_model_keeps_its_weights_and_drops_its_training_state(tmp_path):
    """full.keras is for predicting: AdamW's moments and the EMA copies stay out of it
    (a small dense model: the same saving code as the classifier's, seconds not a minute;
    the slow full-phase tests check full.keras itself)."""
    from ripik_clf.models.classifier import for_prediction

    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(512, activation="relu"),
                              keras.layers.Dense(4, activation="softmax")])  # fmt: skip
    model.compile(keras.optimizers.AdamW(1e-3, use_ema=True), "categorical_crossentropy")
    x = np.random.default_rng(1).normal(size=(8, 16)).astype("float32")
    model.fit(x, np.eye(4)[np.arange(8) % 4], verbose=0)
    model.save(tmp_path / "trained.keras")
    for_prediction(model).save(tmp_path / "shipped.keras")
    shipped = keras.models.load_model(tmp_path / "shipped.keras")
    assert not shipped.compiled
    same = shipped.predict(x, verbose=0), model.predict(x, verbose=0)
    np.testing.assert_allclose(*same, atol=1e-6)
    sizes = [(tmp_path / f"{name}.keras").stat().st_size for name in ("shipped", "trained")]
    assert sizes[0] < 0.4 * sizes[1]  # weights alone: a third of weights + moments + EMA


@pytest.mark.parametrize(
    "damage", ["a file in its place", pytest.param("a full disk", marks=pytest.mark.slow)]
)
def test_tensorboard_logs_that_cannot_be_written_are_a_note_not_a_lost_phase(
    trained, tmp_path, capsys, monkeypatch, damage
):
    import errno

    config = _own_copy(trained, tmp_path)
    out = run_dir(config, "original")
    logs = out / "tensorboard"
    if damage == "a file in its place":
        shutil.rmtree(logs, ignore_errors=True)
        logs.write_text("not a folder")
    else:

        def full_disk(self, epoch, logs=None):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(keras.callbacks.TensorBoard, "on_epoch_end", full_disk)
    train_head(config, "original", overwrite=True)
    notes = [line for line in capsys.readouterr().out.splitlines() if "TensorBoard" in line]
    assert len(notes) == 1 and notes[0].startswith("note: TensorBoard logs in")
    assert (out / "head.keras").exists()
    assert "head" in json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_mixed_precision_full_phase(trained, tmp_path):
    config = _own_copy(trained, tmp_path)
    config.train.precision, config.train.full_epochs = "mixed", 1
    try:
        train_full(config, "augmented")
        model = keras.models.load_model(run_dir(config, "augmented") / "full.keras")
        assert model.get_layer(index=1).get_layer("stem_conv").dtype_policy.name == "mixed_float16"
        x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
        assert keras.ops.convert_to_numpy(model(x)).dtype == np.float32  # softmax stays float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "fancy"], "unknown model 'fancy'; known: original, augmented"),
        (["--backbone", "resnet50"], "unknown backbone 'resnet50'; known: efficientnet_lite0"),
        (["--image-size", "16"], "image size 16 is too small for efficientnet_lite0"),
        (["--set", "train.loss=hinge"], "invalid config value train.loss='hinge'"),
    ],
)
def test_train_script_bad_arguments(tmp_path, capsys, args, message):
    import train

    with pytest.raises(SystemExit) as exit_info:
        train.main(["--workdir", str(tmp_path / "w"), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_new_head_removes_stale_full_model(trained, capsys, tmp_path):
    trained = _own_copy(trained, tmp_path)
    out = run_dir(trained, "original")
    shutil.copy(out / "head.keras", out / "full.keras")  # stands in for a full phase
    (out / "history_full.csv").write_text("epoch\n0\n")
    with pytest.raises(UserError, match="already has head.keras, full.keras.*--overwrite"):
        train_head(trained, "original")  # a finished model is never replaced unasked
    assert (out / "full.keras").exists()
    train_head(trained, "original", overwrite=True)
    assert not (out / "full.keras").exists() and not (out / "history_full.csv").exists()
    assert "removed stale" in capsys.readouterr().out
    assert "full" not in json.loads((out / "metrics.json").read_text())


def _head_phase_exit_code(config, model):
    """``train.py --phase head`` for one model, as a user runs it; its exit code."""
    import train as train_script

    with pytest.raises(SystemExit) as exit_info:
        train_script.main(
            ["--data", config.data.path, "--workdir", config.workdir, "--phase", "head",
             "--model", model, "--image-size", "32", "--overwrite"]
        )  # fmt: skip
    return exit_info.value.code


def test_a_second_writer_of_a_run_stops_and_names_the_holder(trained, capsys, tmp_path):
    """Two head phases on one run once both exited 0 and left a corrupt head.keras."""
    trained = _own_copy(trained, tmp_path)
    out = run_dir(trained, "original")
    before = (out / "head.keras").read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from ripik_clf.locks import exclusive\n"
         f"with exclusive({str(out)!r}, 'x'):\n    print('held', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert _head_phase_exit_code(trained, "original") == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"{out} is in use by another process (pid {holder.pid}, `-c" in err
        assert (out / "head.keras").read_bytes() == before  # untouched
    finally:
        holder.kill()
        holder.wait()
    # the lock died with its holder (kill -9)
    metrics = train_head(trained, "original", overwrite=True)
    assert metrics["epochs"] >= 1


@pytest.mark.parametrize("errno_code", [28, 30], ids=["disk full", "read-only"])
def test_a_full_disk_or_read_only_folder_is_one_line_and_leaves_no_partial_file(
    trained, capsys, monkeypatch, errno_code
):
    import errno
    import os

    out = run_dir(trained, "augmented")
    before = (out / "head.keras").read_bytes()

    def failing_save(self, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"PK\x03\x04 half a zip")  # what a full disk leaves
        raise OSError(errno_code, os.strerror(errno_code), str(path))

    monkeypatch.setattr(keras.Model, "save", failing_save)
    assert _head_phase_exit_code(trained, "augmented") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"error: cannot write {out / 'head.keras'}: {os.strerror(errno_code)}"
    )
    assert (out / "head.keras").read_bytes() == before  # the old model, intact
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    assert errno.errorcode[errno_code] in ("ENOSPC", "EROFS")


@pytest.mark.slow
def test_a_failure_after_another_run_was_saved_says_it_is_safe(trained, tmp_path, monkeypatch):
    """Two runs in one command: the second fails after the first saved its model; the
    line names the saved model and how to go on (the first is not trained again)."""
    import errno
    import os

    from ripik_clf import stages

    config = _own_copy(trained, tmp_path)
    real_save = keras.Model.save

    def augmented_disk_full(self, path, *args, **kwargs):
        if "augmented" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", augmented_disk_full)
    with pytest.raises(UserError) as failed:
        stages.run_train(config, "head", overwrite=True)
    saved = run_dir(config, "original") / "head.keras"
    assert str(failed.value).endswith(
        f"(saved before it, safe: {saved}; go on with --model augmented)"
    )
    assert "No space left on device" in str(failed.value) and saved.exists()


@pytest.mark.slow
def test_overwrite_with_other_settings_trains_beside_and_swaps_when_done(
    trained, tmp_path, monkeypatch
):
    """--overwrite with another input size: while the new head trains (and when it
    fails), the old run is whole; when it is done it takes the old one's place."""
    import copy

    from ripik_clf import stages

    config = _own_copy(trained, tmp_path)
    out = run_dir(config, "original")
    shutil.copy(out / "head.keras", out / "full.keras")  # stands in for a full phase
    before = {p.name: p.read_bytes() for p in out.glob("*.keras")}
    bigger = copy.deepcopy(config)
    bigger.train.image_size, bigger.train.models = 48, ["original"]

    def dies(*args, **kwargs):
        assert (out / "full.keras").exists()  # the old run, whole, while the new trains
        raise RuntimeError("killed mid-training")

    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "fit", dies)
        with pytest.raises(RuntimeError):
            stages.run_train(bigger, "head", overwrite=True)
    assert {p.name: p.read_bytes() for p in out.glob("*.keras")} == before
    assert wd.read_run_record(out).image_size == 32

    stages.run_train(bigger, "head", overwrite=True)  # the same command again
    assert wd.read_run_record(out).image_size == 48
    assert not (out / "full.keras").exists()  # the old run's, replaced
    runs = sorted(p.name for p in out.parent.iterdir())
    assert not [r for r in runs if r.startswith("overwrite.") or r.endswith(".replaced")]
    assert "overwrite." not in (out / "config.yaml").read_text()  # named as it is now


@pytest.mark.parametrize("state", ["old gone", "both there", "no swap begun"])
def test_a_swap_cut_between_its_renames_is_finished(tmp_path, state):
    runs = tmp_path / "runs"
    for name in {"old gone": ["original.replaced", "overwrite.original"],
                 "both there": ["original.replaced", "original"],
                 "no swap begun": ["original", "overwrite.original"]}[state]:  # fmt: skip
        (runs / name).mkdir(parents=True)
        (runs / name / "what").write_text(name)
    wd.finish_swaps(tmp_path)
    left = sorted(p.name for p in runs.iterdir())
    if state == "no swap begun":  # an unfinished training beside: the old run stays
        assert left == ["original", "overwrite.original"]
    else:
        assert left == ["original"]
    expected = "overwrite.original" if state == "old gone" else "original"
    assert (runs / "original" / "what").read_text() == expected


def test_the_head_phase_says_which_training_images_it_left_out(tmp_path, capsys):
    data = make_folder_dataset(tmp_path / "data", {"a": 6, "b": 6})
    config = load_config(None, {
        "workdir": str(tmp_path / "work"), "data.path": str(data), "train.models": "original",
        "train.image_size": 32, "train.head_epochs": 1, "train.weights": "none",
    })  # fmt: skip
    dataset, _ = load_dataset(config.data)
    splits = load_or_make_splits(dataset, config.split, config.workdir)
    victim = splits[splits["split"] == "train"]["image"].iloc[0]
    good = write_image(tmp_path / "big.png", size=256).read_bytes()
    (data / victim).write_bytes(good[: len(good) // 2])  # the header reads, the pixels do not
    train_head(config, "original")
    err = capsys.readouterr().err
    assert "1 training image(s) unreadable, left out and listed in" in err
    assert victim.split("/")[-1] in err


@pytest.mark.slow  # a probe and a full phase (about 40 s): make test-slow, CI
def test_the_full_phase_starts_from_the_better_model_and_never_ends_below_it(
    trained, tmp_path, capsys
):
    """full_start: best takes the probe only when it beats the head on validation beyond
    noise (its evidence recorded); an epoch that does not beat the starting model is never
    kept, so with a learning rate too small to change anything full.keras is the starting
    model itself."""
    from ripik_clf.train.phases import train_probe

    trained = _own_copy(trained, tmp_path)
    out = run_dir(trained, "original")
    train_probe(trained, "original")
    trained.train.full_lr, trained.train.full_warmup_epochs = 1e-12, 0.0
    trained.train.ema, trained.train.dropout = False, 0.0
    result = train_full(trained, "original")
    choice = result["start_choice"]
    start = choice["chosen"]
    assert choice["default"] == "head" and result["started_from"] == start
    beyond_noise = choice["n"] >= 30 and choice["candidates"]["probe"]["interval"][0] > 0
    assert (start == "probe") == beyond_noise
    assert result["improved_on_start"] is False
    assert f"no epoch beat {start}.keras" in capsys.readouterr().out
    kept = keras.models.load_model(out / "full.keras").get_weights()
    begun = keras.models.load_model(out / f"{start}.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(kept, begun))


def test_the_full_phase_never_makes_a_split(trained, tmp_path):
    """A work directory with head.keras but no split: the full phase used to decode every
    image and write splits.csv before refusing."""
    from ripik_clf import workdir as wd

    trained = _own_copy(trained, tmp_path)
    for path in wd.split_paths(trained.workdir):
        path.unlink()
    with pytest.raises(UserError, match="no split in"):
        train_full(trained, "original")
    assert not any(path.exists() for path in wd.split_paths(trained.workdir))
    with pytest.raises(UserError, match="never makes a split"):
        train_full(trained, "original", resplit=True)


@pytest.mark.slow
def test_a_full_disk_in_the_full_phase_names_the_file_and_the_rerun_finishes(
    trained, capsys, monkeypatch, tmp_path
):
    """It once left history_full.csv at 0 bytes, named no file, and broke every rerun."""
    import errno
    import os

    from ripik_clf import atomic

    config = _own_copy(trained, tmp_path)
    out = run_dir(config, "original")
    real = atomic.atomic_write_csv

    def full_disk(frame, path):
        if path.name == "history_full.csv":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(frame, path)

    monkeypatch.setattr(atomic, "atomic_write_csv", full_disk)
    import train as train_script

    argv = ["--workdir", config.workdir, "--phase", "full", "--model", "original",
            "--set", "train.full_epochs=2", "--set", "train.full_min_steps=0"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        train_script.main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: cannot write {out / 'history_full.csv'}: {os.strerror(errno.ENOSPC)}"
    )
    assert not (out / "history_full.csv").exists() and not (out / "full.keras").exists()
    monkeypatch.undo()
    assert train_script.main(argv) in (None, 0)  # the disk has room again: it finishes
    assert len(pd.read_csv(out / "history_full.csv")) == 2 and (out / "full.keras").exists()
