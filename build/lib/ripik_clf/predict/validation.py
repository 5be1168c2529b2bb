"""Validation probabilities of ensemble members, each scored only on images it never
trained on, with its temperature fitted under the TTA it is used with."""

from dataclasses import dataclass, field

import numpy as np

from ripik_clf.data.splits import recorded_split, split_record
from ripik_clf.errors import UserError
from ripik_clf.predict.calibration import apply_temperature, fit_temperature
from ripik_clf.predict.members import check_member_splits, predict_members
from ripik_clf.predict.tta import member_tta
from ripik_clf.progress import progress


@dataclass
class Validation:
    """Per TTA mode, probabilities ``(families, images, classes)`` of the validation images."""

    raw: dict  # mode -> the members' softmaxes as they are: what the ensemble votes with
    calibrated: dict  # mode -> each member's own temperature applied (calibration table)
    y: np.ndarray
    paths: list
    notes: list = field(default_factory=list)  # for the report
    temperatures: dict = field(default_factory=dict)  # member -> {mode: T} (report only)


def validation_work(config, members, names):
    """What the ensemble predicts on validation: ``[(members, image paths)]``, one entry
    per group of members scoring the same images (all of them with one split; one fold's
    models with K folds), each image decoded once per group. ``ensemble.py --shard``
    shares it out."""
    table, held, _ = _scored_images(config, members, names)
    paths = list(table["path"])
    return [(group, [paths[i] for i in rows]) for group, rows in _groups(table, held, members)]


def _groups(table, held, members):
    """``[(members, rows of table)]``: members that score the same images (all of them
    with one split; one fold's models with K folds) predict together, so each image is
    decoded once per group and mode."""
    images = list(table["image"])
    rows_of = {
        m.name: tuple(i for i, img in enumerate(images) if img in held[m.name]) for m in members
    }
    return [
        ([m for m in members if rows_of[m.name] == rows], np.array(rows, dtype=int))
        for rows in dict.fromkeys(rows_of.values())
    ]


def validation_probabilities(config, members, names, modes, cache=None):
    """Validation probabilities per family for each TTA mode in ``modes``.

    A member is only ever scored on images it never trained on (``held_out`` in its run
    record): with one split, the validation images; with K folds, its own fold, so each
    family is scored out-of-fold. With ``--allow-mixed`` members may come from different
    splits; the validation set is then the images every family held out. Each member's
    temperature per mode is fitted here on its own images, for the calibration table only:
    members vote with their softmaxes as they are (``member.fitted`` = 1), so a member
    that happens to be perfect on a hundred images cannot become a hard vote.
    ``cache``: a :class:`~ripik_clf.predict.cache.PredictionCache` to read and fill.
    """
    table, held, notes = _scored_images(config, members, names)
    index = {c: i for i, c in enumerate(members[0].classes)}
    y = np.array([index[c] for c in table["label"]])
    paths = list(table["path"])
    shape = (len(names), len(paths), len(index))
    calibrated = {mode: np.full(shape, np.nan) for mode in modes}
    raw = {mode: np.full(shape, np.nan) for mode in modes}
    temperatures = {m.name: {} for m in members}
    groups = _groups(table, held, members)
    bar = progress(sum(len(rows) for _, rows in groups) * len(modes), "predict validation")
    for group, rows in groups:
        for mode in modes:
            predicted, _ = (cache.predict if cache else predict_members)(
                group, [paths[i] for i in rows], mode, config.ensemble.batch_size, bar, False
            )
            for member, probabilities in zip(group, predicted):
                family = names.index(member.family)
                raw[mode][family, rows] = probabilities
                # Fitted on the probabilities it is shown with: TTA averages views,
                # which softens them, so the run's temperature (no TTA) would not fit.
                temperature = fit_temperature(probabilities, y[rows])
                temperatures[member.name][mode] = temperature
                member.fitted[member_tta(member, mode)] = 1.0  # the vote: as they are
                calibrated[mode][family, rows] = apply_temperature(probabilities, temperature)
    bar.close()
    missing = [n for n, family in zip(names, calibrated[modes[0]]) if np.isnan(family).any()]
    if missing:
        raise UserError(f"{missing[0]} could not score some validation images (unreadable)")
    return Validation(raw, calibrated, y, paths, notes, temperatures)


def _scored_images(config, members, names):
    """The images every family can be scored on, the images each member held out, and
    a report note when that is fewer than the split's validation images."""
    splits, split_classes = recorded_split(config)
    classes = members[0].classes
    if split_classes != classes:
        raise UserError(
            f"the members were trained on classes {classes}, the split's data has {split_classes}"
        )
    if not config.ensemble.allow_mixed:
        check_member_splits(members, split_record(splits, config.split))
    held = {}
    for member in members:
        if member.record.held_out is None:
            raise UserError(
                f"run {member.name} has no record of its validation images "
                "(made by an older version): retrain it"
            )
        held[member.name] = set(member.record.held_out)
    common = set(splits["image"])
    for name in names:
        common &= set().union(*(held[m.name] for m in members if m.family == name))
    if not common:
        raise UserError(
            "no image is held out by every member (each one trained on images the others "
            "validate on): there is no fair validation set; use members of one split"
        )
    table = splits[splits["image"].isin(common)]
    notes = []
    if len(table) < len(splits[splits["split"] != "train"]):
        notes = [
            f"Validation: the {len(table)} images that every member held out (members of "
            "different splits: each is scored only on images it never trained on).",
            "",
        ]
    return table, held, notes
