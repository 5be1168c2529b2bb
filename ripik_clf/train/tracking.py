"""Experiment tracking: a run's parameters, per-epoch metrics and files in a local MLflow
store (``--mlflow`` / ``train.mlflow``), the submitted ensemble as an MLflow Model, and
Keras' TensorBoard logs per run and phase.

MLflow is a guest: a tracking failure (no server, a bad URI, a full store) is one line
and ends the tracking of that phase, never the training; the model is saved first.
"""

import math
import os
import tempfile
from pathlib import Path

from ripik_clf import workdir as wd
from ripik_clf.atomic import TEMP_MARK
from ripik_clf.errors import UserError, one_line

EXPERIMENT = "ripik_clf"
DEFAULT_URI = "file:./mlruns"  # MLFLOW_TRACKING_URI wins, as in every MLflow tool
# What the tool sets unless the user did: MLflow 3 keeps its file store (no server, no
# database: right for a local, offline store) behind the first switch ("maintenance
# mode"); the others make an unreachable server fail in seconds, not after minutes.
ENVIRONMENT = {
    "MLFLOW_ALLOW_FILE_STORE": "true",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
}
NOT_LOGGED = ("backup_full", ".lock", TEMP_MARK)  # resume state, locks, half-written files


def tracking_uri():
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


class Guest:
    """Calls into an outside service that must never stop the work (MLflow, a TensorBoard
    log folder): the first failure is one note naming the service and what goes on, and
    every later call does nothing."""

    def __init__(self, service, goes_on):
        self.service, self.goes_on, self.failed = service, goes_on, None

    def call(self, action, *args):
        """``action(*args)``, or None once the service failed."""
        if self.failed:
            return None
        try:
            return action(*args)
        except Exception as err:  # noqa: BLE001 - any failure of the service
            self.failed = one_line(f"{type(err).__name__}: {err}")
            print(f"note: {self.service} stopped ({self.failed}); {self.goes_on}")
            return None


def tensorboard_callback(folder, phase):
    """Keras' TensorBoard logs in ``runs/<run>/tensorboard/<phase>/`` (no graph, no
    profiling: per-epoch scalars, cheap), as a guest: a log folder that cannot be made
    or written (a file in its place, a read-only folder, a full disk) is one note and the
    logs stop; the phase trains on and its model is saved."""
    import keras

    log_dir = Path(folder) / "tensorboard" / phase
    inner = keras.callbacks.TensorBoard(str(log_dir), write_graph=False, profile_batch=0)

    guest = Guest(f"TensorBoard logs in {log_dir}", "training goes on")

    class Logs(keras.callbacks.Callback):
        def set_model(self, model):
            super().set_model(model)
            guest.call(inner.set_model, model)

        def set_params(self, params):
            super().set_params(params)
            guest.call(inner.set_params, params)

        def on_train_begin(self, logs=None):
            guest.call(inner.on_train_begin, logs)

        def on_epoch_begin(self, epoch, logs=None):
            guest.call(inner.on_epoch_begin, epoch, logs)

        def on_epoch_end(self, epoch, logs=None):
            guest.call(inner.on_epoch_end, epoch, logs)

        def on_train_end(self, logs=None):
            guest.call(inner.on_train_end, logs)

        def on_test_begin(self, logs=None):
            guest.call(inner.on_test_begin, logs)

        def on_test_end(self, logs=None):
            guest.call(inner.on_test_end, logs)

        def on_train_batch_end(self, batch, logs=None):
            guest.call(inner.on_train_batch_end, batch, logs)

    return Logs()


def mlflow_client():
    """MLflow, set to the tracking URI and this tool's experiment (``ENVIRONMENT`` set
    first); a missing package is a :class:`UserError` before anything trains."""
    try:
        import mlflow
    except ImportError:
        raise UserError(
            "--mlflow needs MLflow: pip install 'ripik-clf[mlflow]' (or mlflow-skinny)"
        ) from None
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


