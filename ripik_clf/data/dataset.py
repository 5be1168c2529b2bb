"""Discovering a labelled dataset (class folders or a CSV) and checking every file.

A dataset is a DataFrame with one row per usable image:

    image   the image's id: its path relative to the data root, with '/' separators
    label   the class name (a string)
    path    the absolute file path

sorted by ``image``. Files that are not usable images are not rows; they are returned
separately as ``(path, reason)`` so that every skipped file can be reported.
"""

import sys
from pathlib import Path

import pandas as pd

from ripik_clf.data.curation import apply_curation
from ripik_clf.data.images import IMAGE_EXTENSIONS, BadImage, probe
from ripik_clf.errors import UserError

COLUMNS = ["image", "label", "path"]


def discover(
    data_path,
    *,
    image_col="image",
    label_col="label",
    image_root=None,
    max_pixels=None,
    allow_outside_root=False,
):
    """Find every labelled image under ``data_path`` (a folder or a CSV file).

    Returns:
        (dataset, skipped): the DataFrame described in the module docstring, and a list
        of ``(path, reason)`` for files that were found but cannot be used.

    Raises:
        UserError: the path is missing, holds no classes, a class holds no usable
            image, or the CSV is malformed.
    """
    data_path = Path(data_path)
    if not data_path.exists():
        raise UserError(f"data path not found: {data_path}")
    if data_path.is_dir():
        rows, skipped = _scan_folders(data_path, allow_outside_root)
    elif data_path.suffix.lower() == ".csv":
        rows, skipped = _read_csv(data_path, image_col, label_col, image_root, allow_outside_root)
    else:
        raise UserError(f"--data must be a folder of class folders or a .csv file, got {data_path}")

    usable, skipped = _probe_all(rows, skipped, max_pixels)
    dataset = pd.DataFrame(usable, columns=COLUMNS).sort_values("image", ignore_index=True)
    found = {label for _, label, _ in rows}
    empty = sorted(found - set(dataset["label"]))
    if empty:
        raise UserError(
            f"class {empty[0]!r} has no usable image (all its files were skipped: "
            f"{'; '.join(f'{Path(p).name}: {r}' for p, r in skipped[:3])})"
        )
    return dataset, skipped


# Folders an archive tool leaves beside the data (macOS zips): never a class.
IGNORED_FOLDERS = ("__MACOSX",)


def _scan_folders(root, allow_outside_root=False):
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    for ignored in (p for p in entries if p.name in IGNORED_FOLDERS):
        warn(f"{ignored} ignored (archive residue, not a class)")
    class_dirs = [p for p in entries if p.is_dir() and p.name not in IGNORED_FOLDERS]
    if not class_dirs:
        raise UserError(f"no class folders in {root}: expected {root}/<class>/<image files>")
    rows, skipped = [], []
    for stray in (p for p in entries if not p.is_dir()):
        skipped.append((str(stray), "not inside a class folder"))
    inside = root.resolve()
    for class_dir in class_dirs:
        refuse_bad_name(class_dir.name, f"class folder {class_dir}", label=True)
        if not allow_outside_root and not class_dir.resolve().is_relative_to(inside):
            raise UserError(
                f"class folder {class_dir} links outside the data root {inside} (set "
                "data.allow_outside_root: true if that is intended)"
            )
        files, unusable = _class_files(class_dir, inside, allow_outside_root)
        skipped += unusable
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        for other in files:
            if other.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append((str(other), f"unsupported file type {other.suffix or '(none)'!r}"))
        if not images:
            raise UserError(
                f"class folder {class_dir} has no image files "
                f"(looked for {', '.join(IMAGE_EXTENSIONS)})"
            )
        for path in images:
            rows.append((path.relative_to(root).as_posix(), class_dir.name, str(path.resolve())))
    return _one_row_per_file(rows, skipped)


def _one_row_per_file(rows, skipped):
    """A file reached twice (a link to another listed image) is one image: the first
    path keeps it, the other is listed as skipped (it would weigh double, and could sit
    on both sides of the split)."""
    kept, seen = [], {}
    for row in rows:
        if row[2] in seen:
            skipped.append((row[0], f"the same file as {seen[row[2]]}"))
        else:
            seen[row[2]] = row[0]
            kept.append(row)
    return kept, skipped


