"""The two phases: head on cached features (backbone frozen), then full fine-tuning.

Run directory ``WORKDIR/runs/<model>/``: ``config.yaml``, the run record (classes, split
fingerprint, backbone, image size), ``history_head.csv``, ``history_full.csv``,
``head.keras``, ``full.keras``, ``metrics.json``, ``skipped.csv``.
"""

import functools
import sys
import time

import keras
import numpy as np
import pandas as pd

from ripik_clf import workdir as wd
from ripik_clf.data.dataset import class_names, load_dataset
from ripik_clf.data.splits import load_or_make_splits, refuse_other_split, split_record
from ripik_clf.errors import UserError
from ripik_clf.locks import exclusive, save_model_atomically
from ripik_clf.models.registry import create_backbone, resolve_image_size
from ripik_clf.report.metrics import classification_metrics
from ripik_clf.train import features as feature_cache
from ripik_clf.train.callbacks import AtomicBackupAndRestore, FitProgress
from ripik_clf.train.datasets import EpochClock, versioned_dataset
from ripik_clf.workdir import run_name

_VERBOSE = (
    1 if sys.stdout.isatty() else 2
)  # progress bars on a terminal, one line per epoch in logs


def run_dir(config, run):
    return wd.run_dir(config.workdir, run)


# --- data ------------------------------------------------------------------------------


def model_data(config, model_name, *, fold=None, resplit=False):
    """Training and validation files for one model, as absolute paths and class indices.

    ``original`` trains on the training split; ``augmented`` adds the offline copies of
    those images. Validation is always real images, never a copy. With K folds, fold k
    validates on the images of fold k and trains on the others (and their copies).

    Returns a dict with ``train_versions`` (per source image: its path, then its copies'),
    ``train_sources_y``, the flat ``train_paths`` / ``train_y`` (every version),
    ``val_paths`` / ``val_y``, ``split`` (see :func:`ripik_clf.data.splits.split_record`) and
    ``held_out`` (the images this model never trains on).
    """
    dataset, _ = load_dataset(config.data)
    splits = load_or_make_splits(dataset, config.split, config.workdir, resplit=resplit)
    folds = int(splits["fold"].max()) + 1 if (splits["split"] == "fold").all() else 0
    if folds and not (fold is not None and 0 <= fold < folds):
        raise UserError(f"fold {fold} is out of range: the split has folds 0..{folds - 1}")
    if not folds and fold is not None:
        raise UserError(f"--fold {fold} needs a k-fold split (split.folds: K >= 2)")
    classes = class_names(dataset)
    index = {c: i for i, c in enumerate(classes)}
    table = splits.merge(dataset[["image", "path"]], on="image")
    in_val = table.fold == fold if folds else table.split == "val"
    train, val = table[~in_val], table[in_val]
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
    return {
        "classes": classes,
        "train_versions": versions,
        "train_sources_y": np.array(sources_y),
        "train_paths": [p for group in versions for p in group],
        "train_y": np.repeat(np.array(sources_y), [len(g) for g in versions]),
        "val_paths": list(val["path"]),
        "val_y": np.array([index[c] for c in val["label"]]),
        "split": split_record(splits, config.split),
        "held_out": sorted(val["image"]),
        "val_images": list(val["image"]),  # in the order of val_paths / val_y
        "model": model_name,
        "fold": fold,
    }


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


def build_classifier(backbone, num_classes, dropout):
    """Backbone (inference mode) -> pooling -> dropout -> float32 softmax, raw pixels in."""
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    # training=False keeps BatchNorm in inference mode even after unfreezing (phase 2):
    # updating its statistics on a small dataset destroys what the head learned.
    x = backbone(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="classifier"
    )(x)
    return keras.Model(inputs, outputs, name="classifier_model")


def feature_extractor(backbone):
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(backbone.output)
    return keras.Model(backbone.input, pooled, name="feature_extractor")


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


def _drop_failures(paths, labels, failures):
    failed = {p for p, _ in failures}
    keep = [i for i, p in enumerate(paths) if p not in failed]
    return [paths[i] for i in keep], np.asarray(labels)[keep], keep


