"""The built-in demo dataset: scikit-learn's real handwritten digits as image files.

scikit-learn ships 1,797 8x8 scans of digits 0-9 (no download). They are upscaled to
64x64 RGB PNGs so that every stage runs on real image files:

    data/demo/train/<digit>/<id>.png   labelled training data (85%)
    data/demo/test/<id>.png            unlabelled test images (15%, stratified)
    data/demo/test_labels.csv          the test answer key: image_id,label
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock
from PIL import Image

DEFAULT_ROOT = Path("data/demo")
IMAGE_SIZE = 64  # pixels; the 8x8 originals are upscaled with a bicubic filter
TEST_FRACTION = 0.15
SEED = 0
_COMPLETE = ".complete"  # written last: a half-made folder is never taken as done


def demo_paths(root=DEFAULT_ROOT):
    root = Path(root)
    return {"train": root / "train", "test": root / "test", "answers": root / "test_labels.csv"}


NO_DATA = (
    "no training data: pass --data PHOTOS (a folder per class, or a CSV of image,label), "
    "or set data.path; the built-in demo digits are configs/demo.yaml (make demo)"
)


def refuse_no_data(data_config):
    """A config without a data path is refused unless it asks for the demo (data.demo)."""
    from ripik_clf.errors import UserError

    if data_config.path is None and not data_config.demo:
        raise UserError(NO_DATA)


def ensure_demo_data(root=DEFAULT_ROOT, verbose=True):
    """Create the demo dataset under ``root`` unless it is already complete.

    Returns:
        dict with the ``train``, ``test`` and ``answers`` paths.
    """
    root = Path(root)
    paths = demo_paths(root)
    if (root / _COMPLETE).exists():
        return paths
    root.parent.mkdir(parents=True, exist_ok=True)
    # Two processes making it at once (the test suite's workers, two demos): one writes,
    # the other waits for it and finds it complete.
    with FileLock(root.with_name(f".{root.name}.lock")):
        if (root / _COMPLETE).exists():
            return paths
        return _make(root, paths, verbose)


def _make(root, paths, verbose):
    if verbose:
        print(f"demo: writing scikit-learn's handwritten digits as PNG files under {root}/ ...")
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    counts = _write_digits(tmp)
    (tmp / _COMPLETE).write_text("")
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    if verbose:
        print(
            f"demo: {counts['train']} training images in 10 classes, "
            f"{counts['test']} test images (answer key: {paths['answers']})"
        )
    return paths


def _write_digits(root):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # 0..16 ink intensity -> dark ink on white paper, like a scanned page.
    pixels = (255 - digits.images * (255 / 16)).round().astype(np.uint8)
    ids = np.array([f"digit_{i:04d}" for i in range(len(pixels))])
    train_idx, test_idx = train_test_split(
        np.arange(len(pixels)), test_size=TEST_FRACTION, stratify=digits.target, random_state=SEED
    )
    for i in train_idx:
        _save(pixels[i], root / "train" / str(digits.target[i]) / f"{ids[i]}.png")
    for i in test_idx:
        _save(pixels[i], root / "test" / f"{ids[i]}.png")
    answers = pd.DataFrame(
        {
            "image_id": [f"{ids[i]}.png" for i in sorted(test_idx)],
            "label": [str(digits.target[i]) for i in sorted(test_idx)],
        }
    )
    answers.to_csv(root / "test_labels.csv", index=False)
    return {"train": len(train_idx), "test": len(test_idx)}


def _save(gray8x8, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(gray8x8).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)
    image.convert("RGB").save(path)
