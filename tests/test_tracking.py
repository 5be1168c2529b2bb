"""Experiment tracking: what --mlflow logs can be read back through MLflow's own API, and
a tracking failure never stops the training."""

import socket
import time

import mlflow  # the dev requirements install .[mlflow]: CI tests it, never skips it
import pandas as pd
import pytest

from conftest import make_folder_dataset, write_image
from ripik_clf import workdir as wd
from ripik_clf.config import load_config
from ripik_clf.train.tracking import PhaseTracker


@pytest.fixture
def store(tmp_path, monkeypatch):
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    return store


def _run_folder(tmp_path, **settings):
    config = load_config(None, {"workdir": str(tmp_path / "w"), **settings})
    folder = wd.run_dir(config.workdir, "lite0")
    folder.mkdir(parents=True)
    return config, folder


def test_epochs_are_logged_as_they_end_and_the_files_when_the_model_is_saved(tmp_path, store):
    config, folder = _run_folder(tmp_path, **{"train.head_lr": 0.002})
    tracker = PhaseTracker(config, "lite0", "head")
    callback = tracker.callback()
    client = mlflow.tracking.MlflowClient(store.as_uri())  # what a user's MLflow reads
    for epoch, score in enumerate([0.4, 0.6]):  # as Keras calls it, epoch by epoch
        callback.on_epoch_end(epoch, {"loss": 1.0 - score, "val_macro_f1": score})
        live = client.get_metric_history(tracker.run_id, "val_macro_f1")
        assert len(live) == epoch + 1  # readable while the phase still trains
    history = pd.DataFrame({"epoch": [0, 1, 2], "loss": [0.6, 0.4, 0.35],
                            "val_macro_f1": [0.4, 0.6, 0.65]})  # fmt: skip
    history.to_csv(wd.history_path(folder, "head"), index=False)
    (folder / "head.keras").write_bytes(b"model bytes")
    (folder / ".lock").write_bytes(b"")
    (folder / "head.keras.tmp-host-1-2").write_bytes(b"half")

    tracker.finish({"accuracy": 0.7, "macro_f1": 0.65, "nll": 0.8})

    (run,) = mlflow.search_runs(experiment_names=["ripik_clf"], output_format="list")
    assert run.info.run_name == "lite0-head" and run.info.status == "FINISHED"
    assert run.data.params["train.head_lr"] == "0.002"
    assert run.data.metrics["final_macro_f1"] == pytest.approx(0.65)
    steps = client.get_metric_history(run.info.run_id, "val_macro_f1")
    assert sorted((m.step, m.value) for m in steps) == [(0, 0.4), (1, 0.6), (2, 0.65)]
    files = {f.path for f in client.list_artifacts(run.info.run_id, "lite0")}
    assert files == {"lite0/head.keras", "lite0/history_head.csv"}  # no lock, no temp file


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("uri", ["http://127.0.0.1:{port}", "bogus://x", "sqlite:///{tmp}/m.db"])
def test_a_tracking_store_that_fails_is_one_line_and_training_goes_on(
    tmp_path, monkeypatch, capsys, uri
):
    """No server on the port, an unknown scheme, a database MLflow's client cannot open:
    a note, within seconds, and every later call does nothing."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri.format(port=_free_port(), tmp=tmp_path))
    config, folder = _run_folder(tmp_path)
    started = time.monotonic()
    tracker = PhaseTracker(config, "lite0", "full")
    tracker.callback().on_epoch_end(0, {"loss": 1.0})
    tracker.finish({"accuracy": 0.5})
    assert time.monotonic() - started < 60
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if "MLflow tracking of lite0-full stopped" in line]
    assert len(notes) == 1 and "Traceback" not in out


@pytest.mark.slow
def test_the_ensemble_is_an_mlflow_model_that_predicts_the_submission(tmp_path, store):
    """head and full phases and the ensemble with train.mlflow: every run reads back with
    search_runs, the full phase's epochs as steps, and the ensemble loads through pyfunc
    and labels the test images as the submission does."""
    from ripik_clf import stages

    data = make_folder_dataset(tmp_path / "data", {"a": 6, "b": 6, "c": 6}, size=32)
    tests = [write_image(tmp_path / "test" / f"t{i}.png", seed=70 + i) for i in range(4)]
    config = load_config(None, {
        "workdir": str(tmp_path / "work"), "data.path": str(data),
        "data.test": str(tmp_path / "test"), "train.models": "original",
        "train.image_size": 32, "train.batch_size": 8, "train.head_epochs": 2,
        "train.full_epochs": 2, "train.full_min_steps": 0, "train.mlflow": True,
    })  # fmt: skip
    stages.run_train(config, "head")
    stages.run_train(config, "full")
    stages.run_ensemble(config, str(tmp_path / "sub.csv"))

    runs = mlflow.search_runs(experiment_names=["ripik_clf"])
    by_name = dict(zip(runs["tags.mlflow.runName"], runs["run_id"]))
    assert set(by_name) == {"original-head", "original-full", "ensemble"}
    client = mlflow.tracking.MlflowClient()
    full_steps = client.get_metric_history(by_name["original-full"], "val_loss")
    assert sorted(m.step for m in full_steps) == [0, 1]
    report = {f.path for f in client.list_artifacts(by_name["ensemble"], "report")}
    assert "report/report.md" in report

    model = mlflow.pyfunc.load_model(f"runs:/{by_name['ensemble']}/ensemble")
    table = model.predict([str(p) for p in tests])
    submission = pd.read_csv(tmp_path / "sub.csv").set_index("image_id")["label"]
    assert table["label"].tolist() == [submission[p.name] for p in tests]
    assert table[["a", "b", "c"]].sum(axis=1).round(6).eq(1).all()
    as_table = model.predict(pd.DataFrame({"image": [str(p) for p in tests]}))
    assert as_table["label"].tolist() == table["label"].tolist()