def _one_writer(phase):
    """Hold the run folder's lock (:mod:`ripik_clf.locks`) while a phase trains."""

    def wrap(train):
        @functools.wraps(train)
        def locked(config, model_name, *, fold=None, **options):
            with exclusive(run_dir(config, run_name(model_name, fold)), f"the {phase} phase"):
                return train(config, model_name, fold=fold, **options)

        return locked

    return wrap


# --- phase 1: head ---------------------------------------------------------------------


@_one_writer("head")
def train_head(config, model_name, *, fold=None, resplit=False):
    """Train the classifier head on cached backbone features; save ``head.keras``."""
    tc = config.train
    started = time.perf_counter()
    data, out, size, backbone, (train_x, train_y, val_x) = _cached_features(
        config, model_name, fold, resplit
    )
    classes = data["classes"]
    feature_seconds = time.perf_counter() - started

    head = keras.Sequential(
        [
            keras.Input((train_x.shape[1],), name="features"),
            keras.layers.Dropout(tc.dropout, name="head_dropout"),
            keras.layers.Dense(
                len(classes), activation="softmax", dtype="float32", name="classifier"
            ),
        ]
    )
    compile_model(head, keras.optimizers.Adam(tc.head_lr), tc)
    n = len(classes)
    history = head.fit(
        train_x,
        keras.utils.to_categorical(train_y, n),
        batch_size=tc.batch_size,
        epochs=tc.head_epochs,
        validation_data=(val_x, keras.utils.to_categorical(data["val_y"], n)),
        class_weight=class_weights(train_y, n, tc.class_weights),
        verbose=_VERBOSE,
        callbacks=[
            keras.callbacks.EarlyStopping(
                "val_macro_f1", mode="max", patience=tc.head_patience, restore_best_weights=True
            ),
            keras.callbacks.CSVLogger(str(out / "history_head.csv")),
        ],
    )
    model = build_classifier(backbone, n, tc.dropout)
    model.get_layer("classifier").set_weights(head.get_layer("classifier").get_weights())
    save_model_atomically(model, out / "head.keras")
    _remove_stale_full_phase(out)
    val_probabilities = head.predict(val_x, verbose=0)
    metrics = _validation_metrics(data, val_probabilities)
    metrics.update(
        epochs=len(history.history["loss"]),
        seconds=time.perf_counter() - started,
        feature_seconds=feature_seconds,
        train_images=len(train_y),
    )
    _save_run(out, config, data, size, "head", metrics, val_probabilities)
    return metrics


def frozen_backbone(config):
    """The configured backbone, frozen (random weights seeded), with its pooled-feature
    extractor, input size and feature cache folder: what the head and probe phases and
    the audit share, so they share the cache too.

    Returns:
        (backbone, extractor, image size, cache folder).
    """
    tc = config.train
    keras.utils.set_random_seed(tc.seed)  # random weights (weights: none) depend on it
    size = resolve_image_size(tc.backbone, tc.image_size)
    backbone = create_backbone(tc.backbone, weights=tc.weights, image_size=size)
    backbone.trainable = False
    tag = feature_cache.cache_tag(tc.backbone, tc.weights, size, tc.seed)
    return backbone, feature_extractor(backbone), size, wd.features_dir(config.workdir, tag)


def _cached_features(config, model_name, fold, resplit):
    """The frozen backbone's features of every training version and validation image
    (cached); unreadable training files are dropped and listed in ``skipped.csv``.

    Returns:
        (data, run folder, image size, backbone, (train_x, train_y, val_x)).
    """
    accelerator_setup(config.train.precision)
    data = model_data(config, model_name, fold=fold, resplit=resplit)
    out = run_dir(config, run_name(model_name, fold))
    out.mkdir(parents=True, exist_ok=True)
    backbone, extractor, size, cache = frozen_backbone(config)
    train_x, train_fail = feature_cache.extract_features(
        data["train_paths"], extractor, size, cache, desc=f"{model_name} train"
    )
    val_x, val_fail = feature_cache.extract_features(
        data["val_paths"], extractor, size, cache, desc=f"{model_name} val"
    )
    if val_fail:
        raise UserError(f"validation image unreadable: {val_fail[0][0]} ({val_fail[0][1]})")
    _, train_y, keep = _drop_failures(data["train_paths"], data["train_y"], train_fail)
    pd.DataFrame(train_fail, columns=["path", "reason"]).to_csv(out / "skipped.csv", index=False)
    if train_fail:  # never silently: say how many and where they are listed
        path, reason = train_fail[0]
        print(
            f"warning: {len(train_fail)} training image(s) unreadable, left out and listed in "
            f"{out / 'skipped.csv'}; first: {path} ({reason})",
            file=sys.stderr,
        )
    data["kept_versions"] = keep  # positions in train_paths of the readable versions
    return data, out, size, backbone, (train_x[keep], train_y, val_x)


