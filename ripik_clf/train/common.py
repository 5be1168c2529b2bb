"""What the training phases share: the data of a run, its record, the loss, the lock.

Run directory ``WORKDIR/runs/<run>/`` (see :mod:`ripik_clf.workdir`): ``config.yaml``,
the run record, ``history_<phase>.csv``, ``<phase>.keras``, ``metrics.json``,
``val_probabilities_<phase>.csv``, ``skipped.csv``.
"""

import functools
import sys
from dataclasses import dataclass

import keras
import numpy as np

from ripik_clf import workdir as wd
from ripik_clf.data.dataset import class_names, load_dataset
from ripik_clf.data.splits import (
    load_or_make_splits,
    recorded_split,
    refuse_other_split,
    split_record,
)
from ripik_clf.errors import UserError
from ripik_clf.locks import exclusive, save_model_atomically
from ripik_clf.report.metrics import classification_metrics
from ripik_clf.workdir import run_name

VERBOSE = 1 if sys.stdout.isatty() else 2  # progress bars on a terminal, one line per epoch in logs


def run_dir(config, run):
    return wd.run_dir(config.workdir, run)


def run_of(config, variant, fold=None):
    """The run a phase trains: ``train.run`` (default: the variant's name), per fold."""
    return run_name(config.train.run or variant, fold)


def claim_run(out, config, variant, size, phase, overwrite):
    """Refuse to replace what a run folder holds unless ``overwrite``: a run trained with
    other settings (variant, backbone, weights, input size, seed), or a finished model of
    this phase or a later one. With ``overwrite``, a run of other settings is cleared."""
    record = wd.read_run_record(out)
    if record is not None:
        changed = changed_settings(record, config.train, variant, size)
        if changed and not overwrite:
            said = ", ".join(f"{k} {a!r} (asked: {b!r})" for k, (a, b) in changed.items())
            raise UserError(
                f"run {out.name!r} was trained with {said}: name a new run with "
                f"--run NAME, or pass --overwrite to replace it"
            )
        if changed:
            print(f"replacing run {out.name} (--overwrite): {', '.join(changed)} changed")
            remove_run_models(out)
            return
    later = {"head": ("head", "full"), "probe": ("probe",), "full": ("full",)}[phase]
    finished = [wd.phase_model(out, p) for p in later if wd.phase_model(out, p).exists()]
    if finished and not overwrite:
        raise UserError(
            f"run {out.name!r} already has {', '.join(p.name for p in finished)}: pass "
            f"--overwrite to train its {phase} phase again, or --run NAME for a new run"
        )


def changed_settings(record, tc, variant, size):
    """``{setting: (held, asked)}`` of a run's record against what a phase is asked to
    train: the variant, backbone, weights, input size and seed ({} when the same)."""
    wanted = {"variant": variant, "backbone": tc.backbone, "weights": tc.weights,
              "image_size": size, "seed": tc.seed}  # fmt: skip
    held = {k: getattr(record, k) for k in wanted}
    if held["seed"] is None:  # an older run record: its seed was not written
        held["seed"] = wanted["seed"]
    return {k: (held[k], v) for k, v in wanted.items() if held[k] != v}


def remove_run_models(out):
    """Every model and per-phase file of a run folder (before it is trained anew)."""
    import shutil

    shutil.rmtree(wd.full_backup_dir(out), ignore_errors=True)
    for phase in ("head", "probe", "full", "full_best"):
        for path in (wd.phase_model(out, phase), wd.history_path(out, phase),
                     wd.val_probabilities_path(out, phase)):  # fmt: skip
            path.unlink(missing_ok=True)
    for name in (wd.RUN_JSON, wd.METRICS_JSON):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "tensorboard", ignore_errors=True)


# --- memory ----------------------------------------------------------------------------

# Peak memory a batch needs per image pixel, on CPU in float32. Measured for Lite0: a
# training step (Adam) grew by ~800 bytes per pixel per image between batch 4 and 16 at
# 128 px; doubled for wider backbones and headroom. Inference keeps no activations for
# the gradient: a quarter of it.
TRAIN_BYTES_PER_PIXEL = 1600
INFERENCE_BYTES_PER_PIXEL = 400


