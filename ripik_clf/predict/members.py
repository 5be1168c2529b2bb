"""Ensembling: voting (pure functions), test-time augmentation and streaming prediction."""

import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ripik_clf.data.images import decoded_batches
from ripik_clf.errors import UserError
from ripik_clf.predict.calibration import apply_temperature, recorded_temperature

TTA_MODES = ("none", "flip", "d4")  # per member; "auto" picks one of these per member
MEMBER_PHASES = ("full", "head", "probe")  # a member RUN:PHASE is runs/RUN/PHASE.keras


# --- voting (pure) ---------------------------------------------------------------------


def soft_vote(probabilities, weights=None):
    """Weighted mean of the members' softmaxes: ``(M, N, C) -> (N, C)``."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    weights = np.ones(len(probabilities)) if weights is None else np.asarray(weights, float)
    return np.tensordot(weights / weights.sum(), probabilities, axes=1)


def hard_vote(probabilities, weights=None):
    """(Weighted) majority of the members' arg-maxes; a tie goes to the tied class with
    the highest mean probability. Returns class indices ``(N,)``."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    weights = np.ones(len(probabilities)) if weights is None else np.asarray(weights, float)
    weights = weights / weights.sum()
    votes = np.zeros(probabilities.shape[1:])
    for weight, member in zip(weights, probabilities.argmax(axis=2)):
        votes[np.arange(len(member)), member] += weight
    # Votes decide; the mean probability, scaled below the smallest vote, only breaks ties.
    tie_break = probabilities.mean(axis=0) * 1e-3 * weights[weights > 0].min()
    return (votes + tie_break).argmax(axis=1)


# --- test-time augmentation ------------------------------------------------------------


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
    return "flip" if member.record.get("trained_with_flips") else "none"


def predict_tta(model, images, mode):
    """Mean softmax over the TTA views, one forward pass over all views stacked."""
    import tensorflow as tf

    views = tta_views(tf.convert_to_tensor(images, tf.float32), mode)
    stacked = tf.concat(views, axis=0)
    probabilities = np.asarray(model.predict_on_batch(stacked), dtype=np.float64)
    return probabilities.reshape(len(views), -1, probabilities.shape[-1]).mean(axis=0)


# --- members ---------------------------------------------------------------------------


@dataclass
class Member:
    name: str
    path: Path
    classes: list
    image_size: int
    model: object = None
    family: str = ""  # the trained model it belongs to: fold runs of one model share it
    fold: int | None = None  # its validation fold, for a run of a k-fold split
    record: dict = field(default_factory=dict)  # its run.json
    # Temperatures fitted by the ensemble on this member's validation probabilities under
    # the TTA it is used with (by TTA view set); they win over the run's, fitted without TTA.
    fitted: dict = field(default_factory=dict)

    @property
    def temperature(self):
        """Its calibration (``run.json``, per phase's model file); 1 = none recorded."""
        return recorded_temperature(self.record, self.path)

    def temperature_for(self, tta):
        """The temperature for its predictions under ``tta``: the ensemble's fit for that
        TTA when there is one, else the run's (fitted without TTA)."""
        return self.fitted.get(member_tta(self, tta), self.temperature)


def default_member_names(config):
    """The members used when none are named: every model of ``train.models``, and with
    K folds every fold run of each (``ensemble.py`` and ``predict`` alike)."""
    if config.split.folds:
        return [f"{m}_fold{k}" for m in config.train.models for k in range(config.split.folds)]
    return list(config.train.models)


def resolve_members(workdir, names, default_names):
    """Members from run names (``WORKDIR/runs/<name>/full.keras``; ``<name>:probe`` or
    ``<name>:head`` for that phase's model) or model file paths.

    Raises:
        UserError: no trained model, a missing or non-Keras file, or members that
            disagree on the class list or input size.
    """
    members = []
    for name in names or default_names:
        candidate = Path(name)
        run, _, phase = name.partition(":")
        if candidate.suffix == ".keras":
            path = candidate
        elif phase not in ("", *MEMBER_PHASES):
            raise UserError(
                f"member {name!r}: a run's model is RUN:PHASE, PHASE one of "
                f"{', '.join(MEMBER_PHASES)} (default full)"
            )
        else:
            path = Path(workdir) / "runs" / run / f"{phase or 'full'}.keras"
        if not path.exists():
            hint = "" if candidate.suffix == ".keras" else " (run train.py --phase full first)"
            raise UserError(f"no trained model at {path}{hint}")
        record_path = path.parent / "run.json"
        if not record_path.exists():
            raise UserError(f"no run.json beside {path}: its class list is unknown")
        record = json.loads(record_path.read_text())
        members.append(
            Member(
                name if candidate.suffix != ".keras" else path.stem + f"@{path.parent.name}",
                path,
                record["classes"],
                record["image_size"],
                family=(
                    record.get("model") + (f":{phase}" if phase else "")
                    if record.get("fold") is not None
                    else name
                ),
                fold=record.get("fold"),
                record=record,
            )
        )
    if not members:
        raise UserError("no ensemble members: train models first or pass --members")
    first = members[0]
    for other in members[1:]:
        if other.classes != first.classes:
            diff = sorted(set(first.classes) ^ set(other.classes)) or ["(same names, other order)"]
            raise UserError(
                f"members {first.name} and {other.name} have different class lists: "
                f"{', '.join(map(str, diff[:5]))}"
            )
        if other.image_size != first.image_size:
            raise UserError(
                f"members {first.name} ({first.image_size} px) and {other.name} "
                f"({other.image_size} px) take different input sizes"
            )
    return members