# --- phase "probe": a logistic regression on the cached features -----------------------


@_one_writer("probe")
def train_probe(config, model_name, *, fold=None, resplit=False):
    """Fit the logistic probe (C by cross-validation on the training versions, grouped
    by source image so a copy never validates its own original); save ``probe.keras``."""
    from ripik_clf.models.probe import fit_probe, probe_as_dense

    tc = config.train
    started = time.perf_counter()
    data, out, size, backbone, (train_x, train_y, val_x) = _cached_features(
        config, model_name, fold, resplit
    )
    groups = _source_of_version(data)
    probe = fit_probe(train_x, train_y, seed=tc.seed, groups=groups)
    model = build_classifier(backbone, len(data["classes"]), tc.dropout)
    model.get_layer("classifier").set_weights(list(probe_as_dense(probe)))
    save_model_atomically(model, out / "probe.keras")
    val_probabilities = probe.predict_proba(val_x)
    metrics = _validation_metrics(data, val_probabilities)
    metrics.update(
        epochs=0,
        seconds=time.perf_counter() - started,
        train_images=len(train_y),
        C=float(probe.best_params_["logisticregression__C"]),
    )
    _save_run(out, config, data, size, "probe", metrics, val_probabilities)
    return metrics


def _source_of_version(data):
    """Source index of every readable training version (for grouped cross-validation)."""
    sizes = list(map(len, data["train_versions"]))
    return np.repeat(np.arange(len(sizes)), sizes)[data["kept_versions"]]


# --- phase 2: full ---------------------------------------------------------------------


def unfreeze(model):
    """Every layer trainable except BatchNormalization (kept frozen, see build_classifier)."""
    for layer in _walk(model):  # parents before children, so the BN override sticks
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    return model


def _walk(layer):
    yield layer
    for child in layer.layers if isinstance(layer, keras.Model) else []:
        yield from _walk(child)


@_one_writer("full")
def train_full(config, model_name, *, fold=None, resplit=False, extra_callbacks=()):
    """Fine-tune ``head.keras`` end to end at a low learning rate; save ``full.keras``.

    An epoch is one pass over the source images, each shown as one of its versions (the
    original or a copy: a different one each epoch), unless ``train.epoch: all``.
    Interrupted runs resume from the last finished epoch (``backup_full/``).
    """
    tc = config.train
    keras.utils.set_random_seed(tc.seed)
    out = run_dir(config, run_name(model_name, fold))
    if not (out / "head.keras").exists():
        raise UserError(f"no head model in {out}: run train.py --phase head first")
    data = model_data(config, model_name, fold=fold, resplit=resplit)
    size = _check_run(out, data, tc)
    skipped = set(pd.read_csv(out / "skipped.csv")["path"])
    versions, sources_y = _drop_unreadable(data["train_versions"], data["train_sources_y"], skipped)
    clock = EpochClock()
    train_ds, val_ds = _full_phase_datasets(tc, out.name, data, versions, sources_y, size, clock)
    strategy = accelerator_setup(tc.precision)
    steps_per_epoch = int(np.ceil(len(versions) / tc.batch_size))
    with strategy.scope():
        n = len(data["classes"])
        model = unfreeze(_load_for_finetuning(out / "head.keras", size, n, tc.dropout))
        compile_model(model, full_phase_optimizer(tc, steps_per_epoch), tc)
    started = time.perf_counter()
    callbacks = _full_phase_callbacks(out, tc, clock, len(versions)) + list(extra_callbacks)
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=tc.full_epochs,
        verbose=_VERBOSE,
        shuffle=False,  # the dataset shuffles itself, by epoch
        class_weight=class_weights(sources_y, n, tc.class_weights),
        callbacks=callbacks,
    )
    seconds = time.perf_counter() - started
    best = keras.models.load_model(out / "full_best.keras")
    save_model_atomically(best, out / "full.keras")
    (out / "full_best.keras").unlink()
    val_probabilities = best.predict(val_ds, verbose=0)
    metrics = _validation_metrics(data, val_probabilities)
    metrics.update(
        epochs=len(pd.read_csv(out / "history_full.csv")),
        seconds=seconds,
        train_images=len(versions),
        train_versions=sum(map(len, versions)),
    )
    _save_run(out, config, data, size, "full", metrics, val_probabilities)
    return metrics


