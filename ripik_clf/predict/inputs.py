"""What the Python API takes as images (``Ensemble.predict``): one reader per kind of
input, and a per-item reason instead of an error for the batch.

Accepted: paths (``str`` or ``os.PathLike``) of image files or folders (every image below
a folder, sorted), ``uint8`` RGB or grayscale arrays ``(H, W[, 3])`` or a stack ``(N, H,
W, 3)``, PIL images, and an image file's bytes; one of them alone or a list mixing them.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ripik_clf.data.images import BadImage, read_rgb
from ripik_clf.errors import UserError


@dataclass
class Item:
    """One image to predict: a file to read, or pixels; ``reason`` when it cannot be."""

    name: str  # in failures: its path, or "input K"
    path: Path | None = None
    array: np.ndarray | None = None
    reason: str | None = None


def collect(inputs, allow_outside_root=False):
    """The inputs as items, in order (a folder becomes its image files).

    Raises:
        UserError: nothing was given (None, an empty list) or not a list of inputs.
    """
    if inputs is None:
        raise UserError("predict needs images: paths, folders, arrays, PIL images or bytes")
    if _single(inputs):
        inputs = [inputs]
    elif isinstance(inputs, np.ndarray) and inputs.ndim == 4:
        inputs = list(inputs)
    try:
        inputs = list(inputs)
    except TypeError:
        kind = type(inputs).__name__
        raise UserError(f"predict takes images or a list of them, not {kind}") from None
    items = [item for i, x in enumerate(inputs) for item in _items(i, x, allow_outside_root)]
    if not items:
        raise UserError("predict was given no images (an empty list or empty folders)")
    return items


def _single(x):
    return (
        isinstance(x, (str, os.PathLike, bytes, bytearray))
        or (isinstance(x, np.ndarray) and x.ndim in (2, 3))
        or _is_pil(x)
    )


def _is_pil(x):
    from PIL import Image

    return isinstance(x, Image.Image)


def _items(i, x, allow_outside_root):
    name = f"input {i}"
    if isinstance(x, np.ndarray):
        return [_array_item(name, x)]
    if _is_pil(x):
        return [_array_item(name, np.asarray(x.convert("RGB")))]
    if isinstance(x, (bytes, bytearray)):
        try:
            return [Item(name, array=read_rgb(bytes(x)))]
        except BadImage as err:
            return [Item(name, reason=f"bytes that are not an image file: {err}")]
    if isinstance(x, (str, os.PathLike)):
        return _path_items(name, Path(os.fspath(x)), allow_outside_root)
    return [Item(name, reason=f"not an image, a path or an array ({type(x).__name__})")]


def _path_items(name, path, allow_outside_root):
    from ripik_clf.data.dataset import scan_image_folder

    if not str(path).strip() or str(path) == ".":  # Path("") is the current folder
        return [Item(name, reason="an empty path")]
    if path.is_dir():
        found, unusable = scan_image_folder(path, allow_outside_root)
        return [Item(str(path / f), path=path / f) for f in found] + [
            Item(str(p), reason=why) for p, why in unusable
        ]
    if path.is_file():
        return [Item(str(path), path=path)]
    return [Item(str(path), reason="not found")]


def _array_item(name, array):
    if array.ndim == 2:  # grayscale, as read_rgb converts it
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8 or 0 in array.shape:
        return Item(name, reason=f"an image array must be uint8 RGB (H, W, 3), got "
                                 f"{array.dtype} {array.shape}")  # fmt: skip
    return Item(name, array=array)


def decode(item):
    """Its pixels (read from its file when it has one), or None with ``item.reason`` set."""
    if item.array is None and item.reason is None:
        try:
            return read_rgb(item.path)
        except BadImage as err:
            item.reason = str(err)
    return item.array
