"""The work directory's records: one reader and one writer each."""

import json

import pytest

from ripik_clf import workdir as wd
from ripik_clf.errors import UserError


def test_run_record_round_trips_and_keeps_the_file_format(tmp_path):
    record = wd.RunRecord(
        classes=["a", "b"], image_size=32, backbone="efficientnet_lite0", weights="none",
        variant="augmented", fold=2, split={"folds": 3}, held_out=["a/1.png"],
        trained_with_flips=True, temperature={"full": 1.5},
    )  # fmt: skip
    wd.write_run_record(tmp_path, record)
    saved = json.loads((tmp_path / wd.RUN_JSON).read_text())
    assert saved["model"] == "augmented" and "variant" not in saved  # older readers' key
    assert wd.read_run_record(tmp_path) == record
    assert record.temperature_of(tmp_path / "full.keras") == 1.5
    assert record.temperature_of(tmp_path / "head.keras") == 1.0


def test_a_missing_or_broken_run_record_is_none_or_one_line(tmp_path):
    assert wd.read_run_record(tmp_path) is None
    with pytest.raises(UserError, match="no run.json beside .*full.keras"):
        wd.read_run_record(tmp_path, for_model=tmp_path / "full.keras")
    (tmp_path / wd.RUN_JSON).write_text('{"classes": ["a"]}')  # no image size
    with pytest.raises(UserError, match="is not a run record"):
        wd.read_run_record(tmp_path)


def test_member_names_map_to_model_files(tmp_path):
    assert wd.model_file(tmp_path, "original") == tmp_path / "runs/original/full.keras"
    assert wd.model_file(tmp_path, "original:probe") == tmp_path / "runs/original/probe.keras"
    with pytest.raises(UserError, match="RUN:PHASE"):
        wd.model_file(tmp_path, "original:best")


def test_export_falls_back_to_the_head_model(tmp_path):
    from ripik_clf.predict.export import resolve_model_file

    run = wd.run_dir(tmp_path, "original")
    with pytest.raises(UserError, match="no trained model for run 'original'"):
        resolve_model_file(tmp_path, "original")
    run.mkdir(parents=True)
    (run / "head.keras").write_bytes(b"head")
    assert resolve_model_file(tmp_path, "original") == run / "head.keras"
    (run / "full.keras").write_bytes(b"full")
    assert resolve_model_file(tmp_path, "original") == run / "full.keras"


def test_validation_probabilities_round_trip(tmp_path):
    wd.write_val_probabilities(tmp_path, "head", ["x.png", "y.png"], ["a", "b"],
                               [[0.25, 0.75], [1.0, 0.0]])  # fmt: skip
    read = wd.read_val_probabilities(tmp_path, "head", ["a", "b"])
    assert set(read) == {"x.png", "y.png"} and list(read["x.png"]) == [0.25, 0.75]
    assert wd.read_val_probabilities(tmp_path, "full", ["a", "b"]) is None


@pytest.mark.parametrize(
    "damage",
    ["", "epoch,loss\n0,0.5\n1,", "loss\n0.5\n", "\x00\xff\xfe garbage\n", 'epoch\n"0\n'],
    ids=["empty", "cut mid-row", "no epoch column", "binary", "open quote"],
)
def test_a_damaged_history_is_set_aside_and_the_phase_resumes(tmp_path, damage, capsys):
    """What a kill left under the old in-place CSVLogger (0 bytes), or a hand edit."""
    path = wd.history_path(tmp_path, "full")
    path.write_bytes(damage.encode("latin-1"))
    table = wd.read_history(path)
    if len(table):  # a cut last row that still parses is kept: only whole rows count
        assert table["epoch"].tolist() == [0]
        return
    assert not path.exists() and (tmp_path / "history_full.csv.damaged-1").exists()
    assert "set aside" in capsys.readouterr().err


def test_the_history_logger_writes_whole_files_and_keeps_resumed_rows(tmp_path):
    from ripik_clf.train.callbacks import WholeFileCSVLogger

    path = wd.history_path(tmp_path, "full")
    logger = WholeFileCSVLogger(path, append=True)
    logger.on_train_begin()
    for epoch in range(2):
        logger.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1)})
    resumed = WholeFileCSVLogger(path, append=True)
    resumed.on_train_begin()
    resumed.on_epoch_end(1, {"loss": 0.25})  # epoch 1 redone after a kill: replaced
    resumed.on_epoch_end(2, {"loss": 0.2})
    assert wd.read_history(path)[["epoch", "loss"]].values.tolist() == [
        [0, 1.0],
        [1, 0.25],
        [2, 0.2],
    ]
    assert not list(tmp_path.glob(".*tmp*"))


def test_a_batch_that_cannot_fit_in_memory_is_one_line():
    from ripik_clf.train.common import refuse_a_batch_that_cannot_fit

    gib = 2**30
    refuse_a_batch_that_cannot_fit(224, 32, training=True, available=8 * gib)
    with pytest.raises(UserError, match=r"batch of 32 images at 10000 px needs about .* GiB"):
        refuse_a_batch_that_cannot_fit(10_000, 32, training=True, available=24 * gib)
    with pytest.raises(UserError, match=r"--batch-size \(at most ~\d+ at this size\)"):
        refuse_a_batch_that_cannot_fit(1024, 64, training=True, available=24 * gib)


def test_a_damaged_split_record_is_an_error_not_the_demo_data(tmp_path):
    """It once fell back to the defaults (data.path: the demo digits) without a word."""
    from ripik_clf.data.splits import recorded_settings

    (tmp_path / "splits.csv").write_text("image,label,split,fold\na.png,a,train,-1\n")
    for damage in ("{bad", "[]", '{"seed": 1}', ""):
        (tmp_path / "splits.json").write_text(damage)
        with pytest.raises(UserError, match=r"splits.json is damaged .*--resplit"):
            recorded_settings(tmp_path)


def test_feature_cache_write_failures_are_one_warning_and_the_features_are_used(
    tmp_path, monkeypatch, capsys
):
    import errno

    import numpy as np

    from ripik_clf.train import features

    class Extractor:
        output_shape = (None, 4)

        def predict_on_batch(self, batch):
            return np.ones((len(batch), 4), "float32")

    from conftest import write_image

    paths = [str(write_image(tmp_path / f"{i}.png", seed=i)) for i in range(3)]

    def full_disk(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(features, "atomic_write", full_disk)
    got, _ = features.extract_features(paths, Extractor(), 32, tmp_path / "cache", batch_size=2)
    assert got.shape == (3, 4) and np.isfinite(got).all()  # computed and used
    warning = capsys.readouterr().err
    assert "3 feature vectors not saved" in warning and "No space left" in warning
    assert not list((tmp_path / "cache").rglob("*.npy"))
    monkeypatch.undo()
    vectors, failures = features.extract_features(paths, Extractor(), 32, tmp_path / "cache")
    assert vectors.shape == (3, 4) and not failures
    entry = next((tmp_path / "cache").rglob("*.npy"))
    entry.write_bytes(b"garbage")  # a damaged entry: extracted again, not a traceback
    again, _ = features.extract_features(paths, Extractor(), 32, tmp_path / "cache")
    assert np.array_equal(again, vectors)
