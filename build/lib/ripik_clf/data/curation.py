"""Hand curation of a dataset: images to leave out and labels to fix (``data.exclude``,
``data.relabel``), applied after discovery and before the split.

Both change the dataset's (image, label) pairs, so the saved split's fingerprint no longer
matches: the next stage asks for ``--resplit``, and runs trained before are refused.
"""

import hashlib
from pathlib import Path

import pandas as pd

from ripik_clf.errors import UserError


def apply_curation(dataset, exclude_file=None, relabel_file=None):
    """``dataset`` without the excluded images and with the fixed labels.

    An entry names an image by its id (path relative to the data root, as in
    the split table) or by a file path (absolute, or relative to the current folder).

    Returns:
        (dataset, record): ``record`` says what was applied (for the split's record); None
        when neither file is given.

    Raises:
        UserError: an entry that names no image of the dataset, or a label that is not
            one of its classes (a typo would otherwise create a class).
    """
    if not exclude_file and not relabel_file:
        return dataset, None
    record = {}
    lookup = _image_lookup(dataset)
    if exclude_file:
        lines = _read_lines(exclude_file)
        drop = {_resolve(entry, lookup, exclude_file, number) for number, entry in lines}
        dataset = dataset[~dataset["image"].isin(drop)].reset_index(drop=True)
        record["exclude"] = {"file": str(exclude_file), "images": sorted(drop)}
    if relabel_file:
        fixes = _read_relabel(relabel_file, lookup, set(dataset["label"]))
        dataset = dataset.copy()
        dataset["label"] = [fixes.get(i, label) for i, label in zip(dataset.image, dataset.label)]
        record["relabel"] = {"file": str(relabel_file), "labels": dict(sorted(fixes.items()))}
    record["sha256"] = hashlib.sha256(repr(sorted(record.items())).encode()).hexdigest()
    return dataset, record


def _image_lookup(dataset):
    """Every way an entry may name an image -> its id."""
    lookup = dict(zip(dataset["image"], dataset["image"]))
    lookup |= {str(Path(p).resolve()): i for p, i in zip(dataset["path"], dataset["image"])}
    return lookup


def _resolve(entry, lookup, source, number):
    image = lookup.get(Path(entry).as_posix()) or lookup.get(str(Path(entry).resolve()))
    if image is None:
        raise UserError(f"{source} line {number}: {entry!r} is not an image of the dataset")
    return image


def _read_lines(path):
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    entries = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    return [(n, e) for n, e in entries if e and not e.startswith("#")]


def _read_relabel(path, lookup, classes):
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path}: {str(err).splitlines()[0]}") from None
    if list(table.columns[:2]) != ["image", "label"]:
        raise UserError(f"{path} must be a CSV with the columns image,label")
    fixes = {}
    for number, (entry, label) in enumerate(zip(table["image"], table["label"]), start=2):
        image = _resolve(entry.strip(), lookup, path, number)
        if label.strip() not in classes:
            raise UserError(
                f"{path} line {number}: label {label!r} is not a class of the dataset "
                f"({', '.join(sorted(classes))})"
            )
        fixes[image] = label.strip()
    return fixes
