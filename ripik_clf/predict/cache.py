"""Member predictions cached on disk, keyed by content: what ``ensemble.py --shard I/N``
computes on N machines and the unsharded ``ensemble.py`` (the merge) reads.

Entry: ``WORKDIR/predictions/<model>-<views>/<key[:2]>/<key>.npz``, the member's softmax
under its TTA views before any temperature, where ``model`` is the sha1 of the member's
``.keras`` file and ``key`` the sha1 of the image file. A retrained model or an edited
image is a new entry, never a stale one; machines that see the data under other paths
share entries. Each image's prediction depends on that image alone (inference mode), so
the merge computes exactly what one machine would have. Entries are zip archives, whose
CRC-32 turns any damaged byte into a read error: such an entry is computed again.
"""

import sys
import zipfile
from pathlib import Path

import numpy as np

from ripik_clf.atomic import atomic_write, forget, note_unsaved
from ripik_clf.data.images import file_sha1
from ripik_clf.predict.calibration import apply_temperature
from ripik_clf.predict.members import predict_members
from ripik_clf.predict.tta import member_tta


class PredictionCache:
    """``predict`` has :func:`~ripik_clf.predict.members.predict_members`' signature and
    results; only the images missing from the cache go through the models."""

    def __init__(self, root):
        self.root = Path(root)
        self.computed = 0  # images that went through the models (the rest: from the cache)
        self.cached = 0
        self._model_keys = {}

    def _folder(self, member, tta):
        """The member's entries under ``tta``: its model file's digest (read once per
        file version) and its TTA views."""
        path = Path(member.path)
        stat = path.stat()
        stamp = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if stamp not in self._model_keys:
            self._model_keys[stamp] = file_sha1(path)
        key = self._model_keys[stamp]  # None: the file cannot be read now; nothing cached
        return _model_folder(self.root, key, member_tta(member, tta)) if key else None

    def predict(self, members, paths, tta, batch_size=32, progress=None, calibrated=True):
        keys = [file_sha1(p) for p in paths]
        n_classes = len(members[0].classes)
        out = np.full((len(members), len(paths), n_classes), np.nan)
        folders = [self._folder(member, tta) for member in members]
        missing = set()
        for m, folder in enumerate(folders):
            for i, key in enumerate(keys):
                vector = _load(_entry(folder, key), n_classes) if key and folder else None
                if vector is None:
                    missing.add(i)
                else:
                    out[m, i] = vector
        todo = sorted(missing)
        failures = []
        if todo:
            computed, failures = predict_members(
                members, [paths[i] for i in todo], tta, batch_size, progress, calibrated=False
            )
            unsaved = []
            for k, i in enumerate(todo):
                if np.isnan(computed[0, k, 0]):  # unreadable: never cached, tried again
                    continue
                out[:, i] = computed[:, k]
                for m, folder in enumerate(folders):
                    if keys[i] and folder:
                        try:
                            _save(_entry(folder, keys[i]), computed[m, k])
                        except OSError as err:
                            unsaved.append(err)
            note_unsaved("member predictions", self.root, unsaved)
        if progress is not None:
            progress.update(len(paths) - len(todo))
        self.computed += len(todo)
        self.cached += len(paths) - len(todo)
        if calibrated:
            readable = ~np.isnan(out[0, :, 0])
            for m, member in enumerate(members):
                out[m, readable] = apply_temperature(out[m, readable], member.temperature_for(tta))
        return out, failures


def store_model_predictions(root, model_path, tta, image_paths, probabilities):
    """Enter predictions a model file made elsewhere: each training phase stores its
    validation softmax (no TTA) once its model is committed, so the ensemble reads them
    instead of predicting validation again. Keyed like every entry (the model file's and
    each image's sha1), so they are only ever found for that very model and image.
    Derived data: a failed write is a warning and the ensemble predicts those images."""
    model_key = file_sha1(model_path)
    if len(image_paths) != len(probabilities) or not model_key:  # nothing to trust or key
        return
    folder = _model_folder(root, model_key, tta)
    try:
        for path, vector in zip(image_paths, probabilities):
            key = file_sha1(path)
            if key:
                _save(_entry(folder, key), vector)
    except OSError as err:
        print(f"warning: validation predictions not cached ({err})", file=sys.stderr)


def _model_folder(root, model_key, views):
    """The entries of one model file (by its sha1) under one set of TTA views."""
    return Path(root) / f"{model_key[:16]}-{views}"


def _entry(folder, image_key):
    return folder / image_key[:2] / f"{image_key}.npz"


def _load(entry, n_classes):
    """A cached vector; None when absent or damaged (a disk fault, or an entry edited by
    hand: removed and computed again). Checked by value, not only by shape: finite,
    non-negative probabilities summing to one; a file larger than such a vector can be
    is not read (its header could ask for any amount of memory)."""
    if not entry.exists():
        return None
    try:
        if entry.stat().st_size <= n_classes * 8 + ENTRY_OVERHEAD:
            with np.load(entry, allow_pickle=False) as archive:
                vector = archive["p"]
            if (
                vector.shape == (n_classes,)
                and vector.dtype == np.float64
                and _probabilities(vector)
            ):
                return vector
    except (OSError, ValueError, EOFError, KeyError, MemoryError, zipfile.BadZipFile):
        pass
    forget(entry)
    return None


ENTRY_OVERHEAD = 4096  # an .npz's zip and .npy headers around the vector


def _probabilities(vector):
    return bool(np.isfinite(vector).all() and (vector >= 0).all() and abs(vector.sum() - 1) < 1e-4)


def _save(entry, vector):
    entry.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(entry, lambda tmp: np.savez(tmp, p=np.asarray(vector, dtype=np.float64)))
