"""A small dataset with known faults, for the audit's test and benchmark.

Four colour classes (red, green, black, yellow) of textured 32 px images, then: a
re-encoded copy of one image filed under another class (label conflict), a re-encoded copy
of one image in the test folder (leak), three images filed under a wrong class (label
errors) and one blank image (outlier).
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "black": (20, 20, 20),
           "yellow": (230, 220, 30)}  # fmt: skip


def textured(seed, colour, size=32):
    """A colour under a random texture: the texture makes every image's hash different,
    the colour makes the class."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    noise = np.asarray(Image.fromarray(base).resize((size, size), Image.BILINEAR), float)
    return (0.3 * noise + 0.7 * np.array(colour)).astype(np.uint8)


def _reencoded(image):
    """The same picture after a JPEG round trip (other bytes, other pixels)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return np.asarray(Image.open(buffer).convert("RGB"))


def make_planted_dataset(root, per_class=24, test_images=8, seed=0):
    """Write ``root/train/<class>/*.png`` and ``root/test/*.png``.

    Returns:
        dict of the planted faults as file paths: ``conflict`` and ``leak`` (pairs),
        ``mislabelled`` (three files), ``blank`` (one file).
    """
    root = Path(root)
    images = {}
    for c, (name, colour) in enumerate(COLOURS.items()):
        for i in range(per_class):
            images[root / "train" / name / f"{name}_{i:02d}.png"] = textured(
                seed * 100_000 + 100 * c + i, colour
            )
    for i in range(test_images):
        name = list(COLOURS)[i % len(COLOURS)]
        images[root / "test" / f"test_{i:02d}.png"] = textured(
            seed * 100_000 + 10_000 + i, COLOURS[name]
        )
    red0, green0 = root / "train/red/red_00.png", root / "train/green/green_00.png"
    conflict = root / "train/black/copy_of_red_00.png"
    leak = root / "test/copy_of_green_00.png"
    images[conflict], images[leak] = _reencoded(images[red0]), _reencoded(images[green0])
    mislabelled = []
    for source, wrong in (("red", "green"), ("black", "yellow"), ("yellow", "red")):
        moved = root / "train" / wrong / f"was_{source}_05.png"
        images[moved] = images.pop(root / "train" / source / f"{source}_05.png")
        mislabelled.append(moved)
    blank = root / "train/yellow/blank.png"
    images[blank] = np.full((32, 32, 3), 128, np.uint8)
    for path, image in images.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    return {"conflict": (red0, conflict), "leak": (green0, leak), "mislabelled": mislabelled,
            "blank": blank}  # fmt: skip


def score_findings(found, planted):
    """How well an audit's findings (``audit.csv`` as a DataFrame) match the planted faults.

    Returns:
        dict: ``recall`` (share of the 6 planted faults found as the right kind),
        ``precision`` (share of findings that involve a planted file), ``missed`` (names).
    """
    resolved = {k: _resolve(v) for k, v in planted.items()}
    involved = {p for v in resolved.values() for p in (v if isinstance(v, tuple | list) else [v])}

    def has(kind, *files):
        rows = found[found["kind"] == kind]
        return any({r.image, r.other_image} >= set(files) for r in rows.itertuples())

    checks = {
        "conflict": has("label conflict", *resolved["conflict"]),
        "leak": has("split leak", *resolved["leak"]),
        "blank": has("outlier", resolved["blank"]),
    }
    checks |= {
        f"mislabelled {Path(m).name}": has("label error", m) for m in resolved["mislabelled"]
    }
    hits = [r.image in involved or r.other_image in involved for r in found.itertuples()]
    return {
        "recall": sum(checks.values()) / len(checks),
        "precision": float(np.mean(hits)) if hits else 0.0,
        "findings": len(found),
        "missed": [name for name, ok in checks.items() if not ok],
    }


def _resolve(value):
    if isinstance(value, tuple | list):
        return type(value)(str(Path(v).resolve()) for v in value)
    return str(Path(value).resolve())
