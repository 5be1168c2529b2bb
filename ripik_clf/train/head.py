"""The phases on cached features, backbone frozen: the head (a softmax layer trained
with Keras) and the probe (a logistic regression, folded into the same layer)."""

import sys
import time

import keras
import numpy as np

from ripik_clf import workdir as wd
from ripik_clf.data.images import median_shorter_side
from ripik_clf.errors import UserError
from ripik_clf.models.classifier import (
    build_classifier,
    feature_extractor,
    head_on_features,
)
from ripik_clf.models.registry import create_backbone, larger_input_hint, resolve_image_size
from ripik_clf.shards import WHOLE
from ripik_clf.train import features as feature_cache
from ripik_clf.train.callbacks import WholeFileCSVLogger
from ripik_clf.train.common import (
    VERBOSE,
    accelerator_setup,
    claim_run,
    class_weights,
    commit_phase_model,
    compile_model,
    drop_failures,
    model_data,
    one_writer,
    refuse_a_batch_that_cannot_fit,
    remove_stale_full_phase,
    run_dir,
    run_of,
    save_run,
    validation_metrics,
)
from ripik_clf.train.tracking import tensorboard_callback

# --- phase 1: head ---------------------------------------------------------------------


@one_writer("head")
def train_head(
    config, model_name, *, fold=None, resplit=False, overwrite=False, extra_callbacks=()
):
    """Train the classifier head on cached backbone features; save ``head.keras``."""
    tc = config.train
    started = time.perf_counter()
    data, out, size, backbone, (train_x, train_y, val_x) = _cached_features(
        config, model_name, fold, resplit, ("head", overwrite)
    )
    classes = data.classes
    feature_seconds = time.perf_counter() - started

    head = head_on_features(train_x.shape[1], len(classes), tc.dropout)
    compile_model(head, keras.optimizers.Adam(tc.head_lr), tc)
    n = len(classes)
    history = head.fit(
        train_x,
        keras.utils.to_categorical(train_y, n),
        batch_size=tc.batch_size,
        epochs=tc.head_epochs,
        validation_data=(val_x, keras.utils.to_categorical(data.val_y, n)),
        class_weight=class_weights(train_y, n, tc.class_weights),
        verbose=VERBOSE,
        callbacks=[
            keras.callbacks.EarlyStopping(
                "val_macro_f1", mode="max", patience=tc.head_patience, restore_best_weights=True
            ),
            WholeFileCSVLogger(wd.history_path(out, "head")),
            tensorboard_callback(out, "head"),
            *extra_callbacks,
        ],
    )
    model = build_classifier(backbone, n, tc.dropout)
    model.get_layer("classifier").set_weights(head.get_layer("classifier").get_weights())
    remove_stale_full_phase(out)
    val_probabilities = head.predict(val_x, verbose=0)
    metrics = validation_metrics(data, val_probabilities)
    metrics.update(
        epochs=len(history.history["loss"]),
        seconds=time.perf_counter() - started,
        feature_seconds=feature_seconds,
        train_images=len(train_y),
    )
    save_run(out, config, data, size, "head", metrics, val_probabilities)
    # The model last: a phase is finished when its model file exists, so a kill at any
    # moment before leaves a phase the same command trains again.
    commit_phase_model(model, out, "head", config, data, val_probabilities)
    return metrics


def suggest_for_split(config):
    """The input-size suggestion for the photos of the saved split (real photos, never
    augmented copies): once per head-phase command, whatever its number of runs."""
    table = wd.read_split_table(config.workdir)
    if "path" in table:  # a split made by an older version names no files
        size = resolve_image_size(config.train.backbone, config.train.image_size)
        suggest_larger_input(config.train.image_size, size, list(table["path"]))


def suggest_larger_input(configured, size, photo_paths):
    """One line when the photos have more pixels than the default input shows them."""
    suggested = larger_input_hint(configured, size, median_shorter_side(photo_paths))
    if suggested:
        print(
            f"note: the photos' median shorter side is at least {suggested} px and the "
            f"model sees {size} px: --set train.image_size={suggested} (every stage) may be "
            "more accurate and costs more per image (Lite0 at 256 px on 256 px aerial "
            "tiles: +1.2 points over two seeds, not beyond noise; benchmarks/RESULTS.md)",
            file=sys.stderr,
        )


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
    precision = keras.mixed_precision.global_policy().name  # accelerator_setup's
    tag = feature_cache.cache_tag(tc.backbone, tc.weights, size, tc.seed, precision)
    return backbone, feature_extractor(backbone), size, wd.features_dir(config.workdir, tag)


