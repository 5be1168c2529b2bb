"""Ensemble members: a trained model file with its run record, loaded and predicting
(streaming: each image decoded once for every member)."""

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ripik_clf import workdir as wd
from ripik_clf.data.images import decoded_batches
from ripik_clf.errors import UserError
from ripik_clf.locks import load_model_file
from ripik_clf.predict.calibration import apply_temperature
from ripik_clf.predict.tta import member_tta, predict_tta


@dataclass
class Member:
    name: str
    path: Path
    classes: list
    image_size: int
    model: object = None
    family: str = ""  # the trained model it belongs to: fold runs of one model share it
    fold: int | None = None  # its validation fold, for a run of a k-fold split
    record: wd.RunRecord | None = None  # its run's record
    # Temperatures the ensemble votes this member with, by TTA view set; they win over the
    # run's. ensemble.py sets 1 (softmaxes vote as they are: see predict/validation.py).
    fitted: dict = field(default_factory=dict)

    @property
    def temperature(self):
        """Its calibration (its run's, per phase's model file); 1 = none recorded."""
        return self.record.temperature_of(self.path) if self.record else 1.0

    def temperature_for(self, tta):
        """The temperature for its predictions under ``tta``: the ensemble's fit for that
        TTA when there is one, else the run's (fitted without TTA)."""
        return self.fitted.get(member_tta(self, tta), self.temperature)


def default_member_names(config):
    """The members used when none are named: every model of ``train.models``, and with
    K folds every fold run of each (``ensemble.py`` and ``predict`` alike)."""
    if config.split.folds:
        return [wd.run_name(m, k) for m in config.train.models for k in range(config.split.folds)]
    return list(config.train.models)


def resolve_members(workdir, names, default_names):
    """Members from run names (their full phase; ``<run>:probe`` or ``<run>:head`` for
    that phase's model) or model file paths.

    Raises:
        UserError: no trained model, a missing or non-Keras file, or members that
            disagree on the class list or input size.
    """
    members = [
        _member(workdir, n) for name in names or default_names for n in _expand(workdir, name)
    ]
    if not members:
        raise UserError("no ensemble members: train models first or pass --members")
    seen = {}  # model file (resolved) -> the member name that brought it
    for member in members:  # one model named twice would vote twice, unasked
        model = member.path.resolve()
        if model in seen:
            raise UserError(
                f"members {seen[model]} and {member.name} are one model ({member.path}): "
                "name it once (--member-weights gives a member more say)"
            )
        seen[model] = member.name
    first = members[0]
    for other in members[1:]:
        if other.classes != first.classes:
            diff = sorted(set(first.classes) ^ set(other.classes)) or ["(same names, other order)"]
            raise UserError(
                f"members {first.name} and {other.name} have different class lists: "
                f"{', '.join(map(str, diff[:5]))}"
            )
    return members  # input sizes may differ: each member predicts at its own


def _expand(workdir, name):
    """A k-fold run named without its fold (``--members lite1``) is its fold runs; any
    other name is itself."""
    run, colon, phase = name.partition(":")
    if Path(name).suffix == ".keras":
        return [name]
    folds = wd.fold_runs(workdir, run)
    if folds and wd.run_dir(workdir, run).exists():  # never guess which one was meant
        raise UserError(
            f"member {name!r} is ambiguous: runs/{run}/ and its fold runs "
            f"({', '.join(folds)}) both exist; name one fold run each, or move runs/{run}/ away"
        )
    return [f"{fold_run}{colon}{phase}" for fold_run in folds] or [name]


def _member(workdir, name):
    is_file = Path(name).suffix == ".keras"
    path = Path(name) if is_file else wd.model_file(workdir, name)
    if not path.exists():
        run, _, phase = name.partition(":")
        hint = "" if is_file else f" (run train.py --phase {phase or 'full'} --run {run} first)"
        raise UserError(f"no trained model at {path}{hint}")
    record = wd.read_run_record(path.parent, for_model=path)
    phase = "" if is_file else name.partition(":")[2]
    return Member(
        f"{path.stem}@{path.parent.name}" if is_file else name,
        path,
        record.classes,
        record.image_size,
        # a k-fold run's fold runs (per phase) are one family: validated out of fold
        family=wd.family_of(path.parent.name, record.fold) + (f":{phase}" if phase else "")
        if record.fold is not None
        else name,
        fold=record.fold,
        record=record,
    )


