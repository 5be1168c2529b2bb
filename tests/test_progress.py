import numpy as np

from ripik_clf import progress as progress_module
from ripik_clf.progress import LogProgress, format_seconds, progress
from ripik_clf.train.callbacks import FitProgress


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_off_a_terminal_a_line_at_least_every_interval(capsys):
    clock = FakeClock()
    bar = LogProgress(1000, "features", interval=30, clock=clock)
    for _ in range(100):
        clock.now += 3.0  # 10 images every 3 s
        bar.update(10)
    bar.close()
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 11  # every 30 s of 300 s, plus the closing line
    assert lines[0] == "features: 100/1000 img, 3.3 img/s, ETA 4 min 30 s"
    assert lines[-1].endswith("done in 5 min 00 s")


def test_progress_is_log_lines_when_stdout_is_not_a_terminal(capsys):
    assert isinstance(progress(5, "x"), LogProgress)  # pytest captures stdout: not a tty


def test_feature_extraction_is_not_silent_in_a_log(tmp_path, capsys, monkeypatch):
    import keras

    from conftest import make_folder_dataset
    from ripik_clf.train.features import extract_features

    monkeypatch.setattr(progress_module, "LOG_INTERVAL_S", 0.0)
    paths = sorted(str(p) for p in make_folder_dataset(tmp_path, {"a": 5}).rglob("*.png"))
    extractor = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D()])
    features, failures = extract_features(paths, extractor, 16, tmp_path / "cache", batch_size=2)
    assert features.shape == (5, 3) and not failures
    out = capsys.readouterr().out
    assert "features: 2/5 img" in out and "done in" in out


def test_fit_progress_prints_the_plan_and_timed_lines(capsys):
    clock = FakeClock()
    callback = FitProgress("full phase x", 320, 32, 10, interval=30, log_lines=True, clock=clock)
    callback.on_epoch_begin(0)
    for batch in range(10):
        clock.now += 4.0 if batch else 20.0  # the first batch traces: not timed
        callback.on_train_batch_end(batch)
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0] == "full phase x: 320 images x 10 epochs, ~6 min 40 s at 8.0 img/s (plus validation)"
    )
    assert any(
        line.startswith("full phase x epoch 1/10: batch 4/10, 8.0 img/s, epoch ETA 24 s")
        for line in out
    )


def test_an_epoch_of_two_batches_still_gets_a_plan(capsys):
    """Below plan_after + 1 batches an epoch never planned (the full phase on a small set
    ran without a word about its length)."""
    clock = FakeClock()
    callback = FitProgress("full phase y", 64, 32, 5, interval=30, log_lines=True, clock=clock)
    callback.on_epoch_begin(0)
    for batch in range(2):
        clock.now += 8.0
        callback.on_train_batch_end(batch)
    callback.on_epoch_end(0)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "full phase y: 64 images x 4 epochs left, ~1 min 04 s at 4.0 img/s (validation included)"
    ]


def test_format_seconds():
    assert [format_seconds(s) for s in (5, 75, 3 * 3600 + 120)] == [
        "5 s",
        "1 min 15 s",
        "3 h 02 min",
    ]
    assert np.isfinite(1.0)
