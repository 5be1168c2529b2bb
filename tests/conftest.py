"""Shared fixtures: tiny image datasets written to a temporary folder."""

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
REPO = Path(__file__).resolve().parents[1]

# Script flags for the fast way through a pipeline: one data variant, 32 px, random
# weights, 2 head epochs, 1 full epoch without warm-up or a step floor.
ONE_VARIANT = ["--set", "train.models=original"]
TINY_TRAIN = [*ONE_VARIANT, "--set", "train.image_size=32", "--set", "train.weights=none",
              "--set", "train.head_epochs=2", "--set", "train.full_epochs=1",
              "--set", "train.full_min_steps=0", "--set", "train.full_warmup_epochs=0",
              "--set", "train.batch_size=8"]  # fmt: skip


def write_image(path, size=32, seed=0, fmt=None):
    """A small deterministic RGB image with some structure (not pure noise)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((size, size), Image.BILINEAR)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


def make_folder_dataset(root, counts, size=32, ext=".png"):
    """``root/<class>/img_<i><ext>`` with ``counts[class]`` images per class."""
    root = Path(root)
    seed = 0
    for label, count in counts.items():
        for i in range(count):
            write_image(root / label / f"img_{i:03d}{ext}", size=size, seed=seed)
            seed += 1
    return root


# augment_offline.py's quick settings for tests: one 32 px copy per image, one process,
# and the flips of the design's recipe (augment.flips: auto would measure them with Lite0
# features at 224 px: ~7 s a call; test_flips_auto tests the measurement).
QUICK_COPIES = ["--copies", "1", "--size", "32", "--workers", "1", "--set", "augment.flips=all"]


def augmented_workdir(tmp_path, counts=None, tests=3):
    """A work directory after ``augment_offline.py`` (one 32 px copy per image, a third
    held out) of a folder dataset, and ``tmp_path/test`` with ``tests`` unlabelled images.

    Returns:
        (the data folder, the work directory as a string)."""
    import augment_offline

    data = make_folder_dataset(tmp_path / "data", counts or {"cat": 6, "dog": 6})
    for i in range(tests):
        write_image(tmp_path / "test" / f"t{i}.png", seed=50 + i)
    work = str(tmp_path / "work")
    augment_offline.main(["--data", str(data), "--workdir", work, *QUICK_COPIES,
                          "--set", "split.val_fraction=0.34"])  # fmt: skip
    return data, work


def png_bomb_header(path, width=30_000, height=30_000):
    """A valid-looking PNG whose header claims width x height pixels (tiny file)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    payload = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    payload += chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b"")
    Path(path).write_bytes(payload)
    return Path(path)


@pytest.fixture
def small_dataset(tmp_path):
    """Three classes of 32 px PNGs: 10, 8 and 6 images."""
    return make_folder_dataset(tmp_path / "data", {"cat": 10, "dog": 8, "fox": 6})
