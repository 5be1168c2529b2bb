"""tf.data input pipelines for training and validation.

Order: the whole (image, label) list is shuffled, seeded, every epoch, *before* anything
is decoded. (A decode-cache-then-shuffle pipeline with a 10,000-element buffer gave
batches of one or two classes on a class-sorted list of 108,000 files.)

Speed: when the decoded images fit in RAM they are decoded once, in parallel threads,
into one uint8 array; a batch is then one gather, so an epoch costs the model's own time.
Otherwise each epoch decodes its images in parallel as it goes.

Versions: a source image may have several versions (the original and its offline
copies). An epoch is one pass over the sources, each shown as one of its versions: a
different one each epoch, drawn without repetition, from a seeded table, so a resumed
run sees exactly what an uninterrupted one would.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from ripik_clf.data.images import decoded_batches, load_for_model
from ripik_clf.errors import UserError
from ripik_clf.progress import progress, say

MEMORY_SHARE_FOR_CACHE = 0.25  # hold decoded images in RAM when they take less than this


def fits_in_memory(count, image_size):
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return count * image_size * image_size * 3 < MEMORY_SHARE_FOR_CACHE * total


def version_schedule(version_counts, epochs, seed):
    """Which version of each source every epoch shows, and in what order (pure).

    Source ``s`` with ``V`` versions shows, in epoch ``e``, version ``perm_s[e % V]``
    of a seeded permutation: ``V`` consecutive epochs never repeat a version.

    Returns:
        int64 ``(epochs, n_sources)``: row ``e`` lists flat version indices (into the
        concatenation of every source's versions) in epoch ``e``'s shuffled order.
    """
    counts = np.asarray(version_counts, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rng = np.random.default_rng(seed)
    permutations = [rng.permutation(int(v)) for v in counts]
    table = np.empty((epochs, len(counts)), dtype=np.int64)
    for epoch in range(epochs):
        chosen = starts + np.array([p[epoch % len(p)] for p in permutations], dtype=np.int64)
        table[epoch] = chosen[np.random.default_rng([seed, epoch]).permutation(len(counts))]
    return table


class EpochClock(keras.callbacks.Callback):
    """Holds the current epoch in a variable the training dataset reads when an epoch's
    iterator starts (Keras makes that iterator after ``on_epoch_begin``; on resume
    BackupAndRestore starts at the right epoch, so the schedule resumes exactly)."""

    def __init__(self):
        super().__init__()
        with tf.device("/CPU:0"):  # read by the input pipeline, which runs on the CPU
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_clock")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)


def image_dataset(
    paths,
    labels,
    num_classes,
    image_size,
    batch_size,
    *,
    shuffle=False,
    seed=0,
    on_the_fly="none",
    cache=None,
):
    """Batches of (float32 0-255 images, one-hot labels) read from image files.

    ``shuffle``: the whole list is reshuffled (seeded) every pass, before decoding.
    Decoding goes through :func:`ripik_clf.data.images.load_for_model`, so training sees
    exactly what feature extraction and prediction see (EXIF, CMYK, 16-bit handled).
    """
    return versioned_dataset(
        [[p] for p in paths],
        labels,
        num_classes,
        image_size,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        on_the_fly=on_the_fly,
        cache=cache,
    )


@dataclass(frozen=True)
class Share:
    """This worker's share of every global batch: ``worker`` of ``workers`` machines
    training ``replicas`` replicas in all (an equal number on each)."""

    worker: int = 0
    workers: int = 1
    replicas: int = 1


def share_positions(count, global_batch, share=Share()):
    """Which positions of an epoch's order this worker reads, step by step (pure).

    Each global batch (the last one may be short) is cut into ``share.replicas``
    contiguous slices of ``ceil(size / replicas)`` positions (train/loop.py slices a
    worker's share among its replicas the same way); a worker reads the slices of its own
    replicas, so the workers' shares of a step are disjoint and together the whole
    global batch, the one-worker epoch.

    Returns:
        int64 ``(steps, width)``: each step's positions, padded with -1 (a share of the
        short last batch may be short or empty: every worker still takes every step).
    """
    local = share.replicas // share.workers
    rows = []
    for start in range(0, count, global_batch):
        size = min(global_batch, count - start)
        per = -(-size // share.replicas)
        first, last = (min(w * local * per, size) for w in (share.worker, share.worker + 1))
        rows.append(np.arange(start + first, start + last))
    table = np.full((len(rows), max(map(len, rows), default=0)), -1, np.int64)
    for step, row in enumerate(rows):
        table[step, : len(row)] = row
    return table


def versioned_dataset(
    versions,
    labels,
    num_classes,
    image_size,
    batch_size,
    *,
    shuffle=False,
    seed=0,
    clock=None,
    epochs=1,
    on_the_fly="none",
    cache=None,
    desc="decode",
    share=Share(),
):
    """Batches of one version per source (see module docstring).

    Args:
        versions: per source, its image paths (the original first, then its copies).
        batch_size: the global batch; this worker's dataset yields its ``share`` of each
            (the whole batch on one worker).
        clock: an :class:`EpochClock` (training): the epoch's versions and order come from
            :func:`version_schedule` for ``epochs`` epochs. Without one, every source must
            have one version; ``shuffle`` reshuffles every pass.
    """
    flat_paths = [p for group in versions for p in group]
    n = len(versions)
    if n == 0:
        raise UserError("no images to train or validate on")
    if clock is None and len(flat_paths) != n:
        raise ValueError("several versions per source need an EpochClock")
    positions = share_positions(n, batch_size, share)
    if clock is not None:
        table = version_schedule([len(g) for g in versions], epochs, seed)
        flat_labels = np.repeat(np.asarray(labels, np.int32), [len(g) for g in versions])
        # Decoded: only the versions this worker's steps read, in some epoch.
        used = np.unique(table[:, positions[positions >= 0]])
        orders = _scheduled_orders(table, clock)
    else:
        flat_labels, used = np.asarray(labels, np.int32), np.arange(n)
        orders = tf.data.Dataset.range(n).batch(n)  # one order per pass: the list's
        if shuffle:  # a buffer of the whole list: indices are cheap, images are not
            orders = orders.unbatch().shuffle(n, seed=seed, reshuffle_each_iteration=True)
            orders = orders.batch(n)
    steps = orders.flat_map(lambda order: _share_of_each_step(order, positions))
    steps = steps.apply(tf.data.experimental.assert_cardinality(len(positions)))
    label_table = tf.constant(flat_labels)

    def one_hot(index):
        return tf.one_hot(tf.gather(label_table, index), num_classes)

    cache = fits_in_memory(len(used), image_size) if cache is None else cache
    if clock is not None:
        _say_what_this_worker_reads(
            desc, share, positions, len(used), len(flat_paths), epochs, cache
        )
    if cache:
        ds = _batches_from_memory(steps, flat_paths, used, image_size, one_hot, desc)
    else:
        ds = _batches_from_files(steps, flat_paths, image_size, one_hot)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    if on_the_fly != "none":
        ds = ds.map(_on_the_fly_layer(on_the_fly, seed), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _say_what_this_worker_reads(desc, share, positions, used, versions, epochs, cache):
    """One line: how much of the input this worker reads and decodes, and where."""
    who = f"worker {share.worker} of {share.workers}, " if share.workers > 1 else ""
    reads = int((positions >= 0).sum())
    where = (f"{used:,} of {versions:,} versions decoded into memory" if cache
             else f"{reads * epochs:,} decodes from files over {epochs} epochs")  # fmt: skip
    say(f"{desc.split(':')[0]}: {who}{reads:,} images an epoch; {where}")


def _scheduled_orders(table, clock):
    """One element per pass: this epoch's row of :func:`version_schedule`, read from
    ``clock`` when the dataset is iterated."""
    epochs, rows = len(table), tf.constant(table)
    return tf.data.Dataset.range(1).map(
        lambda _: tf.gather(rows, clock.epoch.read_value() % epochs)
    )


def _share_of_each_step(order, positions):
    """The flat version indices of this worker's share of each step of ``order``."""
    counts = tf.constant((positions >= 0).sum(axis=1))
    steps = tf.data.Dataset.from_tensor_slices((tf.constant(positions), counts))
    return steps.map(lambda row, count: tf.gather(order, row[:count]))


def _batches_from_memory(steps, paths, used, image_size, one_hot, desc):
    """Batches gathered from one uint8 array of the decoded images ``paths[used]`` (the
    versions this worker reads), on the host.

    The array is the only copy: a ``tf.Variable`` made from it held three (the array, the
    constant it was converted to, the variable's own buffer): 6.4 GB of peak RSS for
    2.0 GB of images (benchmarks/worker_input.py), against a budget that counts one."""
    images = decode_all([paths[i] for i in used], image_size, desc)
    row_of = np.full(len(paths), -1, np.int64)  # flat version index -> its row (-1: unread)
    row_of[used] = np.arange(len(used))
    rows = tf.constant(row_of)

    def gather(positions):
        return images[positions]  # a copy of this batch only

    def batch(index):
        x = tf.numpy_function(gather, [tf.gather(rows, index)], tf.uint8, stateful=False)
        x.set_shape((None, image_size, image_size, 3))
        return x, one_hot(index)

    return steps.map(batch, num_parallel_calls=tf.data.AUTOTUNE)


def _batches_from_files(steps, paths, image_size, one_hot):
    """Each step's share decoded as it is needed (several steps at once)."""
    path_table = np.asarray(paths, dtype=str)

    def load(indices):
        out = np.empty((len(indices), image_size, image_size, 3), np.uint8)
        for k, index in enumerate(indices):
            out[k] = load_for_model(path_table[int(index)], image_size)
        return out

    def decode(indices):
        images = tf.numpy_function(load, [indices], tf.uint8, stateful=False)
        images.set_shape((None, image_size, image_size, 3))
        return images, one_hot(indices)

    return steps.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def decode_all(paths, image_size, desc="decode"):
    """Every image decoded and resized into one uint8 array, in parallel threads."""
    out = np.empty((len(paths), image_size, image_size, 3), np.uint8)
    bar = progress(len(paths), desc)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for positions, images, failures in decoded_batches(paths, image_size, 64, pool):
            if failures:
                path, reason = failures[0]
                raise UserError(f"training image unreadable: {path} ({reason})")
            out[positions] = images
            bar.update(len(positions))
    bar.close()
    return out


CROP_AREA = (0.35, 1.0)  # random resized crops: share of the image's area kept ...
CROP_ASPECT = (3 / 4, 4 / 3)  # ... and the crop's width / height, log-uniform


def _on_the_fly_layer(kind, seed):
    """``kind``: none | flip | flip_all | mixup | cutmix, optionally after ``crop+``
    (random resized crops first, then the flips)."""
    if kind.startswith("crop"):
        rest = kind.partition("+")[2] or "none"
        then = _on_the_fly_layer(rest, seed)
        return lambda x, y: then(random_resized_crop(x), y)
    if kind == "none":
        return lambda x, y: (x, y)
    if kind in ("flip", "flip_all"):  # flip_all: augment.flips chose every orientation
        mode = "horizontal" if kind == "flip" else "horizontal_and_vertical"
        layer = keras.layers.RandomFlip(mode, seed=seed)
        return lambda x, y: (layer(x, training=True), y)
    layer = {"mixup": keras.layers.MixUp, "cutmix": keras.layers.CutMix}[kind](seed=seed)

    def mix(x, y):
        mixed = layer({"images": x, "labels": y}, training=True)
        return mixed["images"], mixed["labels"]

    return mix


def random_resized_crop(images, area=CROP_AREA, aspect=CROP_ASPECT):
    """A batch of float images, each cropped to a random box (``area`` share of the image,
    width / height log-uniform in ``aspect``, anywhere inside) and resized back to its
    size: the standard random-resized-crop augmentation, vectorised over the batch. The
    random ops draw from TensorFlow's global seed (set per run), like the other layers."""
    n = tf.shape(images)[0]
    size = tf.shape(images)[1:3]
    share = tf.random.uniform([n], area[0], area[1])
    ratio = tf.exp(tf.random.uniform([n], np.log(aspect[0]), np.log(aspect[1])))
    height = tf.minimum(tf.sqrt(share / ratio), 1.0)  # in units of the image's side
    width = tf.minimum(tf.sqrt(share * ratio), 1.0)
    top = tf.random.uniform([n]) * (1.0 - height)
    left = tf.random.uniform([n]) * (1.0 - width)
    boxes = tf.stack([top, left, top + height, left + width], axis=1)
    cropped = tf.image.crop_and_resize(tf.cast(images, tf.float32), boxes, tf.range(n), size)
    return tf.cast(cropped, images.dtype)
