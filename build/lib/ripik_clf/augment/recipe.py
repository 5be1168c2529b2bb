"""Offline augmentation: the reference Albumentations recipe and its pure helpers.

Every copy is a pure function of (source pixels, recipe settings, copy seed), and the
copy seed is a pure function of (global seed, source image id, copy index). That is what
makes reruns, resumed runs and sharded runs byte-identical. The parallel, resumable
runner lives in :mod:`ripik_clf.augment.runner`.
"""

import hashlib
import random
import re

import albumentations as A
import cv2
import numpy as np
import pandas as pd

# Bump when the recipe changes, so old copies on disk are recognised as stale.
RECIPE_VERSION = 1


def flip_transforms(flips):
    """The mirror transforms of a flips mode: none, horizontal, or all (horizontal and
    vertical flip and transpose at p=0.5 each: the 8 orientations, equally likely)."""
    flips = {True: "all", False: "none"}.get(flips, flips)
    if flips == "horizontal":
        return [A.HorizontalFlip(p=0.5)]
    if flips == "all":
        return [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.Transpose(p=0.5)]
    if flips == "none":
        return []
    raise ValueError(
        f"flips must be none, horizontal or all (auto is resolved before), not {flips!r}"
    )


def distortion_group():
    """The recipe's geometric distortions, one of three at p=0.4."""
    return A.OneOf(
        [
            A.OpticalDistortion(distort_limit=0.2),
            A.GridDistortion(num_steps=5, distort_limit=0.2),
            A.ElasticTransform(alpha=30, sigma=6),
        ],
        p=0.4,
    )


def build_recipe(flips="all", distortions=True):
    """The reference recipe's random transforms (the fixed resize happens before them).

    Ported to albumentations 2.x: ``Flip`` became ``HorizontalFlip`` + ``VerticalFlip``,
    ``ShiftScaleRotate`` became ``Affine``, ``ElasticTransform`` lost ``alpha_affine``, and
    ``GaussNoise``/``CoarseDropout`` take ranges relative to the image.

    Args:
        flips: ``all`` (the recipe: both flips and the transpose), ``horizontal`` or
            ``none`` (orientation carries the label: digits, text, arrows); True / False
            are the old names of all / none.
        distortions: False leaves out the optical / grid / elastic group (measured by
            ``benchmarks/distortions.py``).
    """
    return A.Compose(
        flip_transforms(flips)
        + [
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
            A.OneOf(
                [
                    A.MedianBlur(blur_limit=(3, 5)),
                    A.MotionBlur(blur_limit=(3, 7)),
                    A.GaussNoise(std_range=(0.02, 0.08)),
                ],
                p=0.5,
            ),
            *([distortion_group()] if distortions else []),
            A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=20, val_shift_limit=10, p=0.4),
            A.CLAHE(clip_limit=2.0, p=0.2),
            A.Affine(
                translate_percent=(-0.06, 0.06),
                scale=(0.9, 1.1),
                rotate=(-15, 15),
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.6,
            ),  # ShiftScaleRotate's border
            A.CoarseDropout(
                num_holes_range=(1, 4),
                hole_height_range=(0.05, 0.12),
                hole_width_range=(0.05, 0.12),
                fill=0,
                p=0.3,
            ),
        ]
    )


def copy_seed(seed, image_id, copy_index):
    """A 63-bit seed for one copy, independent of run order, worker and shard."""
    digest = hashlib.sha256(f"{seed}|{image_id}|{copy_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def augment_copy(pipeline, image, seed):
    """One augmented copy of ``image`` (uint8 RGB), fully determined by ``seed``.

    Every transform draws from one shared stream seeded here. (``set_random_seed`` would
    instead give each transform its own generator with the *same* seed, so two p=0.5
    flips would always fire together; it also costs ~20% of a 256 px copy.)
    """
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return pipeline(image=image)["image"]


def encode_jpeg(image, quality):
    ok, buffer = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buffer.tobytes()


def _safe_name(text):
    return re.sub(r"[\\/:\x00]", "_", text)


def plan_copies(sources, copies):
    """The manifest of every copy to make: ``source, path, label, copy`` (pure).

    ``path`` is ``<class>/<stem>__aug<k>.jpg`` relative to the augmented folder. Two
    sources of one class with the same stem (``a/x.png`` and ``b/x.jpg``) get a short hash
    of their id appended, so no copy overwrites another.
    """
    sources = sources.sort_values("image", ignore_index=True)
    stems = sources["image"].map(lambda s: _safe_name(s.rsplit("/", 1)[-1].rsplit(".", 1)[0]))
    folders = sources["label"].map(_safe_name)
    clash = pd.Series(list(zip(folders, stems))).duplicated(keep=False)
    tags = [
        f"{stem}__{hashlib.sha1(image.encode()).hexdigest()[:8]}" if clashes else stem
        for stem, image, clashes in zip(stems, sources["image"], clash)
    ]
    rows = [
        (image, f"{folder}/{tag}__aug{k}.jpg", label, k)
        for image, label, folder, tag in zip(sources["image"], sources["label"], folders, tags)
        for k in range(copies)
    ]
    return pd.DataFrame(rows, columns=["source", "path", "label", "copy"])