def _full_phase_datasets(tc, name, data, versions, sources_y, size, clock):
    """The training stream (a version of each source per epoch, chosen by ``clock``) and
    the validation images, as tf.data datasets."""
    n = len(data["classes"])
    train_ds = versioned_dataset(
        versions,
        sources_y,
        n,
        size,
        tc.batch_size,
        seed=tc.seed,
        clock=clock,
        epochs=tc.full_epochs,
        on_the_fly=tc.on_the_fly,
        desc=f"{name}: decode training images",
    )
    val_ds = versioned_dataset(
        [[p] for p in data["val_paths"]],
        data["val_y"],
        n,
        size,
        tc.batch_size,
        desc=f"{name}: decode validation images",
    )
    return train_ds, val_ds


def _full_phase_callbacks(out, tc, clock, n_sources):
    """Resume state, best-model checkpoint, early stopping, history and progress; a
    resumed run keeps its history and the best score it had reached."""
    history_csv = out / "history_full.csv"
    backup = AtomicBackupAndRestore(out / "backup_full")
    resuming = backup.prepare()
    if not resuming and history_csv.exists():
        history_csv.unlink()
    return [
        clock,  # first: the epoch's versions are chosen from it
        backup,  # resume after an interruption, even a kill -9
        keras.callbacks.ModelCheckpoint(
            str(out / "full_best.keras"),
            "val_macro_f1",
            mode="max",
            save_best_only=True,
            initial_value_threshold=_best_logged(history_csv) if resuming else None,
        ),
        keras.callbacks.EarlyStopping("val_macro_f1", mode="max", patience=tc.full_patience),
        keras.callbacks.CSVLogger(str(history_csv), append=True),
        FitProgress(f"full phase {out.name}", n_sources, tc.batch_size, tc.full_epochs),
    ]


def full_phase_optimizer(tc, steps_per_epoch):
    """Adam(W) with a linear warm-up to ``full_lr`` over ``full_warmup_epochs``, then
    cosine decay to 0: a warm-up keeps the first large steps from wrecking the head."""
    total = steps_per_epoch * tc.full_epochs
    warmup = min(int(round(steps_per_epoch * tc.full_warmup_epochs)), total - 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else tc.full_lr,
        decay_steps=max(total - warmup, 1),
        warmup_target=tc.full_lr if warmup else None,
        warmup_steps=warmup,
    )
    if tc.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=tc.weight_decay)
    return keras.optimizers.Adam(schedule)


def _drop_unreadable(versions, sources_y, unreadable):
    """Versions without the files the head phase could not read (listed in skipped.csv);
    a source left with no readable version is dropped."""
    kept = [([p for p in group if p not in unreadable], y) for group, y in zip(versions, sources_y)]
    kept = [(group, y) for group, y in kept if group]
    return [g for g, _ in kept], np.array([y for _, y in kept])


