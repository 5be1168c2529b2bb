"""Keras ``fit``'s epoch loop with one training step run by ``strategy.run``: the same code
on one device, several GPUs and several machines (train/distribute.py says why ``fit``
itself cannot be used under a multi-worker strategy).

It keeps ``fit``'s contract with callbacks (train begin, epoch begin and end, batch end,
test begin and end around validation, ``model.stop_training``, the first epoch set by
``BackupAndRestore``), so checkpoints, resume, early stopping, EMA swaps, the history and
the progress lines work unchanged. The loss of a step is the mean over the global batch
(weighted by the class weights), as ``fit`` computes it on one device: each replica sums
its share and divides by the global batch size, and the optimizer sums the replicas'
gradients. Training metrics (loss, accuracy, macro-F1) are summed over all replicas.

Each worker's datasets hold only its share of every global batch (train/datasets.py
``share_positions``: its replicas' contiguous slices), training and validation alike;
validation sums over every replica of every worker, so each worker gets the whole set's
figures and takes the same early-stopping and checkpoint decisions.
"""

import keras
import numpy as np
import tensorflow as tf


def fit_distributed(
    model,
    train_ds,
    val_ds,
    *,
    strategy,
    epochs,
    steps_per_epoch,
    global_batch,
    examples,
    callbacks=(),
    class_weight=None,
    verbose=2,
    jit_compile=False,
):
    """Train ``model`` (built and compiled under ``strategy``'s scope) for ``epochs``.

    Args:
        train_ds, val_ds: ``(images, one-hot labels)``: this worker's share of each
            global batch (``train/datasets.share_positions``).
        global_batch: the images of a step on all replicas together.
        examples: ``(training, validation)`` images of an epoch (all workers).
        class_weight: ``{class: weight}`` or None.
        jit_compile: compile each replica's forward and backward pass with XLA (the
            gradients' all-reduce and the update stay outside: XLA cannot hold them).

    Returns:
        the ``keras.callbacks.History`` of the run.
    """
    num_classes = model.output_shape[-1]
    weights = np.ones(num_classes, "float32")
    for c, w in (class_weight or {}).items():
        weights[int(c)] = w
    step = _train_step(model, strategy, tf.constant(weights), jit_compile)
    evaluate = _validation_step(model, strategy)
    slices = _Slices(strategy, global_batch)
    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        [*callbacks, history],
        add_progbar=verbose != 0,
        model=model,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
    )
    model.stop_training = False
    # The optimizer's variables belong to the strategy: built here, in its scope (built
    # lazily inside the first replicated step, Adam's slots fail under MirroredStrategy).
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
        callback_list.on_train_begin()  # a resume loads them
    for epoch in range(model._initial_epoch or 0, epochs):  # set by BackupAndRestore
        callback_list.on_epoch_begin(epoch)
        loss_sum = 0.0  # the weighted loss, summed over images
        confusion = np.zeros((num_classes, num_classes))  # its total is the image count
        for batch, (x, y) in enumerate(train_ds):  # the iterator reads the epoch clock
            callback_list.on_train_batch_begin(batch)
            size = slices.global_size(batch, examples[0])
            step_loss, matrix = step(slices.per_replica(x, y, size), tf.constant(size))
            loss_sum += float(step_loss)
            confusion += matrix.numpy()
            logs = {"loss": loss_sum / confusion.sum(), "accuracy": accuracy(confusion)}
            callback_list.on_train_batch_end(batch, logs)
            if model.stop_training:
                break
        logs = {**logs, "macro_f1": macro_f1(confusion)}
        callback_list.on_test_begin()
        val_logs = _validate(model, evaluate, slices, val_ds, examples[1])
        callback_list.on_test_end(val_logs)
        logs.update({f"val_{k}": v for k, v in val_logs.items()})
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    model.optimizer.finalize_variable_values(model.trainable_weights)
    callback_list.on_train_end(logs if epochs > (model._initial_epoch or 0) else {})
    return history