def refuse_a_batch_that_cannot_fit(size, batch_size, *, training, available=None):
    """One line, before any work, when a batch of ``size`` px images cannot fit in this
    machine's free memory (the kernel would kill the process with no message at all).
    ``available``: bytes free (default: MemAvailable of /proc/meminfo; no check without
    it, or on a GPU, whose memory TensorFlow reports itself)."""
    import tensorflow as tf

    if available is None:
        if tf.config.list_physical_devices("GPU"):
            return
        available = _available_memory()
        if available is None:
            return
    per_pixel = TRAIN_BYTES_PER_PIXEL if training else INFERENCE_BYTES_PER_PIXEL
    need = batch_size * size * size * per_pixel
    if need > available:
        gib = 2**30
        fits = int(available / (size * size * per_pixel))
        raise UserError(
            f"a batch of {batch_size} images at {size} px needs about {need / gib:.1f} GiB to "
            f"{'train' if training else 'run'}; {available / gib:.1f} GiB is free: lower "
            f"--image-size, or --batch-size (at most ~{fits} at this size)"
        )


def _available_memory():
    try:
        for line in open("/proc/meminfo"):  # noqa: SIM115 - read once, closed on exit
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


# --- data ------------------------------------------------------------------------------


@dataclass
class RunData:
    """The images one run trains and validates on (see :func:`model_data`)."""

    classes: list
    train_versions: list  # per source image: its path, then its copies' paths
    train_sources_y: np.ndarray  # class index per source image
    train_paths: list  # every version, flat
    train_y: np.ndarray  # class index per version
    val_paths: list  # real images only, never a copy
    val_y: np.ndarray
    val_images: list  # image ids, in the order of val_paths / val_y
    split: dict  # the split record (data/splits.py: split_record)
    held_out: list  # sorted ids of the images this run never trains on
    variant: str  # original | augmented
    fold: int | None
    kept_versions: list | None = None  # positions in train_paths of the readable versions


def _check_enough(train, val, classes):
    """Training needs every class on the training side and some validation images (early
    stopping, the best epoch and every choice are made there)."""
    counts = train["label"].value_counts()
    missing = [c for c in classes if counts.get(c, 0) == 0]
    if missing:
        raise UserError(f"class {missing[0]} has no training image in this split: "
                        "add images (2 or more per class)")  # fmt: skip
    if val.empty:
        raise UserError(
            f"no validation images: {len(train)} images in {len(classes)} classes leave none "
            "to validate on (a class needs 2 or more images to have one on each side): "
            "add images"
        )


def model_data(config, model_name, *, fold=None, resplit=False, make_split=True):
    """Training and validation files for one model, as absolute paths and class indices.

    ``original`` trains on the training split; ``augmented`` adds the offline copies of
    those images. Validation is always real images, never a copy. With K folds, fold k
    validates on the images of fold k and trains on the others (and their copies).

    Returns:
        a :class:`RunData`.
    """
    if make_split:  # the first stage to see the data (head or probe phase)
        dataset, _ = load_dataset(config.data)
        table = load_or_make_splits(dataset, config.split, config.workdir, resplit=resplit)
        classes = class_names(dataset)
    else:  # a later stage: reads the split's own record of the images, never the data
        table, classes = recorded_split(config)
    folds = int(table["fold"].max()) + 1 if (table["split"] == "fold").all() else 0
    if folds and not (fold is not None and 0 <= fold < folds):
        raise UserError(f"fold {fold} is out of range: the split has folds 0..{folds - 1}")
    if not folds and fold is not None:
        raise UserError(f"--fold {fold} needs a k-fold split (split.folds: K >= 2)")
    index = {c: i for i, c in enumerate(classes)}
    in_val = table.fold == fold if folds else table.split == "val"
    train, val = table[~in_val], table[in_val]
    _check_enough(train, val, classes)
    versions = [[p] for p in train["path"]]
    sources_y = [index[c] for c in train["label"]]
    if model_name == "augmented":
        copies = _augmented_copies(config, set(train["image"]), set(val["image"]), not folds)
        by_source = copies.sort_values("copy").groupby("source")["path"].apply(list).to_dict()
        for group, image in zip(versions, train["image"]):
            group += by_source.get(image, [])
    if config.train.epoch == "all":  # the old recipe: every copy is its own image, each epoch
        sources_y = [y for group, y in zip(versions, sources_y) for _ in group]
        versions = [[p] for group in versions for p in group]
    return RunData(
        classes=classes,
        train_versions=versions,
        train_sources_y=np.array(sources_y),
        train_paths=[p for group in versions for p in group],
        train_y=np.repeat(np.array(sources_y), [len(g) for g in versions]),
        val_paths=list(val["path"]),
        val_y=np.array([index[c] for c in val["label"]]),
        val_images=list(val["image"]),
        split=split_record(table, config.split),
        held_out=sorted(val["image"]),
        variant=model_name,
        fold=fold,
    )


