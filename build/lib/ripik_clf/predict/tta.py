"""Test-time augmentation: the views of a batch and the mean softmax over them."""

import numpy as np


def tta_views(images, mode):
    """The views of a batch ``(B, H, W, C)`` for ``mode``: none (1), flip (2), d4 (8).

    d4 is the dihedral group of the square: four rotations of the image and of its
    mirror. Batched tensor ops, no Python loop over images.
    """
    import tensorflow as tf

    if mode == "none":
        return [images]
    mirrored = tf.image.flip_left_right(images)
    if mode == "flip":
        return [images, mirrored]
    return [tf.image.rot90(view, k) for view in (images, mirrored) for k in range(4)]


def member_tta(member, mode):
    """The TTA a member gets: ``auto`` is flip for a member trained on mirrored images
    (flip TTA only shows it what it learned) and none otherwise."""
    if mode != "auto":
        return mode
    record = member.record
    if record is not None and record.flips:  # a model never shown mirrors gets none
        return "none" if record.flips == "none" else "flip"
    return "flip" if record and record.trained_with_flips else "none"


def predict_tta(model, images, mode):
    """Mean softmax over the TTA views, one forward pass over all views stacked."""
    import tensorflow as tf

    views = tta_views(tf.convert_to_tensor(images, tf.float32), mode)
    stacked = tf.concat(views, axis=0)
    probabilities = np.asarray(model.predict_on_batch(stacked), dtype=np.float64)
    return probabilities.reshape(len(views), -1, probabilities.shape[-1]).mean(axis=0)
