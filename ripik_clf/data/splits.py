"""The stratified train/validation split (or K folds), made once and saved.

The split table has one row per source image: ``image, label, split, fold``.
Single split: ``split`` is ``train`` or ``val`` and ``fold`` is -1. K-fold: ``split`` is
``fold`` and ``fold`` is 0..K-1. Its record beside it (see :mod:`ripik_clf.workdir`) says
how it was made and a fingerprint of the dataset, so a later run can refuse a dataset that
changed under it.
"""

import hashlib
import os
import sys
from stat import S_ISREG
from types import SimpleNamespace

import numpy as np
import pandas as pd

from ripik_clf import workdir as wd
from ripik_clf.data.dataset import warn
from ripik_clf.data.images import file_sha1
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
    """Return the saved split for this dataset, making and saving it on first use. Only
    the stages that see the data (augmentation, the head and probe phases) call it.

    The table carries each image's path and content check (``workdir.CHECK_COLUMNS``):
    stages after the split read the images from it (:func:`recorded_split`).

    Raises:
        UserError: a saved split exists but was made for another dataset or other split
            settings (pass ``resplit=True`` to replace it).
    """
    if wd.has_split(workdir) and not resplit:
        record, table = _saved_split_of(dataset, split_config, workdir)
        return _refresh_checks(table, record, dataset, workdir)
    checks, unreadable = _read_every_image(dataset)
    bad = {image for image, _ in unreadable}
    usable = dataset[~dataset["image"].isin(bad)]
    table = make_splits(usable, split_config)
    table = table.merge(checks, on="image", how="left")
    record = wd.SplitRecord(
        **_wanted(split_config),
        n_images=len(table),
        fingerprint=dataset_fingerprint(dataset),  # of the discovered data, so reruns match it
        images=dataset["image"].tolist(),
        labels=dataset["label"].tolist(),
        curation=dataset.attrs.get("curation"),
        data=dataset.attrs.get("settings"),  # read back by later stages (recorded_settings)
        unreadable=[{"image": image, "reason": reason} for image, reason in unreadable],
    )
    wd.write_split(workdir, table, record)
    return table


def _wanted(split_config):
    return {
        "val_fraction": split_config.val_fraction,
        "folds": split_config.folds,
        "seed": split_config.seed,
    }


def load_splits(dataset, split_config, workdir):
    """The saved split, checked against the discovered data and the split settings, for a
    stage that sees the data but must not make a split (the audit).

    Raises:
        UserError: no split, or one of other data or settings.
    """
    return _saved_split_of(dataset, split_config, workdir)[1]


def _saved_split_of(dataset, split_config, workdir):
    """(record, table) of the saved split, checked against the data and the settings."""
    csv_path = wd.split_paths(workdir)[0]
    record = _saved_record(workdir)
    _check_same_dataset(record, dataset, csv_path)
    _check_same_settings(record, split_config, csv_path)
    return record, wd.read_split_table(workdir)


def recorded_split(config, *, check=True):
    """The saved split of ``config.workdir`` for a stage after the split: its images found
    through the split's own paths and checked against their recorded content, so the
    dataset is never walked again (images added since are not seen; an image changed or
    gone is refused, unless ``check`` is False: a use that only needs some images, which
    reads what it can). A split made by an older version (no paths) gains them once, from
    the data its record names (``config.data``: later stages start from it).

    Returns:
        (the split table with ``path``, the classes in model-output order).

    Raises:
        UserError: no split; other split settings than ``config.split``; images changed
            or gone since.
    """
    workdir = config.workdir
    csv_path = wd.split_paths(workdir)[0]
    record = _saved_record(workdir)
    _check_same_settings(record, config.split, csv_path)
    table = wd.read_split_table(workdir)
    if not all(c in table.columns for c in wd.CHECK_COLUMNS):
        table = _add_paths_to_an_older_split(config, csv_path)
    changed = _changed_images(table) if check else []
    if changed:
        path, why = changed[0]
        raise UserError(
            f"{len(changed)} image(s) of the split changed or are gone since {csv_path} was "
            f"made (first: {path}: {why}); restore them, or make a new split "
            "(train.py --phase head --resplit --overwrite)"
        )
    return table, record.classes


def _add_paths_to_an_older_split(config, csv_path):
    """The one walk of the data after the split: a split of an older version has no
    paths; the data it was made of (checked by its fingerprint) gives them, once."""
    from ripik_clf.data.dataset import load_dataset

    print(f"note: {csv_path} was made by an older version: recording each image's path and "
          "content in it (once)", file=sys.stderr)  # fmt: skip
    dataset, _ = load_dataset(config.data)
    return load_or_make_splits(dataset, config.split, config.workdir)


def _saved_record(workdir):
    record = wd.read_split_record(workdir) if wd.has_split(workdir) else None
    if record is None:
        raise UserError(
            f"no split in {workdir}: run augment_offline.py (or train.py) on this work "
            "directory first"
        )
    return record


def _check_same_settings(record, split_config, csv_path):
    wanted = _wanted(split_config)
    if record.settings != wanted:
        raise UserError(
            f"{csv_path} was made with {record.settings}, the config asks for {wanted}; "
            "pass --resplit to replace it (models trained on the old split become stale)"
        )


