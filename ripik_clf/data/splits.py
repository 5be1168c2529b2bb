"""The stratified train/validation split (or K folds), made once and saved.

The split table has one row per source image: ``image, label, split, fold``.
Single split: ``split`` is ``train`` or ``val`` and ``fold`` is -1. K-fold: ``split`` is
``fold`` and ``fold`` is 0..K-1. Its record beside it (see :mod:`ripik_clf.workdir`) says
how it was made and a fingerprint of the dataset, so a later run can refuse a dataset that
changed under it.
"""

import hashlib
import os
from types import SimpleNamespace

import numpy as np
import pandas as pd

from ripik_clf import workdir as wd
from ripik_clf.data.dataset import warn
from ripik_clf.errors import UserError


def stratified_split(labels, val_fraction, seed):
    """Assign each item to 'train' or 'val', holding out ``val_fraction`` of every class.

    Pure: the same labels (in the same order), fraction and seed give the same split.
    Every class with at least two items keeps at least one on each side. A class with a
    single item cannot be on both sides: it goes to training, with a warning.

    Returns:
        numpy array of 'train' / 'val' strings, aligned with ``labels``.
    """
    labels = np.asarray(labels)
    assignment = np.full(len(labels), "train", dtype=object)
    rng = np.random.default_rng(seed)
    singletons = []
    for label in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            singletons.append(label)
            continue
        n_val = int(np.clip(round(len(members) * val_fraction), 1, len(members) - 1))
        assignment[rng.permutation(members)[:n_val]] = "val"
    if singletons:
        warn(
            f"{len(singletons)} class(es) have a single image and cannot be validated; "
            f"they are used for training only: {', '.join(map(str, singletons[:5]))}"
        )
    return assignment.astype(str)


def stratified_folds(labels, folds, seed):
    """Assign each item a fold 0..folds-1, stratified by label (pure)."""
    labels = np.asarray(labels)
    counts = pd.Series(labels).value_counts()
    if counts.min() < folds:
        raise UserError(
            f"cannot make {folds} stratified folds: class {counts.idxmin()!r} has only "
            f"{counts.min()} image(s); use at most {counts.min()} folds"
        )
    from sklearn.model_selection import StratifiedKFold  # lazy: keeps worker start-up light

    fold_of = np.empty(len(labels), dtype=int)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, val_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold_of[val_idx] = fold
    return fold_of


def make_splits(dataset, split_config):
    """The splits table for a dataset (see module docstring)."""
    table = dataset[["image", "label"]].copy()
    if split_config.folds:
        table["split"] = "fold"
        table["fold"] = stratified_folds(table["label"], split_config.folds, split_config.seed)
    else:
        table["split"] = stratified_split(
            table["label"], split_config.val_fraction, split_config.seed
        )
        table["fold"] = -1
    return table


def dataset_fingerprint(dataset):
    """A hash of the dataset's (image, label) pairs, not of the split: changes when files
    are added, removed or relabelled. See :func:`split_record` for the split itself."""
    digest = hashlib.sha256()
    for image, label in zip(dataset["image"], dataset["label"]):
        digest.update(f"{image}\t{label}\n".encode())
    return digest.hexdigest()


def load_or_make_splits(dataset, split_config, workdir, *, resplit=False):
    """Return the saved split for this dataset, making and saving it on first use.

    Raises:
        UserError: a saved split exists but was made for another dataset or other split
            settings (pass ``resplit=True`` to replace it).
    """
    csv_path = wd.split_paths(workdir)[0]
    wanted = {
        "val_fraction": split_config.val_fraction,
        "folds": split_config.folds,
        "seed": split_config.seed,
    }
    if wd.has_split(workdir) and not resplit:
        meta = wd.read_split_meta(workdir) or {}
        _check_same_dataset(meta, dataset, csv_path)
        made_with = {k: meta[k] for k in wanted}
        if made_with != wanted:
            raise UserError(
                f"{csv_path} was made with {made_with}, the config asks for {wanted}; "
                "pass --resplit to replace it (models trained on the old split become stale)"
            )
        return wd.read_split_table(workdir)
    unreadable = undecodable(dataset)
    usable = dataset[~dataset["image"].isin({image for image, _ in unreadable})]
    table = make_splits(usable, split_config)
    meta = dict(
        wanted,
        n_images=len(table),
        fingerprint=dataset_fingerprint(dataset),  # of the discovered data, so reruns match it
        images=dataset["image"].tolist(),
        labels=dataset["label"].tolist(),
        curation=dataset.attrs.get("curation"),
        data=dataset.attrs.get("settings"),  # read back by later stages (recorded_settings)
        unreadable=[{"image": image, "reason": reason} for image, reason in unreadable],
    )
    wd.write_split(workdir, table, meta)
    return table


def load_splits(dataset, split_config, workdir):
    """The saved split, checked against the data (as :func:`load_or_make_splits`), for a
    stage that comes after the split: it never makes one.

    Raises:
        UserError: the work directory has no split, or one of other data or settings.
    """
    if not wd.has_split(workdir):
        raise UserError(
            f"no split in {workdir}: run augment_offline.py (or train.py) on this work "
            "directory first"
        )
    return load_or_make_splits(dataset, split_config, workdir)


