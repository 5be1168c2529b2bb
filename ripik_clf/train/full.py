"""Phase 2: every layer but BatchNorm fine-tuned at a low learning rate, resumable."""

import contextlib
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import keras
import numpy as np

from ripik_clf import workdir as wd
from ripik_clf.errors import UserError
from ripik_clf.locks import load_model_file
from ripik_clf.models.classifier import (
    build_classifier,
    set_head_dropout,
    unfreeze,
)
from ripik_clf.models.efficientnet_lite import set_stochastic_depth
from ripik_clf.models.registry import create_backbone
from ripik_clf.train.callbacks import (
    AtomicBackupAndRestore,
    BestModelCheckpoint,
    CommitBackup,
    FitProgress,
    WholeFileCSVLogger,
)
from ripik_clf.train.common import (
    VERBOSE,
    accelerator_setup,
    check_run,
    claim_run,
    class_weights,
    commit_phase_model,
    compile_model,
    model_data,
    on_the_fly_flips,
    one_writer,
    refuse_a_batch_that_cannot_fit,
    run_dir,
    run_of,
    save_run,
    validation_metrics,
)
from ripik_clf.train.datasets import EpochClock, Share, versioned_dataset
from ripik_clf.train.distribute import barrier, describe, training_strategy, use_xla
from ripik_clf.train.loop import fit_distributed
from ripik_clf.train.recipe import (
    describe_rule,
    full_phase_epochs,
    full_phase_optimizer,
    learning_rate_rule,
    recipe_batch,
)
from ripik_clf.train.tracking import tensorboard_callback

# --- phase 2: full ---------------------------------------------------------------------


