"""Experiment tracking: a run's parameters, metrics and files in a local MLflow store."""

from ripik_clf import workdir as wd
from ripik_clf.errors import UserError


def log_to_mlflow(config, run, phase, metrics):
    try:
        import mlflow
    except ImportError:
        raise UserError("--mlflow needs the mlflow package: pip install mlflow") from None
    mlflow.set_tracking_uri("file:./mlruns")
    mlflow.set_experiment("ripik_clf")
    with mlflow.start_run(run_name=f"{run}-{phase}"):
        flat = {
            f"{section}.{k}": v
            for section, values in config.to_dict().items()
            if isinstance(values, dict)
            for k, v in values.items()
        }
        mlflow.log_params({k: str(v)[:250] for k, v in flat.items()})
        mlflow.log_metrics({f"{phase}_{k}": metrics[k] for k in ("accuracy", "macro_f1")})
        mlflow.log_artifacts(str(wd.run_dir(config.workdir, run)))
