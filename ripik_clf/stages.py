"""The pipeline's stages, each a function of a resolved :class:`~ripik_clf.config.Config`
and its own few options. The scripts and ``python -m ripik_clf`` parse flags, call one of
these and print; every stage reads what earlier ones left in the work directory
(:mod:`ripik_clf.workdir`) and never makes the split unless it is the first to see the data.
"""

import contextlib
import dataclasses
import functools
from pathlib import Path

from ripik_clf import workdir as wd
from ripik_clf.errors import UserError
from ripik_clf.progress import say
from ripik_clf.startup import quiet_tensorflow


def _stage(run):
    """Every stage starts by checking that the work directory's folders are its own, and
    with TensorFlow loaded quietly (its C++ start-up lines hidden)."""

    @functools.wraps(run)
    def start(config, *args, **kwargs):
        wd.check_own_folders(config.workdir)
        wd.finish_swaps(config.workdir)  # what a kill between a swap's two renames left
        quiet_tensorflow()
        return run(config, *args, **kwargs)

    return start


@_stage
def run_augment(config, *, shard=None, resplit=False, overwrite=False):
    """Make (or reuse) the split, then the offline copies of its training images.

    Returns:
        (the dataset, the split table, the number of skipped files, the runner's summary).
    """
    from ripik_clf.augment.runner import run_augmentation
    from ripik_clf.data.dataset import load_dataset
    from ripik_clf.data.splits import left_out_of_split, load_or_make_splits
    from ripik_clf.shards import WHOLE

    dataset, skipped = load_dataset(config.data)
    splits = load_or_make_splits(dataset, config.split, config.workdir, resplit=resplit)
    skipped = skipped + left_out_of_split(dataset, config.workdir)  # listed in skipped.csv
    summary = run_augmentation(
        config, dataset, splits, skipped, shard=shard or WHOLE, overwrite=overwrite
    )
    return dataset, splits, len(skipped), summary


@_stage
def run_train(config, phase, *, fold=None, resplit=False, overwrite=False):
    """Train ``phase`` (head, probe or full) of every data variant in ``train.models``,
    on every fold of a k-fold split (or only ``fold``), as run ``train.run`` (default:
    the variant's name). Returns ``{run: metrics}``."""
    from ripik_clf.train.phases import PHASES

    train = PHASES[phase]
    if fold is not None and not config.split.folds:
        raise UserError(f"--fold {fold} needs a k-fold split (set split.folds: K >= 2)")
    if config.train.run and len(config.train.models) > 1:
        raise UserError(
            f"train.run {config.train.run!r} names one run: give train.models one variant"
        )
    from ripik_clf.train.distribute import cluster_from_env

    cluster = cluster_from_env()
    if phase != "full" and not cluster.is_chief:
        print(f"the {phase} phase trains on one machine: worker 0 runs it, this worker "
              f"({cluster.index}) has nothing to do")  # fmt: skip
        return {}
    results = {}
    for variant, k, run in _runs(config, fold):
        print(f"=== {phase} phase: {run} ({variant}, {config.train.backbone}) ===")
        try:
            with _tracked(config, run, phase, cluster.is_chief) as tracking:
                options = {"extra_callbacks": tracking.callbacks} if tracking.callbacks else {}
                results[run] = _train_run(
                    train, config, variant, k, phase, resplit, overwrite, options
                )
                tracking.finish(results[run])
        except (UserError, OSError) as err:
            raise _with_saved(err, config, phase, results, variant, k) from err
        resplit = False  # the split is made once, by the first run
    if phase == "head" and results:  # once, not per variant and fold: the same photos
        from ripik_clf.train.head import suggest_for_split

        suggest_for_split(config)
    return results


def _train_run(train, config, variant, fold, phase, resplit, overwrite, options):
    """One run's phase; ``--overwrite`` of a run with other settings trains beside it and
    swaps it in when done (train/replace.py), so the old run is never lost."""
    from ripik_clf.locks import exclusive
    from ripik_clf.train import replace

    if not replace.trains_beside(config, variant, fold, phase, overwrite):
        return train(config, variant, fold=fold, resplit=resplit, overwrite=overwrite, **options)
    replace.start_beside(config, variant, fold)
    twin = replace.beside(config, variant)
    metrics = train(twin, variant, fold=fold, resplit=resplit, overwrite=overwrite, **options)
    old, _ = replace.folders(config, variant, fold)
    with exclusive(old, "the swap of --overwrite"):  # no writer of the old run meanwhile
        replace.swap_in(config, variant, fold)
    return metrics


def _with_saved(err, config, phase, results, variant, fold):
    """A failure after other runs of this command finished says their models are safe
    and how to go on (a finished run is refused without --overwrite)."""
    saved = [str(wd.phase_model(wd.run_dir(config.workdir, run), phase)) for run in results]
    if not saved:
        return err
    if isinstance(err, UserError) or not err.filename:
        message = str(err)
    else:
        message = f"cannot write {err.filename}: {err.strerror}"
    go_on = f"--model {variant}" + (f" --fold {fold}" if fold is not None else "")
    return UserError(f"{message} (saved before it, safe: {', '.join(saved)}; go on with "
                     f"{go_on})")  # fmt: skip


@dataclasses.dataclass
class _Tracking:
    """A phase's tracking: its Keras callbacks, and what to call once the model is saved."""

    callbacks: list = dataclasses.field(default_factory=list)
    finish: object = lambda metrics: None


