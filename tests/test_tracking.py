"""Experiment tracking: what --mlflow logs can be read back through MLflow's own API."""

import mlflow  # the dev requirements install .[mlflow]: CI tests it, never skips it
import pandas as pd
import pytest

from ripik_clf import workdir as wd
from ripik_clf.config import load_config
from ripik_clf.train.tracking import log_to_mlflow


def test_a_logged_run_reads_back_through_mlflow(tmp_path, monkeypatch):
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    config = load_config(None, {"workdir": str(tmp_path / "w"), "train.head_lr": 0.002})
    folder = wd.run_dir(config.workdir, "lite0")
    folder.mkdir(parents=True)
    history = pd.DataFrame({"epoch": [0, 1, 2], "loss": [1.0, 0.7, 0.5],
                            "val_macro_f1": [0.4, 0.6, 0.65]})  # fmt: skip
    history.to_csv(wd.history_path(folder, "head"), index=False)
    (folder / "head.keras").write_bytes(b"model bytes")
    metrics = {"accuracy": 0.7, "macro_f1": 0.65, "nll": 0.8}

    log_to_mlflow(config, "lite0", "head", metrics)

    client = mlflow.tracking.MlflowClient(store.as_uri())  # what a user's MLflow reads
    experiment = client.get_experiment_by_name("ripik_clf")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "lite0-head"
    assert run.data.params["train.head_lr"] == "0.002"
    assert run.data.metrics["final_macro_f1"] == pytest.approx(0.65)
    steps = client.get_metric_history(run.info.run_id, "val_macro_f1")
    assert [(m.step, m.value) for m in sorted(steps, key=lambda m: m.step)] == [
        (0, 0.4), (1, 0.6), (2, 0.65)
    ]  # fmt: skip
    files = {f.path for f in client.list_artifacts(run.info.run_id, "lite0")}
    assert {"lite0/head.keras", "lite0/history_head.csv"} <= files