def accelerator_setup(precision="auto"):
    """Mixed precision when a GPU is present (or asked for); several GPUs: mirrored.

    Returns:
        the tf.distribute strategy to build and compile the model under.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    mixed = bool(gpus) if precision == "auto" else precision == "mixed"
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _load_for_finetuning(path, size, num_classes, dropout):
    """The saved head model; rebuilt under the global policy when that is mixed precision
    (a saved model keeps the float32 policy it was built with)."""
    saved = keras.models.load_model(path)
    if keras.mixed_precision.global_policy().name == "float32":
        return saved
    record = wd.read_run_record(path.parent, for_model=path)
    backbone = create_backbone(record.backbone, weights=None, image_size=size)
    model = build_classifier(backbone, num_classes, dropout)
    model.set_weights(saved.get_weights())
    return model


def _remove_stale_full_phase(out):
    """A new head makes an earlier full model (and a half-done full run) stale: its class
    list or split may differ from the run record written now, so it must not be used."""
    import shutil

    shutil.rmtree(out / "backup_full", ignore_errors=True)
    stale = (
        "full.keras",
        "full_best.keras",
        "history_full.csv",
        wd.val_probabilities_path(out, "full").name,
    )
    for name in stale:
        if (out / name).exists():
            (out / name).unlink()
            print(f"removed stale {out / name} (made from the previous head model)")


def _best_logged(history_csv):
    if not history_csv.exists():
        return None
    logged = pd.read_csv(history_csv)
    return float(logged["val_macro_f1"].max()) if len(logged) else None


# --- run records -----------------------------------------------------------------------


def _validation_metrics(data, probabilities):
    """Accuracy and F1 on validation, and the temperature that calibrates the model there
    (with the expected calibration error before and after it)."""
    from ripik_clf.predict.calibration import apply_temperature, fit_temperature
    from ripik_clf.report.metrics import expected_calibration_error

    y = data["val_y"]
    metrics = classification_metrics(y, probabilities, data["classes"])
    temperature = fit_temperature(probabilities, y)
    calibrated = apply_temperature(probabilities, temperature)
    return metrics | {
        "temperature": temperature,
        "val_ece": expected_calibration_error(y, probabilities),
        "val_ece_calibrated": expected_calibration_error(y, calibrated),
    }


def _save_run(out, config, data, size, phase, metrics, probabilities):
    """Write what later stages read: the resolved config, the validation probabilities,
    the run record (its temperatures kept per phase) and the phase's metrics."""
    config.save(out / "config.yaml")
    wd.write_val_probabilities(out, phase, data["val_images"], data["classes"], probabilities)
    earlier = wd.read_run_record(out)
    temperature = (earlier.temperature if earlier else {}) | {phase: metrics["temperature"]}
    all_metrics = wd.read_run_metrics(out) | {phase: metrics}
    if phase == "head":  # a new head makes the old full model stale
        temperature.pop("full", None)
        all_metrics.pop("full", None)
    record = wd.RunRecord(
        classes=data["classes"],
        image_size=size,
        backbone=config.train.backbone,
        weights=config.train.weights,
        variant=data["model"],
        fold=data["fold"],
        split=data["split"],
        held_out=data["held_out"],
        trained_with_flips=trained_with_flips(config, data["model"]),
        temperature=temperature,  # per phase's model, fitted on validation (calibration.py)
    )
    wd.write_run_record(out, record)
    wd.write_run_metrics(out, all_metrics)


def trained_with_flips(config, model_name):
    """Did training show mirrored images? Then flip TTA matches what the model learned."""
    if config.train.on_the_fly == "flip":
        return True
    settings = wd.read_augment_settings(config.workdir)
    return model_name == "augmented" and bool(settings and settings.get("flips"))


def _check_run(out, data, tc):
    """The saved head must match this work directory's split and class list."""
    record = wd.read_run_record(out, for_model=out / "head.keras")
    if record.classes != data["classes"]:
        raise UserError(
            f"{out} was trained on classes {record.classes}, the data now has "
            f"{data['classes']}: retrain the head (train.py --phase head)"
        )
    refuse_other_split(out.name, record.split, data["split"])
    if tc.image_size and tc.image_size != record.image_size:
        raise UserError(
            f"{out} takes {record.image_size} px images, "
            f"the config asks for {tc.image_size}: retrain the head"
        )
    return record.image_size
