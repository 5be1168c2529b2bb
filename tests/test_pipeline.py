import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ripik_clf.train.datasets import EpochClock, image_dataset, version_schedule, versioned_dataset


def _solid(path, value, size=8):
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return str(path)


@pytest.mark.parametrize("cache", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_class_sorted_list_gives_mixed_batches(tmp_path, cache):
    """30,000 class-sorted files (3x the old 10,000 shuffle buffer): every batch's class
    mix stays close to the overall mix, in every epoch."""
    classes, per_class, batch = 10, 3000, 1000
    files = [_solid(tmp_path / f"c{c}.png", 20 * c) for c in range(classes)]
    paths = [files[c] for c in range(classes) for _ in range(per_class)]
    labels = np.repeat(np.arange(classes), per_class)
    ds = image_dataset(paths, labels, classes, 8, batch, shuffle=True, seed=3, cache=cache)
    first_batches = []
    for _ in range(2):
        worst = 0.0
        for k, (_, y) in enumerate(ds):
            mix = np.bincount(np.argmax(y, 1), minlength=classes) / len(y)
            worst = max(worst, 0.5 * np.abs(mix - 1 / classes).sum())
            if k == 0:
                first_batches.append(np.argmax(y, 1))
        assert worst < 0.15  # random batches of 1,000: about 0.04; buffer of 10,000: 0.6
    assert not np.array_equal(*first_batches)  # reshuffled every epoch, cache or not


def test_version_schedule_shows_every_version_once_per_cycle():
    table = version_schedule([3, 3, 1, 2], epochs=6, seed=5)
    starts = np.array([0, 3, 6, 7])
    for source, count in enumerate([3, 3, 1, 2]):
        shown = [row[(row >= starts[source]) & (row < starts[source] + count)] for row in table]
        assert all(len(s) == 1 for s in shown)  # each epoch: one version of every source
        shown = np.concatenate(shown) - starts[source]
        for cycle in range(0, 6, count):  # `count` consecutive epochs: no repeat
            assert (
                sorted(shown[cycle : cycle + count])
                == list(range(count))[: len(shown[cycle : cycle + count])]
            )
    np.testing.assert_array_equal(table, version_schedule([3, 3, 1, 2], epochs=6, seed=5))
    assert not np.array_equal(table[0], table[1])


class _Recorder(keras.Model):
    """Records the first pixel of every training image it sees (eagerly)."""

    def __init__(self):
        super().__init__()
        self.flatten, self.dense, self.seen = keras.layers.Flatten(), keras.layers.Dense(2), []

    def call(self, x, training=False):
        if training:
            self.seen.append(keras.ops.convert_to_numpy(x)[:, 0, 0, 0].round().astype(int))
        return self.dense(self.flatten(x))


def test_fit_epochs_are_source_passes_through_every_version(tmp_path):
    """With model.fit and the EpochClock: each epoch shows every source once, as a
    version not shown before (4 sources x 3 versions, 3 epochs)."""
    versions = [
        [_solid(tmp_path / f"s{s}_v{v}.png", 40 * s + 10 * v) for v in range(3)] for s in range(4)
    ]
    clock = EpochClock()
    ds = versioned_dataset(versions, [0, 1, 0, 1], 2, 8, 4, seed=1, clock=clock, epochs=3)
    assert ds.cardinality() == 1  # one batch of 4 sources, not 12 files
    model = _Recorder()
    model.compile(optimizer="sgd", loss="categorical_crossentropy", run_eagerly=True)
    model.fit(ds, epochs=3, verbose=0, callbacks=[clock])
    seen = [sorted(batch.tolist()) for batch in model.seen[-3:]]  # (the first call builds)
    for epoch in seen:
        assert sorted(v // 40 for v in epoch) == [0, 1, 2, 3]
    for source in range(4):
        shown = sorted((v % 40) // 10 for epoch in seen for v in epoch if v // 40 == source)
        assert shown == [0, 1, 2]


def test_resumed_epoch_sees_the_same_versions(tmp_path):
    versions = [
        [_solid(tmp_path / f"s{s}_v{v}.png", 40 * s + 10 * v) for v in range(3)] for s in range(4)
    ]
    clock = EpochClock()
    ds = versioned_dataset(versions, [0, 1, 0, 1], 2, 8, 4, seed=1, clock=clock, epochs=3)

    def batch_at(epoch):
        clock.epoch.assign(epoch)
        return next(iter(ds))[0].numpy()[:, 0, 0, 0]

    third = batch_at(2)
    batch_at(0)
    np.testing.assert_array_equal(batch_at(2), third)  # a function of the epoch alone


def _two_class_images(tmp_path):
    left = np.zeros((8, 8, 3), np.uint8)
    left[:, :4] = 200  # bright on the left: a mirror moves it to the right
    paths = [str(tmp_path / f"i{i}.png") for i in range(16)]
    for p in paths:
        Image.fromarray(left).save(p)
    return paths, np.arange(16) % 2


@pytest.mark.parametrize("kind", ["flip", "mixup", "cutmix"])
def test_on_the_fly_augmentation_changes_the_batches(tmp_path, kind):
    paths, labels = _two_class_images(tmp_path)
    plain = image_dataset(paths, labels, 2, 8, 16, seed=0)
    augmented = image_dataset(paths, labels, 2, 8, 16, seed=0, on_the_fly=kind)
    (x0, y0), (x1, y1) = next(iter(plain)), next(iter(augmented))
    x0, y0, x1, y1 = (np.asarray(t) for t in (x0, y0, x1, y1))
    if kind == "flip":
        mirrored = np.all(x1 == x0[:, :, ::-1], axis=(1, 2, 3))
        assert 0 < mirrored.sum() < 16 and np.array_equal(y1, y0)
    else:  # mixed images carry mixed labels
        assert not np.array_equal(y1, y0)
        assert np.any((y1 > 0.01) & (y1 < 0.99))
        np.testing.assert_allclose(y1.sum(1), 1, atol=1e-5)


def test_on_the_fly_crop_keeps_size_and_labels_and_changes_pixels(tmp_path):
    paths, labels = _two_class_images(tmp_path)
    plain = image_dataset(paths, labels, 2, 8, 16, seed=0)
    cropped = image_dataset(paths, labels, 2, 8, 16, seed=0, on_the_fly="crop+none")
    (x0, y0), (x1, y1) = next(iter(plain)), next(iter(cropped))
    assert x1.shape == x0.shape and np.array_equal(np.asarray(y1), np.asarray(y0))
    assert not np.allclose(np.asarray(x1), np.asarray(x0))
    assert np.asarray(x1).min() >= 0 and np.asarray(x1).max() <= 200 + 1e-3


def test_random_resized_crop_of_the_whole_image_is_the_image():
    from ripik_clf.train.datasets import random_resized_crop

    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (4, 9, 9, 3)), tf.float32)
    whole = random_resized_crop(images, area=(1.0, 1.0), aspect=(1.0, 1.0))
    np.testing.assert_allclose(np.asarray(whole), np.asarray(images), atol=1e-3)


def test_random_resized_crop_areas_cover_the_range():
    """A crop of a quarter of the image, read back from a ramp: the visible span of the
    ramp is the crop's side; over many draws the sides fall in sqrt(area) bounds."""
    from ripik_clf.train.datasets import random_resized_crop

    ramp = np.tile(np.arange(64, dtype=np.float32)[None, :, None], (64, 1, 3))
    images = tf.constant(np.stack([ramp] * 200))
    out = np.asarray(random_resized_crop(images, area=(0.25, 0.25), aspect=(1.0, 1.0)))
    spans = out[:, 0, -1, 0] - out[:, 0, 0, 0]  # columns covered, in ramp units
    np.testing.assert_allclose(spans, 0.5 * 63, atol=1.0)  # side = sqrt(0.25) of the width
    starts = out[:, 0, 0, 0]
    assert starts.min() < 5 and starts.max() > 25  # the box moves around the image