def check_member_splits(members, current_split):
    """Refuse a member trained on another split than ``current_split`` (a split record)."""
    from ripik_clf.data.splits import refuse_other_split

    for member in members:
        refuse_other_split(member.name, member.record.get("split"), current_split)


def load_members(members):
    import keras

    for member in members:
        if not zipfile.is_zipfile(member.path):  # Keras would say "File not found"
            raise UserError(
                f"{member.path} is not a Keras model file (a .keras file is a zip archive; "
                "this one is not: a renamed .h5, pickle or a truncated copy?)"
            )
        try:
            member.model = keras.models.load_model(member.path)
        except Exception as err:  # noqa: BLE001 - Keras raises many types for a bad file
            raise UserError(
                f"{member.path} is not a loadable Keras model: {str(err).splitlines()[0][:200]}"
            ) from None
    return members


def predict_members(members, paths, tta, batch_size=32, progress=None, calibrated=True):
    """Per-member TTA softmaxes for ``paths``, decoding each image once. ``tta`` is a
    mode of TTA_MODES or ``auto`` (see :func:`member_tta`). ``calibrated``: each
    member's temperature applied (see :mod:`ripik_clf.predict.calibration`).

    Returns:
        (probabilities ``(M, N, C)`` with NaN rows for unreadable images, failures).
    """
    size, n_classes = members[0].image_size, len(members[0].classes)
    out = np.full((len(members), len(paths), n_classes), np.nan)
    failures = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for positions, images, failed in decoded_batches(paths, size, batch_size, pool):
            failures += failed
            if len(positions):
                for m, member in enumerate(members):
                    p = predict_tta(member.model, images.astype("float32"), member_tta(member, tta))
                    out[m, positions] = apply_temperature(
                        p, member.temperature_for(tta) if calibrated else 1
                    )
            if progress is not None:
                progress.update(len(positions) + len(failed))
    return out, failures


# --- member selection and adaptive TTA (pure) -------------------------------------------


def greedy_selection(probabilities, y_true, rounds=20):
    """Forward selection with replacement (Caruana et al., 2004), maximising macro-F1.

    Each round adds the member whose inclusion gives the best macro-F1 of the averaged
    softmaxes (a member may be added again: that raises its weight). The best prefix wins.

    Returns:
        (weights per member as selection counts, best macro-F1).
    """
    from sklearn.metrics import f1_score

    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = list(range(probabilities.shape[2]))

    def score(total, count):
        return f1_score(
            y_true, (total / count).argmax(1), labels=labels, average="macro", zero_division=0
        )

    counts = np.zeros(len(probabilities), dtype=int)
    total = np.zeros(probabilities.shape[1:])
    best_counts, best_score = counts.copy(), -1.0
    for step in range(1, rounds + 1):
        scores = [score(total + p, step) for p in probabilities]
        choice = int(np.argmax(scores))  # ties: the lowest member index
        counts[choice] += 1
        total += probabilities[choice]
        if scores[choice] > best_score:
            best_counts, best_score = counts.copy(), scores[choice]
    return best_counts, float(best_score)


def adaptive_merge(plain, augmented, threshold):
    """Two-stage TTA: keep ``plain`` where the ensemble is confident, else ``augmented``.

    An image is re-predicted when its confidence (max probability) is below
    ``threshold``; a threshold of 1 or more re-predicts every image.

    Returns:
        (merged probabilities, boolean mask of re-predicted images).
    """
    plain = np.asarray(plain)
    redo = np.ones(len(plain), bool) if threshold >= 1 else plain.max(axis=1) < threshold
    merged = plain.copy()
    merged[redo] = np.asarray(augmented)[redo]
    return merged, redo


def choose_threshold(plain, augmented, y_true):
    """The smallest confidence threshold whose two-stage result loses no macro-F1 against
    full TTA on these (validation) predictions."""
    from sklearn.metrics import f1_score

    labels = list(range(np.asarray(plain).shape[1]))

    def f1(p):
        return f1_score(y_true, p.argmax(1), labels=labels, average="macro", zero_division=0)

    target = f1(np.asarray(augmented))
    candidates = np.unique(np.concatenate([[0.0], np.asarray(plain).max(axis=1), [1.0]]))
    for threshold in candidates:  # ascending: fewer images re-predicted first
        if f1(adaptive_merge(plain, augmented, threshold)[0]) >= target:
            return float(threshold)
    return 1.0