def _class_files(class_dir, inside, allow_outside_root):
    """The visible files of a class folder that are usable by name and place, and
    ``(path, reason)`` for the others: names that are not valid UTF-8, broken links,
    (the CSV's rule) links resolving outside the data root, and special files (only
    regular files are images)."""
    files, unusable = [], []
    for path in sorted(class_dir.rglob("*")):
        if _hidden(path, class_dir) or path.is_dir():
            continue
        shown = str(path).encode("utf-8", "backslashreplace").decode()
        if problem := name_problem(str(path.relative_to(class_dir))):
            unusable.append((shown, f"file name {problem} (rename it)"))
        elif not path.exists():
            unusable.append((shown, "broken symbolic link"))
        elif not allow_outside_root and not path.resolve().is_relative_to(inside):
            unusable.append(
                (
                    shown,
                    f"links outside the data root {inside} (data.allow_outside_root: true "
                    "to allow)",
                )  # fmt: skip
            )
        elif path.is_file():
            files.append(path)
        else:  # a FIFO, socket or device: reading it can block forever, so never read
            unusable.append((shown, "not a regular file (a pipe, socket or device)"))
    return files, unusable


def name_problem(text, label=False):
    """Why ``text`` cannot be an image id or (``label``) a class name, or None: it must be
    valid UTF-8 without control characters; a class name also becomes a folder name, so
    it holds no path separator, is not ``.`` or ``..`` and does not start with ``.``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8 text"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        return "holds a control character"
    if any(len(part.encode()) > 255 for part in text.split("/")):
        return "has a part longer than 255 bytes (the file system's limit)"
    if label:
        if "/" in text or "\\" in text:
            return "holds a path separator"
        if text.startswith("."):
            return "starts with '.'"
        if len(text.encode()) > 200:
            return "longer than 200 bytes"
    return None


def refuse_bad_name(text, where, label=False):
    problem = name_problem(text, label)
    if problem:
        shown = text.encode("utf-8", "backslashreplace").decode()
        what = "class name" if label else "image name"
        raise UserError(f"{where}: {what} {shown!r} {problem}")


def _hidden(path, base):
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def scan_image_folder(folder, allow_outside_root=False):
    """The image files below ``folder`` at any depth, hidden ones excepted (a name or a
    folder on the way starting with "."), as sorted relative POSIX paths; and ``(path,
    reason)`` for the image files there that cannot be used by name or place. The one
    rule for what a folder holds: a class folder's (the training data), the test folder's
    and ``predict``'s alike (a name that is not UTF-8 text, a broken link, a link
    resolving outside ``folder``: never read, never dropped unsaid)."""
    folder = Path(folder)
    files, unusable = _class_files(folder, folder.resolve(), allow_outside_root)
    images = [
        p.relative_to(folder).as_posix() for p in files if p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    unusable = [(p, why) for p, why in unusable if Path(p).suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(images), unusable


def _read_csv(csv_path, image_col, label_col, image_root, allow_outside_root=False):
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read CSV {csv_path}: {str(err).splitlines()[0]}") from None
    stripped = {c: c.strip() for c in table.columns}
    if any(k != v for k, v in stripped.items()):  # "image, label": the space is invisible
        table = table.rename(columns=stripped)
    missing = [c for c in (image_col, label_col) if c not in table.columns]
    if missing:
        raise UserError(
            f"CSV {csv_path} has no column {missing[0]!r} (columns: {', '.join(table.columns)}); "
            "set --image-col/--label-col"
        )
    if table.empty:
        raise UserError(f"CSV {csv_path} has no rows")
    root = Path(image_root) if image_root else csv_path.parent
    if not root.is_dir():
        raise UserError(f"image root not found: {root}")
    keys, labels = _csv_columns(csv_path, table, image_col, label_col)
    return _csv_rows(csv_path, root, keys, labels, allow_outside_root), []


def _csv_columns(csv_path, table, image_col, label_col):
    """The image keys (POSIX paths) and labels of a CSV, refusing blanks and repeats."""
    images = table[image_col].str.strip()
    labels = table[label_col].str.strip()
    for column, values in ((image_col, images), (label_col, labels)):
        blank = values.index[values == ""]
        if len(blank):
            raise UserError(f"CSV {csv_path}: empty {column!r} in data row {blank[0] + 1}")
    for row_number, (image, label) in enumerate(zip(images, labels), start=1):
        refuse_bad_name(image, f"CSV {csv_path}: data row {row_number}")
        refuse_bad_name(label, f"CSV {csv_path}: data row {row_number}", label=True)
    keys = images.map(lambda s: Path(s).as_posix())
    dupes = keys[keys.duplicated(keep=False)]
    if len(dupes):
        first = dupes.iloc[0]
        rows_of_first = [str(i + 1) for i in dupes.index[dupes == first]]
        more = f" and {len(rows_of_first) - 5:,} more" if len(rows_of_first) > 5 else ""
        raise UserError(
            f"CSV {csv_path}: image {first!r} is listed more than once "
            f"(data rows {', '.join(rows_of_first[:5])}{more}); each image must appear once"
        )
    return keys, labels


def _csv_rows(csv_path, root, keys, labels, allow_outside_root):
    rows, missing_files, seen = [], [], {}
    inside = root.resolve()
    for row_number, (image, label) in enumerate(zip(keys, labels), start=1):
        path = root / image
        # Resolved (symlinks too), a row must stay inside the image root: a CSV from
        # elsewhere must not make the pipeline read, copy and train on any file.
        if not allow_outside_root and not path.resolve().is_relative_to(inside):
            raise UserError(
                f"CSV {csv_path}: data row {row_number} names {image!r}, outside the image "
                f"root {inside} (set data.allow_outside_root: true if that is intended)"
            )
        if not path.is_file():
            missing_files.append((row_number, path))
        resolved = str(path.resolve())
        if resolved in seen:  # "a/x.png" and "a/../a/x.png", or a link to a listed file
            raise UserError(
                f"CSV {csv_path}: data rows {seen[resolved]} and {row_number} name one file "
                f"({resolved}) under two spellings; each image must appear once"
            )
        seen[resolved] = row_number
        rows.append((image, label, resolved))
    if missing_files:
        row_number, path = missing_files[0]
        raise UserError(
            f"CSV {csv_path}: {len(missing_files)} listed file(s) do not exist, "
            f"first: {path} (data row {row_number})"
        )
    return rows


def _probe_all(rows, skipped, max_pixels):
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    usable, skipped = [], list(skipped)
    for row in rows:
        try:
            probe(row[2], **kwargs)
        except BadImage as err:
            skipped.append((row[2], str(err)))
        else:
            usable.append(row)
    return usable, skipped


def class_names(dataset):
    """The sorted class list: the order of every model's outputs."""
    return sorted(dataset["label"].unique())


