"""The feature cache: reused while an image is unchanged, recomputed once it is edited."""

import os

import numpy as np
import pytest

from conftest import write_image
from ripik_clf.train.features import extract_features


class CountingExtractor:
    """Mean colour per channel: a tiny 'backbone' that counts the images it is shown
    (batches come zero-padded to a full batch: blank rows are not images)."""

    output_shape = (None, 3)

    def __init__(self):
        self.images = 0

    def predict_on_batch(self, batch):
        batch = np.asarray(batch)
        self.images += int((batch.reshape(len(batch), -1).max(axis=1) > 0).sum())
        return batch.mean(axis=(1, 2))


def test_an_edited_image_gets_new_features_and_the_others_come_from_the_cache(tmp_path):
    paths = [str(write_image(tmp_path / "img" / f"{i}.png", seed=i)) for i in range(3)]
    extractor = CountingExtractor()
    first, _ = extract_features(paths, extractor, 32, tmp_path / "cache")
    seen = extractor.images
    again, _ = extract_features(paths, extractor, 32, tmp_path / "cache")
    assert extractor.images == seen  # all from the cache
    np.testing.assert_array_equal(again, first)

    write_image(paths[1], seed=99)  # edited in place: other pixels, a later mtime
    stat = os.stat(paths[1])
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    edited, _ = extract_features(paths, extractor, 32, tmp_path / "cache")
    assert extractor.images == seen + 1  # only the edited image went through the model
    fresh, _ = extract_features([paths[1]], CountingExtractor(), 32, tmp_path / "other")
    np.testing.assert_allclose(edited[1], fresh[0], rtol=1e-6)
    assert not np.allclose(edited[1], first[1])
    np.testing.assert_array_equal(edited[[0, 2]], first[[0, 2]])


def test_an_image_edited_with_its_size_and_mtime_kept_is_recomputed(tmp_path):
    """The cache is keyed by content: an edit that keeps size and mtime (a copy tool
    preserving times, a same-size re-encode) still gets new features."""
    from PIL import Image

    path = tmp_path / "img.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(path)
    extractor = CountingExtractor()
    first, _ = extract_features([str(path)], extractor, 32, tmp_path / "cache")
    stat = os.stat(path)
    Image.new("RGB", (32, 32), (10, 200, 10)).save(path)  # one colour: same PNG size
    assert os.path.getsize(path) == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    edited, _ = extract_features([str(path)], extractor, 32, tmp_path / "cache")
    assert extractor.images == 2
    assert not np.allclose(edited, first)


def test_one_image_under_two_names_shares_one_cache_entry(tmp_path):
    import shutil

    a = write_image(tmp_path / "a.png", seed=3)
    b = tmp_path / "b.png"
    shutil.copy(a, b)
    extract_features([str(a)], CountingExtractor(), 32, tmp_path / "cache")
    extractor = CountingExtractor()
    features, _ = extract_features([str(b)], extractor, 32, tmp_path / "cache")
    assert extractor.images == 0 and not np.isnan(features).any()


def test_one_content_under_many_names_is_saved_by_concurrent_threads_without_a_clash(tmp_path):
    """The cache saves from a thread pool; images of one content are one entry, so threads
    write it at once (make demo died here: the digits hold duplicates). Each writer has its
    own temporary name."""
    import shutil
    import threading

    from ripik_clf.atomic import temp_name

    names = []
    threads = [threading.Thread(target=lambda: names.append(temp_name(tmp_path / "e.npy")))
               for _ in range(2)]  # fmt: skip
    for thread in threads:
        thread.start()
        thread.join()
    assert names[0] != names[1] and all(n.suffix == ".npy" for n in names)
    first = write_image(tmp_path / "img" / "0.png", seed=1)
    paths = [str(first)] + [
        str(shutil.copy(first, tmp_path / "img" / f"{i}.png")) for i in range(1, 200)
    ]
    features, failures = extract_features(
        paths, CountingExtractor(), 32, tmp_path / "cache", batch_size=8
    )
    assert not failures and np.isfinite(features).all()
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1


def test_temporary_names_differ_between_hosts_with_one_pid(tmp_path, monkeypatch):
    """Shards on machines sharing a file system can run under equal process ids: the
    host is in the name, and its writer is read back (host names with dots and dashes)."""
    from ripik_clf import atomic

    names = {}
    for host in ("node-1.cluster", "node-2.cluster"):
        monkeypatch.setattr(atomic.socket, "gethostname", lambda h=host: h)
        names[host] = atomic.temp_name(tmp_path / "entry.npy")
    assert names["node-1.cluster"] != names["node-2.cluster"]
    for host, name in names.items():
        assert atomic.temp_writer(name.name) == (host, os.getpid())
    assert atomic.temp_writer("entry.npy") is None


def test_the_cache_tag_follows_the_weights_content_and_the_precision(tmp_path):
    from ripik_clf.train.features import cache_tag

    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"one")
    tag = cache_tag("efficientnet_lite0", str(weights), 224, 0)
    moved = tmp_path / "elsewhere.weights.h5"
    moved.write_bytes(b"one")
    os.utime(moved, ns=(1, 1))
    assert cache_tag("efficientnet_lite0", str(moved), 224, 0) == tag  # same content
    weights.write_bytes(b"two")
    assert cache_tag("efficientnet_lite0", str(weights), 224, 0) != tag
    assert cache_tag("efficientnet_lite0", "imagenet", 224, 0) == "efficientnet_lite0-imagenet-224"
    mixed = cache_tag("efficientnet_lite0", "imagenet", 224, 0, "mixed_float16")
    assert mixed == "efficientnet_lite0-imagenet-224-mixed_float16"


def _npy_declaring(path, shape):
    """An .npy file whose header asks for ``shape`` (no data behind it)."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"
    header = header.ljust(117) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())


@pytest.mark.parametrize(
    "poison",
    ["nan", "inf", "huge header", "wrong width", "float64"],
)
def test_a_cached_feature_poisoned_by_value_is_extracted_again(tmp_path, poison):
    from ripik_clf.train import features as feature_cache

    image = write_image(tmp_path / "img" / "0.png", seed=3)
    cache = tmp_path / "cache"
    clean, _ = extract_features([str(image)], CountingExtractor(), 32, cache, batch_size=8)
    (entry,) = cache.rglob("*.npy")
    width = clean.shape[1]
    if poison == "huge header":
        _npy_declaring(entry, (10**12,))
    else:
        bad = {"nan": np.full(width, np.nan, "float32"), "inf": np.full(width, np.inf, "float32"),
               "wrong width": np.zeros(width + 1, "float32"),
               "float64": np.zeros(width, "float64")}[poison]  # fmt: skip
        np.save(entry, bad)
    assert feature_cache._cached(entry, width) is None and not entry.exists()
    again, _ = extract_features([str(image)], CountingExtractor(), 32, cache, batch_size=8)
    np.testing.assert_array_equal(again, clean)


@pytest.mark.parametrize(
    "vector",
    [[5.0, -3.0, 0.0], [0.2, 0.2, 0.2], [np.nan, 0.5, 0.5], [np.inf, 0.0, 0.0], [0.5, 0.5]],
)
def test_a_cached_prediction_poisoned_by_value_is_computed_again(tmp_path, vector):
    from ripik_clf.predict import cache

    entry = tmp_path / "ab" / "abc.npz"
    cache._save(entry, [0.2, 0.3, 0.5])
    assert cache._load(entry, 3) is not None  # a sound entry is read
    np.savez(entry, p=np.asarray(vector, dtype=np.float64))
    assert cache._load(entry, 3) is None and not entry.exists()