@one_writer("full")
def train_full(
    config, model_name, *, fold=None, resplit=False, overwrite=False, extra_callbacks=()
):
    """Fine-tune ``head.keras`` end to end at a low learning rate; save ``full.keras``.

    An epoch is one pass over the source images, each shown as one of its versions (the
    original or a copy: a different one each epoch), unless ``train.epoch: all``.
    Interrupted runs resume from the last finished epoch (``backup_full/``).
    """
    if resplit:  # before any work: the flag is refused, whatever else is missing
        raise UserError("the full phase never makes a split: --resplit belongs to the head phase")
    # Then: a multi-worker strategy must exist before TensorFlow runs anything.
    strategy, cluster = training_strategy(config.train.distribute, config.train.peer_timeout)
    out = run_dir(config, run_of(config, model_name, fold))
    if not wd.phase_model(out, "head").exists():
        raise UserError(f"no head model in {out}: run train.py --phase head first")
    config = _with_run_settings(config, wd.read_run_record(out, for_model=out / "head.keras"))
    tc = config.train
    keras.utils.set_random_seed(tc.seed)
    data = model_data(config, model_name, fold=fold, make_split=False)
    size = check_run(out, data, tc)  # another split or class list: that is the news
    refuse_a_batch_that_cannot_fit(size, tc.batch_size, training=True)
    if cluster.is_chief:
        claim_run(out, config, model_name, size, "full", overwrite)
    skipped = wd.read_skipped(out)
    versions, sources_y = _drop_unreadable(data.train_versions, data.train_sources_y, skipped)
    global_batch = recipe_batch(tc.batch_size, strategy.num_replicas_in_sync)
    steps_per_epoch = int(np.ceil(len(versions) / global_batch))
    epochs = full_phase_epochs(tc, steps_per_epoch)
    if epochs != tc.full_epochs:
        print(f"full phase: {epochs} epochs, not train.full_epochs {tc.full_epochs}: "
              f"{tc.full_epochs} x {steps_per_epoch} steps is under train.full_min_steps "
              f"{tc.full_min_steps} (--epochs N trains exactly N)")  # fmt: skip
    tc.full_epochs = epochs  # saved in the run's config
    start, start_phase, start_score, start_choice = _start_model(out, tc.full_start, data)
    xla = use_xla(tc.xla)
    print(
        f"full phase {out.name}: {tc.full_epochs} epochs x {steps_per_epoch} steps of "
        f"{global_batch} images ({describe_rule(learning_rate_rule(tc, steps_per_epoch))}, the "
        f"same at any number of replicas) on {describe(strategy, cluster)}"
        f"{', XLA' if xla else ''}, from {start.name} "
        f"(validation macro-F1 {start_score:.4f})"
    )
    clock = EpochClock()
    on_the_fly = _on_the_fly(config)
    share = Share(cluster.index, cluster.workers, strategy.num_replicas_in_sync)
    train_ds, val_ds = _full_phase_datasets(
        tc, out.name, data, (versions, sources_y), size, clock, on_the_fly, share
    )
    accelerator_setup(tc.precision)
    with strategy.scope():
        n = len(data.classes)
        model = unfreeze(_load_for_finetuning(start, size, n, tc.dropout))
        # This phase's regularisation, whatever the head phase built the model with.
        set_head_dropout(model, tc.dropout)
        set_stochastic_depth(model, tc.stochastic_depth)
        compile_model(model, full_phase_optimizer(tc, steps_per_epoch), tc)
    # The chief writes the run folder; another worker works in a private copy of what
    # it resumes from, taken once the chief has recovered it (the barrier).
    with _worker_folder(out, cluster, strategy) as writes:
        started = time.perf_counter()
        callbacks = _full_phase_callbacks(
            writes, tc, clock, len(versions), start_score, global_batch
        )
        if cluster.is_chief:
            barrier(strategy)
        callbacks += list(extra_callbacks)
        with _peers_lost_say_how_to_resume(cluster, out):
            fit_distributed(
                model,
                train_ds,
                val_ds,
                strategy=strategy,
                epochs=tc.full_epochs,
                steps_per_epoch=steps_per_epoch,
                global_batch=global_batch,
                examples=(len(versions), len(data.val_paths)),
                callbacks=callbacks,
                class_weight=class_weights(sources_y, n, tc.class_weights),
                verbose=VERBOSE,
                jit_compile=xla,
            )
        seconds = time.perf_counter() - started
        optimizer_steps = int(model.optimizer.iterations.numpy())  # resumed runs: all of them
        if cluster.workers > 1:  # equal on every worker: they trained one model together
            print(f"worker {cluster.index} of {cluster.workers}: final weights {_digest(model)}")
        if not cluster.is_chief:  # trained in step with the chief, which saves the model
            return None
    best_path = wd.phase_model(out, "full_best")  # the checkpoint of the best epoch
    improved = best_path.exists()  # no checkpoint: no epoch beat the starting model
    if not improved:
        print(
            f"note: no epoch beat {start.name} on validation macro-F1 ({start_score:.4f}): "
            f"full.keras is {start.name}"
        )
    # The start model is rebuilt under this phase's precision policy, like the checkpoint.
    best = (
        load_model_file(best_path)
        if improved
        else _load_for_finetuning(start, size, len(data.classes), tc.dropout)
    )
    if cluster.workers > 1:  # the chief read its share of them: now every image
        val_ds = _validation_dataset(tc, out.name, data, size, Share())
    val_probabilities = best.predict(val_ds, verbose=0)
    metrics = validation_metrics(data, val_probabilities)
    metrics.update(
        epochs=len(wd.read_history(wd.history_path(out, "full"))),
        seconds=seconds,
        train_images=len(versions),
        train_versions=sum(map(len, versions)),
        started_from=start_phase,
        start_choice=start_choice.to_record() if start_choice else None,
        improved_on_start=improved,
    )
    recipe = {"workers": cluster.workers, "replicas": strategy.num_replicas_in_sync,
              "global_batch": global_batch, **learning_rate_rule(tc, steps_per_epoch),
              "optimizer_steps": optimizer_steps}  # fmt: skip
    save_run(out, config, data, size, "full", metrics, val_probabilities, **recipe)
    commit_phase_model(best, out, "full", config, data, val_probabilities)  # last
    best_path.unlink(missing_ok=True)
    return metrics


def _full_phase_datasets(tc, name, data, train, size, clock, on_the_fly, share):
    """This worker's ``share`` of the training stream (``train``: (versions, labels); a
    version of each source per epoch, chosen by ``clock``) and of the validation images,
    in global batches of ``train.batch_size``, as tf.data datasets."""
    train_ds = versioned_dataset(
        *train,
        len(data.classes),
        size,
        tc.batch_size,
        seed=tc.seed,
        clock=clock,
        epochs=tc.full_epochs,
        on_the_fly=on_the_fly,
        desc=f"{name}: decode training images",
        share=share,
        cache={"auto": None, "memory": True, "files": False}[tc.decoded_images],
    )
    return train_ds, _validation_dataset(tc, name, data, size, share)