def _augmented_copies(config, train_images, val_images, single_split):
    manifest_path = wd.manifest_path(config.workdir)
    if not manifest_path.exists():
        raise UserError(
            f"no augmented copies in {manifest_path.parent}: "
            "run augment_offline.py first (or train with --model original)"
        )
    manifest = wd.read_manifest(config.workdir)
    # With K folds every image has copies (each belongs to the other folds' training);
    # with one split, a copy of a validation image means the runner's pruning failed.
    leaked = set(manifest["source"]) & val_images if single_split else set()
    if leaked:  # the runner prunes these; refuse rather than trust it
        raise UserError(
            f"augmented copies of {len(leaked)} validation image(s) found, e.g. "
            f"{sorted(leaked)[0]}: rerun augment_offline.py to prune them"
        )
    manifest = manifest[manifest["source"].isin(train_images)]
    manifest["path"] = [str((manifest_path.parent / p).resolve()) for p in manifest["path"]]
    return manifest


# --- model pieces ----------------------------------------------------------------------


def make_loss(train_config):
    if train_config.loss == "focal":
        return keras.losses.CategoricalFocalCrossentropy(
            gamma=train_config.focal_gamma, label_smoothing=train_config.label_smoothing
        )
    return keras.losses.CategoricalCrossentropy(label_smoothing=train_config.label_smoothing)


def compile_model(model, optimizer, train_config):
    model.compile(
        optimizer=optimizer,
        loss=make_loss(train_config),
        metrics=["accuracy", keras.metrics.F1Score(average="macro", name="macro_f1")],
    )


def class_weights(labels, num_classes, enabled):
    if not enabled:
        return None
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    return {int(c): float(w) for c, w in zip(present, weights)} | {
        c: 1.0 for c in range(num_classes) if c not in present
    }


def drop_failures(paths, labels, failures):
    failed = {p for p, _ in failures}
    keep = [i for i, p in enumerate(paths) if p not in failed]
    return [paths[i] for i in keep], np.asarray(labels)[keep], keep


def one_writer(phase):
    """Hold the run folder's lock (:mod:`ripik_clf.locks`) while a phase trains. A worker
    other than the chief of a multi-worker run (train/distribute.py) writes nothing in
    the run folder and takes no lock on it."""
    from ripik_clf.train.distribute import cluster_from_env

    def wrap(train):
        @functools.wraps(train)
        def locked(config, model_name, *, fold=None, **options):
            if not cluster_from_env().is_chief:
                return train(config, model_name, fold=fold, **options)
            with exclusive(run_dir(config, run_of(config, model_name, fold)), f"the {phase} phase"):
                return train(config, model_name, fold=fold, **options)

        return locked

    return wrap


