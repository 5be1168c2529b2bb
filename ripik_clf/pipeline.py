"""tf.data input pipelines: parallel decode and resize, cache when it fits, prefetch."""

import os

import numpy as np
import tensorflow as tf

from .images import load_for_model

MEMORY_SHARE_FOR_CACHE = 0.25  # cache decoded images in RAM when they take less than this


def fits_in_memory(count, image_size):
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return count * image_size * image_size * 3 < MEMORY_SHARE_FOR_CACHE * total


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

    Decoding goes through :func:`ripik_clf.images.load_for_model`, so training sees
    exactly what feature extraction and prediction see (EXIF, CMYK, 16-bit handled).
    """
    cache = fits_in_memory(len(paths), image_size) if cache is None else cache

    def load(path):
        return load_for_model(path.decode(), image_size)

    def decode(path, label):
        image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
        image.set_shape((image_size, image_size, 3))
        return image, tf.one_hot(label, num_classes)

    ds = tf.data.Dataset.from_tensor_slices(
        (np.asarray(paths, dtype=str), np.asarray(labels, dtype=np.int32))
    )
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()  # uint8: four times smaller than float32
    if shuffle:
        ds = ds.shuffle(min(len(paths), 10_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
    if on_the_fly != "none":
        ds = ds.map(_on_the_fly_layer(on_the_fly, seed), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _on_the_fly_layer(kind, seed):
    import keras

    if kind == "flip":
        layer = keras.layers.RandomFlip("horizontal", seed=seed)
        return lambda x, y: (layer(x, training=True), y)
    layer = {"mixup": keras.layers.MixUp, "cutmix": keras.layers.CutMix}[kind](seed=seed)

    def mix(x, y):
        mixed = layer({"images": x, "labels": y}, training=True)
        return mixed["images"], mixed["labels"]

    return mix