def warn(message):
    print(f"warning: {message}", file=sys.stderr)


def load_dataset(data_config):
    """Discover the configured training data (with no path and ``data.demo``: the demo
    digits, made if absent), then apply ``data.exclude`` / ``data.relabel``."""
    path = data_config.path
    if path is None:
        from ripik_clf.data.demo import ensure_demo_data, refuse_no_data

        refuse_no_data(data_config)
        path = ensure_demo_data()["train"]
    dataset, skipped = discover(
        path,
        image_col=data_config.image_col,
        label_col=data_config.label_col,
        image_root=data_config.image_root,
        max_pixels=data_config.max_pixels,
        allow_outside_root=data_config.allow_outside_root,
    )
    dataset, record = apply_curation(dataset, data_config.exclude, data_config.relabel)
    classes = class_names(dataset)
    if len(classes) == 1:  # it would "learn" it perfectly and report accuracy 1.000
        raise UserError(f"{path} holds one class ({classes[0]!r}): a classifier needs at least two")
    dataset.attrs["curation"] = record  # saved with the split
    dataset.attrs["settings"] = data_settings(data_config)  # so later stages need no --data
    return dataset, skipped


# The data.* keys that define the dataset; file paths among them are saved absolute.
DATA_KEYS = ("path", "demo", "image_col", "label_col", "image_root", "allow_outside_root",
             "max_pixels", "exclude", "relabel")  # fmt: skip
PATH_KEYS = ("path", "image_root", "exclude", "relabel")


def data_settings(data_config):
    """``{"data.<key>": value}`` of the dataset-defining settings, paths made absolute
    (None = the demo data): what the workdir records beside its split."""
    settings = {}
    for key in DATA_KEYS:
        value = getattr(data_config, key)
        if key in PATH_KEYS and value is not None:
            value = str(Path(value).resolve())
        settings[f"data.{key}"] = value
    return settings
