"""Backbone features computed once per image and cached on disk.

With the backbone frozen (head phase) its pooled output for an image never changes, and
the offline copies never change either, so each image goes through the backbone once;
the head then trains for many epochs on the cached vectors at almost no cost.

Cache entry: ``WORKDIR/features/<tag>/<key[:2]>/<key>.npy``, where ``tag`` names the
backbone, its weights (a weights file by its content, not its path or time), the input
size and, when not float32, the precision policy (float16 features on a GPU differ from
float32 ones on a CPU), and ``key`` is the sha1 of the file's bytes:
an edited image is recomputed even when its size and modification time were kept, and
one image under two names is computed once. (Reading the bytes costs far less than
the backbone's forward pass it saves.)
"""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ripik_clf.atomic import atomic_write, forget, note_unsaved
from ripik_clf.data.images import decoded_batches, file_sha1
from ripik_clf.progress import progress


def cache_tag(backbone, weights, image_size, seed, precision="float32"):
    """Names what produced the features; random weights depend on the seed. The same
    on every machine that holds the same weights (a shared work directory's cache)."""
    if weights in (None, "none"):
        origin = f"random{seed}"
    elif weights == "imagenet":
        origin = "imagenet"
    else:
        origin = (file_sha1(weights) or "unreadable")[:12]
    tag = f"{backbone}-{origin}-{image_size}"
    return tag if precision == "float32" else f"{tag}-{precision}"


def _entry(cache_root, path):
    """The cache entry of the image at ``path``, keyed by its content (None when the
    file cannot be read: the decoder names the failure)."""
    digest = file_sha1(path)
    if digest is None:
        return None
    return cache_root / digest[:2] / f"{digest}.npy"


def extract_features(paths, extractor, image_size, cache_root, *, batch_size=64, desc="features"):
    """Pooled backbone features for every path, from the cache where possible.

    Returns:
        (features, failures): ``features`` is float32 ``(len(paths), D)`` with NaN rows for
        images that could not be read; ``failures`` lists ``(path, reason)``.
    """
    cache_root = Path(cache_root)
    entries = [_entry(cache_root, p) for p in paths]
    width = extractor.output_shape[-1]
    features = np.full((len(paths), width), np.nan, dtype="float32")
    missing = []
    for i, entry in enumerate(entries):
        vector = _cached(entry, width)
        if vector is None:
            missing.append(i)
        else:
            features[i] = vector
    failures, saving = [], []
    if missing:
        bar = progress(len(missing), desc)
        todo = [paths[i] for i in missing]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for positions, images, failed in decoded_batches(todo, image_size, batch_size, pool):
                failures += failed
                if len(positions):
                    padded = np.zeros((batch_size, image_size, image_size, 3), "float32")
                    padded[: len(images)] = images
                    # Always a full batch (zero-padded): one traced graph, no retracing.
                    vectors = np.asarray(extractor.predict_on_batch(padded), dtype="float32")
                    for position, vector in zip(positions, vectors):
                        features[missing[position]] = vector
                        entry = entries[missing[position]]
                        if entry is not None:
                            saving.append(pool.submit(_save, entry, vector))
                bar.update(len(positions) + len(failed))
            unsaved = []
            for future in saving:
                try:
                    future.result()
                except OSError as err:
                    unsaved.append(err)
            note_unsaved("feature vectors", cache_root, unsaved)
        bar.close()
    return features, failures


def _cached(entry, width):
    """A cached vector; None when absent, or damaged (left by an older version, a disk
    fault or a hand: removed, and extracted again). Checked by value: finite; a file
    larger than such a vector can be is not read (its header could ask for any amount
    of memory)."""
    if entry is None or not entry.exists():
        return None
    try:
        if entry.stat().st_size <= width * 4 + 4096:  # the .npy header is far smaller
            vector = np.load(entry, allow_pickle=False)
            if (
                vector.shape == (width,)
                and vector.dtype == np.float32
                and np.isfinite(vector).all()
            ):
                return vector
    except (OSError, ValueError, EOFError, MemoryError):
        pass
    forget(entry)
    return None


def _save(entry, vector):
    entry.parent.mkdir(parents=True, exist_ok=True)  # 256 folders: cheap after the first
    atomic_write(entry, lambda tmp: np.save(tmp, vector))
