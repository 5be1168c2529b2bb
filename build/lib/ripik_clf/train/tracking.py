"""Experiment tracking: a run's parameters, per-epoch metrics and files in a local MLflow
store (``--mlflow`` / ``train.mlflow``), and Keras' TensorBoard logs per run and phase."""

import math
import os
from pathlib import Path

from ripik_clf import workdir as wd
from ripik_clf.errors import UserError

EXPERIMENT = "ripik_clf"
DEFAULT_URI = "file:./mlruns"  # MLFLOW_TRACKING_URI wins, as in every MLflow tool


def tracking_uri():
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def tensorboard_callback(folder, phase):
    """Keras' TensorBoard logs in ``runs/<run>/tensorboard/<phase>/`` (no graph, no
    profiling: per-epoch scalars, cheap)."""
    import keras

    log_dir = Path(folder) / "tensorboard" / phase
    return keras.callbacks.TensorBoard(str(log_dir), write_graph=False, profile_batch=0)


def log_to_mlflow(config, run, phase, metrics):
    """One MLflow run per (run, phase): the resolved config as parameters, the phase's
    history (one step per epoch), its final validation metrics, and the run folder's
    files (models, records, histories) as artifacts."""
    try:
        import mlflow
    except ImportError:
        raise UserError(
            "--mlflow needs MLflow: pip install 'ripik-clf[mlflow]' (or mlflow-skinny)"
        ) from None
    folder = wd.run_dir(config.workdir, run)
    uri = tracking_uri()
    if uri.startswith("file:"):
        # MLflow 3 keeps the file store (no server, no database: right for a local,
        # offline store) behind this switch, "in maintenance mode".
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"{run}-{phase}"):
        mlflow.set_tags({"ripik_clf.run": run, "ripik_clf.phase": phase})
        mlflow.log_params(_flat_params(config))
        for epoch, row in enumerate(_history(folder, phase)):
            mlflow.log_metrics(row, step=epoch)
        final = {f"final_{k}": float(metrics[k]) for k in ("accuracy", "macro_f1", "nll")
                 if isinstance(metrics.get(k), (int, float))}  # fmt: skip
        mlflow.log_metrics(final)
        mlflow.log_artifacts(str(folder), artifact_path=run)


def _flat_params(config):
    return {
        f"{section}.{k}": str(v)[:250]
        for section, values in config.to_dict().items()
        if isinstance(values, dict)
        for k, v in values.items()
    }


def _history(folder, phase):
    """The phase's per-epoch rows (loss, accuracy, val_macro_f1, ...); [] when none."""
    table = wd.read_history(wd.history_path(folder, phase))
    rows = []
    for record in table.drop(columns=["epoch"], errors="ignore").to_dict("records"):
        rows.append({k: float(v) for k, v in record.items() if _number(v)})
    return rows


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