def _validation_dataset(tc, name, data, size, share):
    """This worker's ``share`` of the validation images (every image: ``Share()``)."""
    return versioned_dataset(
        [[p] for p in data.val_paths],
        data.val_y,
        len(data.classes),
        size,
        tc.batch_size,
        desc=f"{name}: decode validation images",
        share=share,
    )


@contextlib.contextmanager
def _worker_folder(out, cluster, strategy):
    """Where this worker's callbacks write: the run folder (the chief), or a temporary
    copy of its resume state (history, best checkpoint, backup), taken after the chief
    recovered them, removed at the end."""
    if cluster.is_chief:
        yield out
        return
    barrier(strategy)  # the chief has recovered the backup
    with tempfile.TemporaryDirectory(prefix=f"ripik-worker{cluster.index}-") as private:
        private = Path(private) / out.name
        private.mkdir()
        for name in (wd.history_path(out, "full"), wd.phase_model(out, "full_best")):
            if name.exists():
                shutil.copy2(name, private / name.name)
        backup = wd.full_backup_dir(out)
        if (backup / "current").exists():
            shutil.copytree(backup / "current", wd.full_backup_dir(private) / "current")
        yield private


@contextlib.contextmanager
def _peers_lost_say_how_to_resume(cluster, out):
    """A worker that dies (or a lost connection) stops every other worker in their next
    collective step: one line saying how to go on, not TensorFlow's gRPC traceback."""
    import tensorflow as tf

    lost = (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.AbortedError,
            tf.errors.DeadlineExceededError)  # fmt: skip
    try:
        yield
    except lost as err:
        if cluster.workers == 1:
            raise
        why = next((line for line in str(err).splitlines() if "aborted" in line.lower()),
                   type(err).__name__)  # fmt: skip
        raise UserError(
            f"worker {cluster.index} of {cluster.workers} lost another worker ({why.strip()}): "
            f"start every worker again with the same command; the run resumes from the last "
            f"finished epoch in {wd.full_backup_dir(out)}"
        ) from None


def _full_phase_callbacks(out, tc, clock, n_sources, start_score, batch):
    """Resume state, weight averaging, best-model checkpoint, early stopping, history and
    progress. The checkpoint only keeps an epoch that beats the starting model
    (``start_score``) and, after a resume, the best score reached before."""
    history_csv, best_path = wd.history_path(out, "full"), wd.phase_model(out, "full_best")
    backup = AtomicBackupAndRestore(wd.full_backup_dir(out))
    resuming = backup.prepare()
    if not resuming:  # what an earlier, unfinished start left belongs to no epoch now
        history_csv.unlink(missing_ok=True)
        best_path.unlink(missing_ok=True)
    elif best_path.exists() and not zipfile.is_zipfile(best_path):  # an old in-place save
        wd.set_aside(best_path, "the best-epoch checkpoint is not a whole .keras file")
    # Without its checkpoint, the best score logged before no longer has a model to keep.
    logged = _best_logged(history_csv) if resuming and best_path.exists() else None
    threshold = max(start_score, logged) if logged is not None else start_score
    # After the backup (which keeps the raw weights to resume from), so that validation,
    # the checkpoint and the history see the averaged weights.
    ema = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if tc.ema else []
    return [
        clock,  # first: the epoch's versions are chosen from it
        backup,  # stages the resume state (committed by CommitBackup, last)
        *ema,
        BestModelCheckpoint(best_path, "val_macro_f1", threshold),
        keras.callbacks.EarlyStopping(
            tc.full_monitor,
            mode="min" if tc.full_monitor == "val_loss" else "max",
            patience=tc.full_patience,
        ),
        WholeFileCSVLogger(history_csv, append=True),
        FitProgress(f"full phase {out.name}", n_sources, batch, tc.full_epochs),
        tensorboard_callback(out, "full"),
        CommitBackup(backup),  # last: the epoch is done when every write above is
    ]


