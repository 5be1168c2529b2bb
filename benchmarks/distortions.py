"""Does the recipe's distortion group (optical / grid / elastic) help or hurt, on this data?

    python benchmarks/distortions.py [--data ../shared/datasets/clothing8/train] [--copies 3]
    python benchmarks/distortions.py --data demo

The same measurement as ``augment.flips: auto`` (:mod:`ripik_clf.augment.flips`): a linear
probe on frozen backbone features, trained on the training split's originals plus
``--copies`` offline copies of each, judged on the validation split's originals by log loss,
macro-F1 and accuracy. Arms: originals only; the recipe as configured (with the distortion
group); the recipe without it. The copies are made exactly as ``augment_offline.py``
makes them (resized to ``augment.size``, copy seeds, JPEG) in a temporary folder.

The split is the pipeline's (``split`` settings of the default config), so validation is
the images every selection of the pipeline sees; the test folder is never read.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "clothing8" / "train"


def make_copies(paths, out_dir, aug, copies, distortions):
    """Write ``copies`` recipe copies of each path; returns their paths (source order)."""
    from ripik_clf.augment import recipe
    from ripik_clf.data.images import read_rgb, resize_square

    pipeline = recipe.build_recipe(aug.flips, distortions=distortions)
    written = []
    for i, path in enumerate(paths):
        image = resize_square(read_rgb(path), aug.size)
        for k in range(copies):
            copy = recipe.augment_copy(pipeline, image, recipe.copy_seed(aug.seed, path, k))
            target = Path(out_dir) / f"{i}_{k}.jpg"
            target.write_bytes(recipe.encode_jpeg(copy, aug.jpeg_quality))
            written.append(str(target))
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="class folders, or 'demo'")
    parser.add_argument("--copies", type=int, default=3, help="copies per training image")
    parser.add_argument(
        "--flips", default="horizontal", help="the copies' flips (none | horizontal | all)"
    )
    args = parser.parse_args()

    from ripik_clf.augment.flips import PROBE_C, _features, _probe_sets
    from ripik_clf.config import load_config
    from ripik_clf.data.dataset import load_dataset
    from ripik_clf.data.splits import load_or_make_splits
    from ripik_clf.train.head import frozen_backbone

    with tempfile.TemporaryDirectory() as tmp:
        data = None if args.data == "demo" else args.data
        config = load_config(None, {"workdir": tmp, "data.path": data, "augment.flips": args.flips})
        dataset, _ = load_dataset(config.data)
        splits = load_or_make_splits(dataset, config.split, tmp)
        train, val = _probe_sets(dataset, splits, config.split.seed)
        _, extractor, size, _ = frozen_backbone(config)
        index = {c: i for i, c in enumerate(sorted(dataset["label"].unique()))}
        train_y = np.array([index[c] for c in train["label"]])
        val_y = np.array([index[c] for c in val["label"]])
        originals = _features(extractor, list(train["path"]), size, views=False)[0]
        val_x = _features(extractor, list(val["path"]), size, views=False)[0]
        arms = {"originals only": (originals, train_y)}
        for name, distortions in (("recipe", True), ("recipe without distortions", False)):
            folder = Path(tmp) / name.replace(" ", "_")
            folder.mkdir()
            paths = make_copies(
                list(train["path"]), folder, config.augment, args.copies, distortions
            )
            copies = _features(extractor, paths, size, views=False)[0]
            arms[name] = (
                np.concatenate([originals, copies]),
                np.concatenate([train_y, np.repeat(train_y, args.copies)]),
            )
        rows = {name: probe_scores(x, y, val_x, val_y, PROBE_C) for name, (x, y) in arms.items()}
    print(
        f"\ndata {args.data}: {len(train)} training images (+{args.copies} copies each, flips "
        f"{args.flips}), {len(val)} validation images, {config.train.backbone} @ {size}"
    )
    print("| arm | val log loss | val macro-F1 | val accuracy |\n|---|---|---|---|")
    for name, s in rows.items():
        print(f"| {name} | {s['log_loss']:.4f} | {s['macro_f1']:.4f} | {s['accuracy']:.4f} |")


def probe_scores(x, y, val_x, val_y, c):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x, y)
    p = probe.predict_proba(val_x)
    predicted = probe.classes_[p.argmax(1)]
    return {
        "log_loss": float(log_loss(val_y, p, labels=probe.classes_)),
        "macro_f1": float(f1_score(val_y, predicted, average="macro")),
        "accuracy": float(accuracy_score(val_y, predicted)),
    }


if __name__ == "__main__":
    main()