def _changed_images(table):
    """``(path, why)`` of the split's images that are gone or hold other bytes than when
    the split was made: size and mtime first (a stat), the sha1 only when those moved
    (a copy of the dataset keeps the bytes, not the mtimes)."""
    changed = []
    for path, size, mtime, sha1 in zip(*(table[c] for c in wd.CHECK_COLUMNS)):
        unread, moved = _stat_differs(path, size, mtime)
        if unread:
            changed.append((path, unread))
        elif moved and file_sha1(path) != sha1:
            changed.append((path, "other content"))
    return changed


def _stats_match(table):
    """Every image of the table has the size and mtime the split recorded (a stat each)."""
    rows = zip(table["path"], table["bytes"], table["mtime_ns"])
    return not any(any(_stat_differs(*row)) for row in rows)


def _stat_differs(path, size, mtime):
    """``(why it cannot be read or None, whether size or mtime moved)``."""
    try:
        stat = os.stat(path)
    except OSError as err:
        return f"cannot be read ({err.strerror})", True
    if not S_ISREG(stat.st_mode):  # a pipe in an image's place would block its reader
        return "not a regular file (a pipe, socket or device)", True
    return None, (stat.st_size, stat.st_mtime_ns) != (size, mtime)


def _content_check(path):
    """One image's ``CHECK_COLUMNS`` values (path, bytes, mtime_ns, sha1)."""
    stat = os.stat(path)
    return path, stat.st_size, stat.st_mtime_ns, file_sha1(path)


def _refresh_checks(table, record, dataset, workdir):
    """The saved table with the paths and content checks of the data as discovered now
    (the split itself unchanged): a split made by an older version gains them, a dataset
    moved or copied elsewhere is found at its new place (and the record's data settings,
    which later stages start from, follow it), a file touched since gets its new mtime
    (so later stages need no sha1 of it). Saved only when something differs."""
    paths = dict(zip(dataset["image"], dataset["path"]))
    current = table[list(wd.SPLIT_COLUMNS)].copy()
    current["path"] = [paths[image] for image in current["image"]]
    settings = dataset.attrs.get("settings")
    moved = settings is not None and record.data != settings  # e.g. data.path: the new place
    if all(c in table.columns for c in wd.CHECK_COLUMNS) and not moved:
        same_paths = list(table["path"]) == list(current["path"])
        if same_paths and _stats_match(table):
            return table
    rows = [_content_check(path) for path in current["path"]]
    for column, values in zip(wd.CHECK_COLUMNS, zip(*rows)):
        current[column] = list(values)
    current = current.astype({"bytes": "int64", "mtime_ns": "int64"})
    if moved:  # later stages start from the recorded settings: point them at the new place
        record.data = settings
        wd.write_split(workdir, current, record)
    else:
        wd.write_split_table(workdir, current)
    return current


def recorded_settings(workdir):
    """The data and split settings the workdir's saved split was made with, as config
    overrides (``{"data.path": ..., "split.folds": ...}``); {} when there is none. Later
    stages start from them, so they need no ``--data`` (or split flags) again."""
    record = wd.read_split_record(workdir)
    if record is None or record.data is None:
        return {}  # made by an older version: nothing recorded
    return record.data | {f"split.{k}": v for k, v in record.settings.items()}


def left_out_of_split(dataset, workdir):
    """``(path, reason)`` of the images the saved split left out (undecodable)."""
    record = wd.read_split_record(workdir)
    if record is None:
        return []
    paths = dict(zip(dataset["image"], dataset["path"]))
    return [(paths.get(u["image"], u["image"]), u["reason"]) for u in record.unreadable]


def _read_every_image(dataset):
    """Each image read once when the split is made: its content check (a table
    ``image`` + ``CHECK_COLUMNS``) and ``(image, reason)`` for every image whose pixels
    cannot be decoded (its header read fine at discovery), so that no later stage meets
    it; those are listed on screen and in the split's record."""
    from concurrent.futures import ThreadPoolExecutor

    from ripik_clf.data.images import BadImage, read_rgb
    from ripik_clf.progress import progress

    def read(path):
        try:
            read_rgb(path)
        except BadImage as err:
            return None, str(err)
        return _content_check(path), None

    bar = progress(len(dataset), "check images")
    found, checks = [], []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for image, (check, why) in zip(dataset["image"], pool.map(read, dataset["path"])):
            bar.update(1)
            if why:
                found.append((image, why))
            else:
                checks.append((image, *check))
    bar.close()
    if found:
        warn(
            f"{len(found)} image(s) cannot be decoded and are left out of the split "
            f"(listed in {wd.SPLITS_JSON}); first: {found[0][0]} ({found[0][1]})"
        )
    table = pd.DataFrame(checks, columns=["image", *wd.CHECK_COLUMNS])
    return table.astype({"bytes": "int64", "mtime_ns": "int64"}), found


def _check_same_dataset(record, dataset, csv_path):
    if record.fingerprint == dataset_fingerprint(dataset):
        return
    saved = dict(zip(record.images, record.labels))
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
    return {
        "seed": split_config.seed,
        "val_fraction": split_config.val_fraction,
        "folds": split_config.folds,
        "assignment": wd.assignment_digest(splits),
    }


def saved_split_record(workdir):
    """The split record of the workdir's saved split (None when there is none)."""
    record = wd.read_split_record(workdir) if wd.has_split(workdir) else None
    if record is None:
        return None
    return split_record(wd.read_split_table(workdir), SimpleNamespace(**record.settings))


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