def accelerator_setup(precision="auto"):
    """Mixed precision when a GPU is present (or asked for): ``mixed_float16``, with the
    classifier's softmax kept in float32 (models/classifier.py)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    mixed = bool(gpus) if precision == "auto" else precision == "mixed"
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")


def remove_stale_full_phase(out):
    """A new head makes an earlier full model (and a half-done full run) stale: its class
    list or split may differ from the run record written now, so it must not be used."""
    import shutil

    shutil.rmtree(wd.full_backup_dir(out), ignore_errors=True)
    stale = (
        wd.phase_model(out, "full"),
        wd.phase_model(out, "full_best"),
        wd.history_path(out, "full"),
        wd.val_probabilities_path(out, "full"),
    )
    for path in stale:
        if path.exists():
            path.unlink()
            print(f"removed stale {path} (made from the previous head model)")


# --- run records -----------------------------------------------------------------------


def commit_phase_model(model, out, phase, config, data, probabilities):
    """Save a phase's model, its weights only (the commit point: a phase is finished when
    its model file exists), then enter its validation probabilities in the prediction
    cache, keyed by that file, so the ensemble reuses them (they equal its own no-TTA
    prediction)."""
    from ripik_clf.models.classifier import for_prediction
    from ripik_clf.predict.cache import store_model_predictions

    path = wd.phase_model(out, phase)
    save_model_atomically(for_prediction(model), path)
    store_model_predictions(
        wd.predictions_dir(config.workdir), path, "none", data.val_paths, probabilities
    )


def validation_metrics(data, probabilities):
    """Accuracy and F1 on validation, and the temperature that calibrates the model there
    (with the expected calibration error before and after it)."""
    from ripik_clf.predict.calibration import apply_temperature, fit_temperature
    from ripik_clf.report.metrics import expected_calibration_error

    y = data.val_y
    metrics = classification_metrics(y, probabilities, data.classes)
    temperature = fit_temperature(probabilities, y)
    calibrated = apply_temperature(probabilities, temperature)
    from sklearn.metrics import log_loss

    return metrics | {
        "nll": float(log_loss(y, probabilities, labels=range(len(data.classes)))),
        "temperature": temperature,
        "val_ece": expected_calibration_error(y, probabilities),
        "val_ece_calibrated": expected_calibration_error(y, calibrated),
    }


def save_run(out, config, data, size, phase, metrics, probabilities, **recipe):
    """Write what later stages read: the resolved config, the validation probabilities,
    the run record (its temperatures kept per phase; ``recipe``: the full phase's
    ``workdir.FULL_PHASE_RECIPE``: workers, global batch, learning-rate rule, steps)
    and the phase's metrics."""
    config.save(wd.config_path(out))
    wd.write_val_probabilities(out, phase, data.val_images, data.classes, probabilities)
    earlier = wd.read_run_record(out)
    temperature = (earlier.temperature if earlier else {}) | {phase: metrics["temperature"]}
    if not recipe and earlier and phase != "head":  # the probe keeps the full phase's
        recipe = {k: getattr(earlier, k) for k in wd.FULL_PHASE_RECIPE}
    all_metrics = wd.read_run_metrics(out) | {phase: metrics}
    if phase == "head":  # a new head makes the old full model stale
        temperature.pop("full", None)
        all_metrics.pop("full", None)
    record = wd.RunRecord(
        classes=data.classes,
        image_size=size,
        backbone=config.train.backbone,
        weights=config.train.weights,
        variant=data.variant,
        fold=data.fold,
        split=data.split,
        held_out=data.held_out,
        trained_with_flips=trained_with_flips(config, data.variant),
        flips=trained_flips(config, data.variant),
        seed=config.train.seed,
        temperature=temperature,  # per phase's model, fitted on validation (calibration.py)
        **recipe,
    )
    wd.write_run_record(out, record)
    wd.write_run_metrics(out, all_metrics)


def trained_flips(config, model_name):
    """The mirror images training showed: none | horizontal | all. The augmented variant
    saw its copies' (augment.flips, as chosen); on-the-fly flips follow that choice too."""
    made = recorded_flips(config.workdir)
    copies = made if model_name == "augmented" and made in ("horizontal", "all") else "none"
    on_the_fly = on_the_fly_flips(config, made)
    return max(copies, on_the_fly, key=("none", "horizontal", "all").index)


def recorded_flips(workdir):
    """The flips the copies were made with (``augmented/settings.json``), in today's terms
    (true / false were the old names of all / none); None when there are no copies."""
    settings = wd.read_augment_settings(workdir)
    return settings.flips if settings else None


def on_the_fly_flips(config, made=None):
    """What ``train.on_the_fly: flip`` (or ``crop``, crops then flips) mirrors: the
    orientations augment.flips chose for this data (horizontal without a choice on
    record); none when it chose none. ``made``: the recorded flips, when the caller has
    read them already."""
    if config.train.on_the_fly not in ("flip", "crop"):
        return "none"
    made = recorded_flips(config.workdir) if made is None else made
    return made if made in ("none", "horizontal", "all") else "horizontal"


def trained_with_flips(config, model_name):
    """Did training show mirrored images? Then flip TTA matches what the model learned."""
    return trained_flips(config, model_name) != "none"


def check_run(out, data, tc):
    """The saved head must match this work directory's split and class list."""
    record = wd.read_run_record(out, for_model=wd.phase_model(out, "head"))
    if record.classes != data.classes:
        raise UserError(
            f"{out} was trained on classes {record.classes}, the data now has "
            f"{data.classes}: retrain the head (train.py --phase head)"
        )
    refuse_other_split(out.name, record.split, data.split)
    if tc.image_size and tc.image_size != record.image_size:
        raise UserError(
            f"{out} takes {record.image_size} px images, "
            f"the config asks for {tc.image_size}: retrain the head"
        )
    return record.image_size