def recorded_settings(workdir):
    """The data and split settings the workdir's saved split was made with, as config
    overrides (``{"data.path": ..., "split.folds": ...}``); {} when there is none. Later
    stages start from them, so they need no ``--data`` (or split flags) again."""
    meta = wd.read_split_meta(workdir)
    if meta is None or not isinstance(meta.get("data"), dict):
        return {}  # made by an older version: nothing recorded
    split = {f"split.{k}": meta[k] for k in ("val_fraction", "folds", "seed") if k in meta}
    return meta["data"] | split


def left_out_of_split(dataset, workdir):
    """``(path, reason)`` of the images the saved split left out (undecodable)."""
    meta = wd.read_split_meta(workdir)
    if meta is None:
        return []
    paths = dict(zip(dataset["image"], dataset["path"]))
    left_out = meta.get("unreadable", [])
    return [(paths.get(u["image"], u["image"]), u["reason"]) for u in left_out]


def undecodable(dataset):
    """``(image, reason)`` for every image whose pixels cannot be decoded (its header
    read fine at discovery): checked once, when the split is made, so that no later
    stage meets it; listed on screen and in the split's record."""
    from concurrent.futures import ThreadPoolExecutor

    from ripik_clf.data.images import BadImage, read_rgb
    from ripik_clf.progress import progress

    def reason(path):
        try:
            read_rgb(path)
        except BadImage as err:
            return str(err)
        return None

    bar = progress(len(dataset), "check images")
    found = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for image, why in zip(dataset["image"], pool.map(reason, dataset["path"])):
            bar.update(1)
            if why:
                found.append((image, why))
    bar.close()
    if found:
        warn(
            f"{len(found)} image(s) cannot be decoded and are left out of the split "
            f"(listed in {wd.SPLITS_JSON}); first: {found[0][0]} ({found[0][1]})"
        )
    return found


def _check_same_dataset(meta, dataset, csv_path):
    if meta["fingerprint"] == dataset_fingerprint(dataset):
        return
    saved = dict(zip(meta["images"], meta["labels"]))
    now = dict(zip(dataset["image"], dataset["label"]))
    added = len(now.keys() - saved.keys())
    removed = len(saved.keys() - now.keys())
    relabelled = sum(1 for k in now.keys() & saved.keys() if now[k] != saved[k])
    raise UserError(
        f"the dataset changed since {csv_path} was made ({added} added, {removed} removed, "
        f"{relabelled} relabelled); pass --resplit to make a new split, or use another --workdir"
    )


def split_record(splits, split_config):
    """What a model must agree with to be validated on this split: the settings and a hash
    of the assignment itself (image -> label, split, fold), so a re-split with another
    seed, fraction or fold count, or of changed data (curated labels too), is seen."""
    digest = hashlib.sha256()
    rows = zip(splits["image"], splits["label"], splits["split"], splits["fold"])
    for image, label, split, fold in sorted(rows):
        digest.update(f"{image}\t{label}\t{split}\t{int(fold)}\n".encode())
    return {
        "seed": split_config.seed,
        "val_fraction": split_config.val_fraction,
        "folds": split_config.folds,
        "assignment": digest.hexdigest(),
    }


def saved_split_record(workdir):
    """The split record of the workdir's saved split (None when there is none)."""
    if not wd.has_split(workdir):
        return None
    meta = wd.read_split_meta(workdir) or {}
    splits = wd.read_split_table(workdir)
    settings = SimpleNamespace(**{k: meta[k] for k in ("seed", "val_fraction", "folds")})
    return split_record(splits, settings)


def refuse_other_split(run_name, trained_on, current):
    """Stop, in one line saying what differs, when a run's split record (``trained_on``)
    is not ``current``; ``current`` None (no split to compare with) passes.

    Raises:
        UserError: the run was trained on another split, or predates split records.
    """
    if current is None or trained_on == current:
        return
    if trained_on is None:
        raise UserError(
            f"run {run_name} has no split record (made by an older version): retrain it"
        )
    changed = [
        f"{key} {trained_on.get(key)} -> {current[key]}"
        for key in ("seed", "val_fraction", "folds")
        if trained_on.get(key) != current[key]
    ]
    same = "the same settings, other images or labels (data changed)"
    what = ", ".join(changed) if changed else same
    raise UserError(
        f"run {run_name} was trained on another split of the data ({what}): its training "
        "images may be validation images now; retrain it (train.py --phase head, then full)"
    )


def training_images(splits, fold=None):
    """Images whose augmented copies may be made: never a validation image.

    Single split: the 'train' rows. K-fold: every image (each copy inherits its source's
    fold, and the trainer of fold k drops fold k's sources and their copies).
    """
    if (splits["split"] == "fold").all():
        return splits if fold is None else splits[splits["fold"] != fold]
    return splits[splits["split"] == "train"]