def check_member_splits(members, current_split):
    """Refuse a member trained on another split than ``current_split`` (a split record)."""
    from ripik_clf.data.splits import refuse_other_split

    for member in members:
        refuse_other_split(member.name, member.record.split, current_split)


def load_members(members):
    for member in members:
        if not zipfile.is_zipfile(member.path):  # Keras would say "File not found"
            raise UserError(
                f"{member.path} is not a Keras model file (a .keras file is a zip archive; "
                "this one is not: a renamed .h5, pickle or a truncated copy?)"
            )
        member.model = load_model_file(member.path)  # any other damage: one line, named
        side = member.model.input_shape[1]
        if side is not None and side != member.image_size:  # members differ, each must agree
            raise UserError(
                f"{member.path} takes {side} px images but its run.json says "
                f"{member.image_size} px: the record does not belong to this model"
            )
    return members


def predict_members(members, paths, tta, batch_size=32, progress=None, calibrated=True):
    """Per-member TTA softmaxes for ``paths``, each member at its own input size; each
    image is decoded once per size. ``tta`` is a mode of ``config.TTA_MODES`` (``auto``
    resolved per member by :func:`member_tta`). ``calibrated``: each member's
    temperature applied (:mod:`ripik_clf.predict.calibration`).

    Returns:
        (probabilities ``(M, N, C)`` with NaN rows for unreadable images, failures).
    """
    n_classes = len(members[0].classes)
    sizes = list(dict.fromkeys(m.image_size for m in members))
    out = np.full((len(members), len(paths), n_classes), np.nan)
    failures = []
    chunk = batch_size * 8  # every size's batches of one chunk, then the next chunk
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for start in range(0, len(paths), chunk):
            part = paths[start : start + chunk]
            for s, size in enumerate(sizes):
                for positions, images, failed in decoded_batches(part, size, batch_size, pool):
                    if s == 0:  # a file unreadable at one size is unreadable at all
                        failures += failed
                    rows = np.asarray(positions, dtype=int) + start
                    if len(positions):
                        batch = images.astype("float32")
                        for m, member in enumerate(members):
                            if member.image_size == size:
                                out[m, rows] = _member_probabilities(member, batch, tta, calibrated)
                    if progress is not None and s == 0:
                        progress.update(len(positions) + len(failed))
    return out, failures


def predict_arrays(members, arrays, tta, batch_size=32, calibrated=True):
    """:func:`predict_members` for decoded ``uint8`` RGB arrays of any size, each squashed
    to every member's input size as :func:`~ripik_clf.data.images.load_for_model` does."""
    from ripik_clf.data.images import resize_square

    out = np.full((len(members), len(arrays), len(members[0].classes)), np.nan)
    for size in dict.fromkeys(m.image_size for m in members):
        for start in range(0, len(arrays), batch_size):
            part = arrays[start : start + batch_size]
            batch = np.stack([resize_square(a, size) for a in part]).astype("float32")
            for m, member in enumerate(members):
                if member.image_size == size:
                    out[m, start : start + len(part)] = _member_probabilities(
                        member, batch, tta, calibrated
                    )
    return out, []


def _member_probabilities(member, images, tta, calibrated):
    p = predict_tta(member.model, images, member_tta(member, tta))
    return apply_temperature(p, member.temperature_for(tta) if calibrated else 1)


def predict_with_members(config, files, names=None, tta="auto"):
    """The members' soft vote (equal weights, softmaxes as they are, so no temperature
    moves a vote; one member alone: its run's temperature) for image files; members of
    another split than the workdir's are refused.

    Returns:
        (classes, probabilities ``(N, C)``, failures ``[(path, reason)]``).
    """
    from ripik_clf.data.splits import saved_split_record
    from ripik_clf.predict.combiner import SoftVote

    members = resolve_members(config.workdir, names, default_member_names(config))
    check_member_splits(members, saved_split_record(config.workdir))
    load_members(members)
    calibrated = len(members) == 1
    predicted, failures = predict_members(
        members, [str(f) for f in files], tta, calibrated=calibrated
    )
    voted = SoftVote.equal(len(members)).vote(np.nan_to_num(predicted))
    return members[0].classes, voted, failures