@contextlib.contextmanager
def _tracked(config, run, phase, is_chief):
    """With ``train.mlflow`` (on the chief): an MLflow run for this phase, its epoch
    callback (phases with epochs) and its ``finish`` once the model is saved; a phase that
    fails ends its MLflow run FAILED. Otherwise nothing."""
    if not (config.train.mlflow and is_chief):
        yield _Tracking()
        return
    from ripik_clf.train.tracking import PhaseTracker

    tracker = PhaseTracker(config, run, phase)
    callbacks = [tracker.callback()] if phase in ("head", "full") else []
    try:
        yield _Tracking(callbacks, tracker.finish)
    except BaseException:
        tracker.end("FAILED")
        raise


@_stage
def run_features(config, *, shard, fold=None):
    """This shard's share of the backbone features of every run ``train.models`` names
    (every fold, or only ``fold``), into the feature cache; the head / probe phase is the
    merge. Returns ``{run: summary}``."""
    from ripik_clf.train.head import extract_features_shard

    results = {}
    for variant, k, run in _runs(config, fold):
        print(f"=== features{shard.suffix}: {run} ({variant}, {config.train.backbone}) ===")
        results[run] = extract_features_shard(config, variant, fold=k, shard=shard)
    return results


def _runs(config, fold=None):
    """(variant, fold, run name) of every run a phase trains: each variant of
    ``train.models`` on every fold of a k-fold split (or only ``fold``)."""
    folds = [fold] if fold is not None else list(range(config.split.folds)) or [None]
    for variant in config.train.models:
        for k in folds:
            yield variant, k, wd.run_name(config.train.run or variant, k)


@_stage
def run_ensemble(config, out_path, answers=None, *, shard=None):
    """The submission, ``<out>_probabilities.csv`` and the report (see predict/submission.py);
    with ``shard`` I/N, only that share of the test predictions (merged by a later run)."""
    from ripik_clf.predict.submission import run_ensemble as ensemble
    from ripik_clf.shards import WHOLE

    result = ensemble(config, out_path, answers, shard=shard or WHOLE)
    if config.train.mlflow and shard is None:  # the submission is whole: log it
        from ripik_clf.train.tracking import log_ensemble

        probabilities = wd.beside_submission(out_path, "probabilities")
        files = [wd.report_dir(config.workdir), out_path, probabilities]
        uri = log_ensemble(config, wd.read_ensemble_definition(config.workdir), files)
        if uri:
            say(f"MLflow: the ensemble is the model {uri} (mlflow.pyfunc.load_model)")
    return result


@_stage
def run_predict(config, inputs, *, members=None, tta=None, exported=None):
    """Probabilities for image files and folders: by the last submitted ensemble
    (``report/ensemble.json``: its members, weights, TTA and temperatures) when neither
    ``members`` nor ``tta`` is given and there is one; else by the equal-weight soft vote
    of ``members`` (default ``train.models``) under ``tta`` (default ``ensemble.tta``);
    or by an exported model with its preprocessing spec.

    Returns:
        (classes, image files, probabilities ``(N, C)``, failures ``[(path, reason)]``).
    """
    from ripik_clf.predict.ensemble import Ensemble, image_files
    from ripik_clf.predict.export import predict_exported
    from ripik_clf.predict.members import predict_with_members

    if exported and (members is not None or tta is not None):
        raise UserError(  # an exported model carries its members and TTA inside it
            "--exported runs the exported model as it is: --members and --tta belong to "
            "predicting with the work directory's models (drop one or the other)"
        )
    files, unusable = image_files(inputs, config.data.allow_outside_root)
    say(f"predict: {len(files)} image(s); loading the models...")
    if exported:
        classes, probabilities, failures = predict_exported(exported, files)
    elif (
        members is None
        and tta is None
        and (definition := wd.read_ensemble_definition(config.workdir))
    ):
        ensemble = Ensemble.load(config.workdir, definition)
        result = ensemble.predict(files, config.ensemble.batch_size)
        classes, probabilities, failures = result.classes, result.probabilities, result.failures
    else:
        classes, probabilities, failures = predict_with_members(
            config, files, members, tta or config.ensemble.tta
        )
    return classes, files, probabilities, unusable + failures


@_stage
def run_export(config, run, fmt, *, out=None, quantize="none", check_images=256):
    """Export a run's model (``run`` None: the last submitted ensemble, as one model) and
    check it against Keras on images it never trained on.

    Returns:
        (target, images checked, max |p - p_keras|, agreement).
    """
    if check_images < 1:  # an export is always checked against the Keras model
        raise UserError(f"--check-images must be 1 or more, got {check_images}")
    out_dir = Path(out) if out else wd.export_dir(config.workdir)
    if out:
        wd.check_output(out_dir, config, "--out")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file: name a folder for the export")
    if run is None:
        from ripik_clf.predict.export_ensemble import export_ensemble_checked

        return export_ensemble_checked(config, fmt, out_dir, quantize, check_images)
    from ripik_clf.predict.export import export_checked

    return export_checked(config, run, fmt, out_dir, quantize, check_images)


@_stage
def run_audit(config):
    """Duplicates, leaks, label errors and outliers: ``WORKDIR/audit/``."""
    from ripik_clf.audit.runner import run_audit as audit

    return audit(config, config.data.test)