class Tracker:
    """One MLflow run: opened with its parameters, metrics as they come, files at the end.
    Every call after a failure does nothing (the failure was said once)."""

    def __init__(self, name, tags, params):
        self.name, self.run_id = name, None
        self.guest = Guest(
            f"MLflow tracking of {name}", "the work directory keeps everything it logs"
        )
        mlflow = mlflow_client()
        self.run(self._open, mlflow, tags, params)

    def _open(self, mlflow, tags, params):
        self.client = mlflow.MlflowClient()
        experiment = mlflow.set_experiment(EXPERIMENT)
        run = self.client.create_run(experiment.experiment_id, run_name=self.name, tags=tags)
        self.run_id = run.info.run_id
        for chunk in _chunks(sorted(params.items()), 100):  # MLflow takes 100 a batch
            self.client.log_batch(self.run_id, params=[_param(k, v) for k, v in chunk])

    def run(self, action, *args):
        """``action(*args)``, or None once tracking failed (a failure is said once)."""
        return self.guest.call(action, *args)

    def log_metrics(self, values, step=0):
        metrics = [_metric(k, v, step) for k, v in values.items() if _number(v)]
        if metrics:
            self.run(lambda: self.client.log_batch(self.run_id, metrics=metrics))

    def log_files(self, path, under=None):
        """A file, or every file below a folder but the resume state, locks and temporary
        files, as artifacts (below ``under``, default: the folder's name)."""
        path = Path(path)
        if path.is_file():
            self.run(self.client.log_artifact, self.run_id, str(path), under)
            return
        for item in sorted(path.rglob("*")):
            if item.is_file() and not any(mark in str(item) for mark in NOT_LOGGED):
                where = Path(under or path.name) / item.parent.relative_to(path)
                self.run(self.client.log_artifact, self.run_id, str(item), where.as_posix())

    def end(self, status="FINISHED"):
        if self.run_id:
            self.run(self.client.set_terminated, self.run_id, status)


class PhaseTracker(Tracker):
    """The MLflow run of one (run, phase): the resolved config as parameters, each
    epoch's metrics as the epoch ends (:meth:`callback`), then the final validation
    metrics and the run folder's files (:meth:`finish`, after the model is saved)."""

    def __init__(self, config, run, phase):
        self.folder, self.phase, self.steps = wd.run_dir(config.workdir, run), phase, set()
        tags = {"ripik_clf.run": run, "ripik_clf.phase": phase}
        super().__init__(f"{run}-{phase}", tags, _flat_params(config))

    def callback(self):
        import keras

        tracker = self

        class EpochMetrics(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                tracker.log_metrics(dict(logs or {}), step=epoch)
                tracker.steps.add(epoch)

        return EpochMetrics()

    def finish(self, metrics):
        """Epochs not seen live (a resumed phase's earlier ones), the final metrics, the
        run folder's files; the MLflow run ends FINISHED."""
        for epoch, row in enumerate(_history(self.folder, self.phase)):
            if epoch not in self.steps:
                self.log_metrics(row, step=epoch)
        self.log_metrics({f"final_{k}": metrics.get(k) for k in ("accuracy", "macro_f1", "nll")})
        self.log_files(self.folder, self.folder.name)
        self.end()


def log_ensemble(config, definition, files):
    """The submitted ensemble as an MLflow Model (``python_function``: load it with
    ``mlflow.pyfunc.load_model(uri)`` and ``.predict(images)`` gives the submission's
    labels), in a run ``ensemble`` with the ensemble settings, its validation score and
    ``files`` (the report, the submission). Returns the model's URI, or None."""
    params = {f"ensemble.{k}": str(v)[:250] for k, v in config.to_dict()["ensemble"].items()}
    tracker = Tracker("ensemble", {"ripik_clf.phase": "ensemble"}, params)
    tracker.log_metrics({"validation_macro_f1": definition.validation_macro_f1})
    for path in files:
        tracker.log_files(path)
    uri = tracker.run(_log_ensemble_model, tracker.run_id, config.workdir)
    tracker.end()
    return uri


def _log_ensemble_model(run_id, workdir):
    import mlflow

    from ripik_clf.predict.ensemble import package_ensemble
    from ripik_clf.predict.pyfunc import EnsembleModel
    from ripik_clf.version import __version__

    with tempfile.TemporaryDirectory() as folder, mlflow.start_run(run_id=run_id):
        package_ensemble(workdir, Path(folder) / "ensemble")
        info = mlflow.pyfunc.log_model(
            name="ensemble",
            python_model=EnsembleModel(),
            artifacts={"ensemble": str(Path(folder) / "ensemble")},
            pip_requirements=[f"ripik-clf=={__version__}"],
        )
    return info.model_uri


def _chunks(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


def _param(key, value):
    from mlflow.entities import Param

    return Param(key, str(value)[:250])


def _metric(key, value, step):
    import time

    from mlflow.entities import Metric

    return Metric(key, float(value), int(time.time() * 1000), step)


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
    """A finite number (Keras' logs may hold NumPy scalars): what MLflow can plot."""
    if isinstance(value, (bool, str)):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