def _start_model(folder, rule, data):
    """The model fine-tuning starts from, its phase, its validation macro-F1 and the
    evidence of the choice (None unless ``best`` had two to choose from): the head, the
    probe, or (``best``) the head unless the probe's validation log loss is lower beyond
    noise, image by image (:mod:`ripik_clf.evidence`; the head is the design's recipe)."""
    metrics = wd.read_run_metrics(folder)
    options = [
        phase
        for phase in ("head", "probe")
        if wd.phase_model(folder, phase).exists() and rule in ("best", phase)
    ]
    if not options:
        raise UserError(
            f"no {rule}.keras in {folder}: run train.py --phase {rule} first (or set "
            "train.full_start: best)"
        )
    choice = _start_evidence(folder, data) if len(options) == 2 else None
    phase = choice.chosen if choice else options[0]
    score = float(metrics.get(phase, {}).get("macro_f1", 0.0))
    return wd.phase_model(folder, phase), phase, score, choice


def _start_evidence(folder, data):
    """Head against probe on the validation probabilities each phase saved."""
    from ripik_clf.evidence import Choice

    saved = {}
    for phase in ("head", "probe"):
        table = wd.read_val_probabilities(folder, phase, data.classes) or {}
        if not all(image in table for image in data.val_images):
            note = f"no {phase} validation probabilities"
            return Choice("full_start", "head", "head", "validation log loss",
                          len(data.val_images), note=note)  # fmt: skip
        saved[phase] = np.stack([table[image] for image in data.val_images])
    choice = choose_start(saved["head"], saved["probe"], data.val_y)
    print(choice.line())
    return choice


def choose_start(head, probe, y):
    """``full_start: best`` (pure): the head (the design's recipe) unless the probe's
    per-image validation log loss is lower beyond noise."""
    from ripik_clf.evidence import choose_with_margin, per_image_log_loss

    gain = per_image_log_loss(head, y) - per_image_log_loss(probe, y)
    return choose_with_margin("full_start", "head", {"probe": gain}, "validation log loss")


def _with_run_settings(config, record):
    """The config with the run's backbone, weights and seed (what its head was trained
    with): the full phase continues that run whatever the config's defaults say."""
    import copy

    config = copy.deepcopy(config)
    tc = config.train
    for key in ("backbone", "weights", "seed"):
        value = getattr(record, key)
        if value not in (None, "") and value != getattr(tc, key):
            print(f"note: this run uses train.{key}={value!r} (its head's)")
            setattr(tc, key, value)
    return config


def _on_the_fly(config):
    """train.on_the_fly, with ``flip`` (and ``crop``'s flips) following the orientations
    augment.flips chose."""
    kind = config.train.on_the_fly
    if kind not in ("flip", "crop"):
        return kind
    flips = on_the_fly_flips(config)
    if kind == "flip" and flips == "none":
        print("note: train.on_the_fly flip is off: augment.flips chose none for this data")
    flip = {"none": "none", "horizontal": "flip", "all": "flip_all"}[flips]
    return flip if kind == "flip" else f"crop+{flip}"


def _drop_unreadable(versions, sources_y, unreadable):
    """Versions without the files the head phase could not read (listed in skipped.csv);
    a source left with no readable version is dropped."""
    kept = [([p for p in group if p not in unreadable], y) for group, y in zip(versions, sources_y)]
    kept = [(group, y) for group, y in kept if group]
    return [g for g, _ in kept], np.array([y for _, y in kept])


def _load_for_finetuning(path, size, num_classes, dropout):
    """The saved head model; rebuilt under the global policy when that is mixed precision
    (a saved model keeps the float32 policy it was built with)."""
    saved = load_model_file(path)
    if keras.mixed_precision.global_policy().name == "float32":
        return saved
    record = wd.read_run_record(path.parent, for_model=path)
    backbone = create_backbone(record.backbone, weights=None, image_size=size)
    model = build_classifier(backbone, num_classes, dropout)
    model.set_weights(saved.get_weights())
    return model


def _digest(model):
    import hashlib

    digest = hashlib.sha1()
    for array in model.get_weights():
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _best_logged(history_csv):
    logged = wd.read_history(history_csv)
    return float(logged["val_macro_f1"].max()) if "val_macro_f1" in logged else None