class _Slices:
    """A worker's share of a global batch cut into its replicas' slices: replica ``r``
    of ``R`` takes positions ``[r * per, (r + 1) * per)`` of the global batch, ``per =
    ceil(size / R)`` (a replica may get an empty slice of the short last batch: its sums
    are zero); a worker's share is its replicas' slices, contiguous."""

    def __init__(self, strategy, global_batch):
        self.strategy, self.global_batch = strategy, global_batch
        self.replicas = strategy.num_replicas_in_sync
        # This worker's replicas (the default strategy, one device, has no worker list).
        self.local = len(strategy.extended.worker_devices) if self.replicas > 1 else 1

    def global_size(self, step, examples):
        return min(self.global_batch, examples - step * self.global_batch)

    def per_replica(self, x, y, size):
        if self.replicas == 1:
            return x, y
        per = -(-size // self.replicas)

        def mine(context):  # replica ids: a worker's are consecutive (id // local = worker)
            start = (context.replica_id_in_sync_group % self.local) * per
            return x[start : start + per], y[start : start + per]

        return self.strategy.experimental_distribute_values_from_function(mine)


def _train_step(model, strategy, class_weights, jit_compile=False):
    """A tf.function running one step on every replica; returns the global sums of the
    weighted loss and of the confusion matrix."""
    loss_object = model.loss
    num_classes = model.output_shape[-1]
    replicas = strategy.num_replicas_in_sync

    def loss_and_gradients(x, y, global_size):
        with tf.GradientTape() as tape:
            probabilities = model(x, training=True)
            per_example = loss_object.call(y, tf.cast(probabilities, tf.float32))
            weighted = per_example * tf.gather(class_weights, tf.argmax(y, axis=-1))
            loss = tf.reduce_sum(weighted) / tf.cast(global_size, tf.float32)
            if model.losses:  # regularizers: once per step in total
                loss += tf.add_n(model.losses) / replicas
            scaled = model.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, model.trainable_weights)
        return tf.reduce_sum(weighted), _confusion(y, probabilities, num_classes), gradients

    if jit_compile:
        loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

    def replica_step(x, y, global_size):
        weighted_sum, matrix, gradients = loss_and_gradients(x, y, global_size)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_weights))
        return weighted_sum, matrix

    return _summed_over_replicas(strategy, replica_step)


def _summed_over_replicas(strategy, replica_fn):
    """A tf.function ``step(batch, *args)`` running ``replica_fn(x, y, *args)`` on every
    replica's slice of ``batch`` and returning each of its results summed over every
    replica of every worker."""

    @tf.function(reduce_retracing=True)
    def step(batch, *args):
        results = strategy.run(lambda xy: replica_fn(xy[0], xy[1], *args), (batch,))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results]

    return step


def _confusion(y, probabilities, num_classes):
    """The confusion matrix (rows: truth) of one-hot labels against predictions."""
    truth, guess = tf.argmax(y, axis=-1), tf.argmax(probabilities, axis=-1)
    return tf.math.confusion_matrix(truth, guess, num_classes, dtype=tf.float32)


def _validation_step(model, strategy):
    """A tf.function returning the sums, over every replica of every worker, of the
    validation loss and of the confusion matrix of one global batch."""
    num_classes = model.output_shape[-1]

    def replica_sums(x, y):
        probabilities = tf.cast(model(x, training=False), tf.float32)
        loss = tf.reduce_sum(model.loss.call(y, probabilities))
        return loss, _confusion(y, probabilities, num_classes)

    return _summed_over_replicas(strategy, replica_sums)


def _validate(model, evaluate, slices, val_ds, examples):
    """Loss, accuracy and macro-F1 on the whole validation set (``evaluate``'s values:
    the mean unweighted loss over images), whatever share of it this worker read."""
    loss_sum, confusion = 0.0, 0
    for batch, (x, y) in enumerate(val_ds):
        size = slices.global_size(batch, examples)
        step_loss, matrix = evaluate(slices.per_replica(x, y, size))
        loss_sum += float(step_loss)
        confusion = confusion + matrix.numpy()
    regularization = float(sum(model.losses)) if model.losses else 0.0  # as evaluate adds
    return {
        "loss": loss_sum / confusion.sum() + regularization,
        "accuracy": accuracy(confusion),
        "macro_f1": macro_f1(confusion),
    }


def accuracy(confusion):
    return float(np.trace(confusion) / confusion.sum())


def macro_f1(confusion):
    """Keras' ``F1Score(average="macro")`` from a confusion matrix (rows: truth), by
    scikit-learn: every class counts, 0 for a class never seen nor predicted."""
    from sklearn.metrics import f1_score

    n = len(confusion)
    truth, guess = np.nonzero(confusion)  # one (truth, guess) pair per cell, its count
    return float(f1_score(truth, guess, labels=range(n), average="macro", zero_division=0,
                          sample_weight=confusion[truth, guess]))  # fmt: skip