def _cached_features(config, model_name, fold, resplit, claim):
    """The frozen backbone's features of every training version and validation image
    (cached); unreadable training files are dropped and listed in ``skipped.csv``.

    Returns:
        (data, run folder, image size, backbone, (train_x, train_y, val_x)).
    """
    accelerator_setup(config.train.precision)
    size = resolve_image_size(config.train.backbone, config.train.image_size)
    refuse_a_batch_that_cannot_fit(size, config.train.batch_size, training=False)
    data = model_data(config, model_name, fold=fold, resplit=resplit)
    out = run_dir(config, run_of(config, model_name, fold))
    claim_run(out, config, model_name, size, *claim)
    out.mkdir(parents=True, exist_ok=True)
    backbone, extractor, size, cache = frozen_backbone(config)
    train_x, train_fail = feature_cache.extract_features(
        data.train_paths, extractor, size, cache, desc=f"{model_name} train"
    )
    val_x, val_fail = feature_cache.extract_features(
        data.val_paths, extractor, size, cache, desc=f"{model_name} val"
    )
    if val_fail:
        raise UserError(f"validation image unreadable: {val_fail[0][0]} ({val_fail[0][1]})")
    _, train_y, keep = drop_failures(data.train_paths, data.train_y, train_fail)
    wd.write_skipped(out, train_fail)
    if train_fail:  # never silently: say how many and where they are listed
        path, reason = train_fail[0]
        print(
            f"warning: {len(train_fail)} training image(s) unreadable, left out and listed in "
            f"{out / wd.SKIPPED_CSV}; first: {path} ({reason})",
            file=sys.stderr,
        )
    data.kept_versions = keep  # positions in train_paths of the readable versions
    return data, out, size, backbone, (train_x[keep], train_y, val_x)


# --- sharded feature extraction: the head and probe phases are its merge step ---------


def extract_features_shard(config, model_name, *, fold=None, shard=WHOLE):
    """Compute this shard's share of a run's backbone features (its training versions
    and validation images) into the feature cache, writing nothing in the run folder.

    N machines each run one shard; the head or probe phase afterwards (one machine)
    finds every image in the cache. The cache is keyed by content, so a share computed
    twice, or by machines that see the data under other paths, is still correct: what a
    shard did not compute, the phase computes.

    Returns:
        {"images": this shard's images, "unreadable": how many could not be read,
        "cache": the cache folder}.
    """
    size = resolve_image_size(config.train.backbone, config.train.image_size)
    refuse_a_batch_that_cannot_fit(size, config.train.batch_size, training=False)
    accelerator_setup(config.train.precision)
    data = model_data(config, model_name, fold=fold, make_split=False)  # shards never split
    _, extractor, size, cache = frozen_backbone(config)
    mine = shard.take(set(data.train_paths) | set(data.val_paths))
    _, failures = feature_cache.extract_features(
        mine, extractor, size, cache, desc=f"{model_name} features{shard.suffix}"
    )
    return {"images": len(mine), "unreadable": len(failures), "cache": cache}


# --- phase "probe": a logistic regression on the cached features -----------------------


@one_writer("probe")
def train_probe(config, model_name, *, fold=None, resplit=False, overwrite=False):
    """Fit the logistic probe (C by cross-validation on the training versions, grouped
    by source image so a copy never validates its own original); save ``probe.keras``."""
    from ripik_clf.models.probe import fit_probe, probe_as_dense

    tc = config.train
    started = time.perf_counter()
    data, out, size, backbone, (train_x, train_y, val_x) = _cached_features(
        config, model_name, fold, resplit, ("probe", overwrite)
    )
    groups = _source_of_version(data)
    probe = fit_probe(train_x, train_y, seed=tc.seed, groups=groups)
    model = build_classifier(backbone, len(data.classes), tc.dropout)
    model.get_layer("classifier").set_weights(list(probe_as_dense(probe)))
    val_probabilities = probe.predict_proba(val_x)
    metrics = validation_metrics(data, val_probabilities)
    metrics.update(
        epochs=0,
        seconds=time.perf_counter() - started,
        train_images=len(train_y),
        C=float(probe.best_params_["logisticregression__C"]),
    )
    save_run(out, config, data, size, "probe", metrics, val_probabilities)
    commit_phase_model(model, out, "probe", config, data, val_probabilities)  # last
    return metrics


def _source_of_version(data):
    """Source index of every readable training version (for grouped cross-validation)."""
    sizes = list(map(len, data.train_versions))
    return np.repeat(np.arange(len(sizes)), sizes)[data.kept_versions]
