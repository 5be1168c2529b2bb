"""Prediction speed: our streaming pipeline from JPEG files vs in-memory tensors, and TTA cost.

    python benchmarks/ensemble.py [--images 1080] [--repeats 3]

Uses the demo's trained `augmented` model when `make demo` has run and the size matches,
else a fresh EfficientNet-Lite0 classifier (weights do not change speed). The test images are
the demo's test digits written as JPEG files (repeated to --images files). Variants run
interleaved; the table shows medians. The quality table (members, soft vs hard, TTA on/off,
validation and test) is WORKDIR/report/report.md, written by `make demo`.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ripik_clf  # noqa: E402,F401  (quiet TensorFlow before it loads)

BATCH = 32


def member(image_size):
    from ripik_clf.predict.members import Member
    from ripik_clf.workdir import read_run_record

    trained = REPO / "work" / "demo" / "runs" / "augmented" / "full.keras"
    record = read_run_record(trained.parent)
    if trained.exists() and record and record.image_size == image_size:
        import keras

        model = keras.models.load_model(trained)
        return Member("augmented (demo)", trained, list(range(10)), image_size, model)
    from ripik_clf.models.classifier import build_classifier
    from ripik_clf.models.registry import create_backbone

    model = build_classifier(create_backbone("efficientnet_lite0", image_size=image_size), 10, 0.2)
    return Member("lite0 (untrained head)", Path("-"), list(range(10)), image_size, model)


def write_jpegs(folder, count):
    from PIL import Image

    from ripik_clf.data.demo import ensure_demo_data

    sources = sorted(ensure_demo_data(REPO / "data" / "demo")["test"].glob("*.png"))
    paths = []
    for i in range(count):
        path = folder / f"img_{i:05d}.jpg"
        Image.open(sources[i % len(sources)]).save(path, quality=95)
        paths.append(str(path))
    return paths


def in_memory(m, images):
    started = time.perf_counter()
    for i in range(0, len(images), BATCH):
        m.model.predict_on_batch(images[i : i + BATCH])
    return time.perf_counter() - started


def ours(m, paths, tta):
    from ripik_clf.predict.members import predict_members

    started = time.perf_counter()
    predict_members([m], paths, tta, BATCH)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1080)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()

    from ripik_clf.data.images import load_for_model

    m = member(args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(Path(tmp), args.images)
        images = np.stack([load_for_model(p, args.image_size) for p in paths]).astype("float32")
        ours(m, paths[:BATCH], "d4")  # trace every batch shape once before timing
        in_memory(m, images[:BATCH])
        times = {
            "in-memory tensors, no TTA": [],
            "ours from JPEG, no TTA": [],
            "ours from JPEG, flip TTA": [],
            "ours from JPEG, d4 TTA": [],
        }
        for _ in range(args.repeats):
            times["in-memory tensors, no TTA"].append(in_memory(m, images))
            for tta in ("none", "flip", "d4"):
                times[f"ours from JPEG, {tta if tta != 'none' else 'no'} TTA"].append(
                    ours(m, paths, tta)
                )
    median = {k: float(np.median(v)) for k, v in times.items()}
    base, none = median["in-memory tensors, no TTA"], median["ours from JPEG, no TTA"]
    print(
        f"\nPrediction, {m.name}, {args.images} JPEG images at {args.image_size} px, "
        f"batch {BATCH}, median of {args.repeats} interleaved runs\n"
    )
    print("| variant | seconds | images/s | vs in-memory | cost vs no TTA |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds in median.items():
        print(
            f"| {name} | {seconds:.2f} | {args.images / seconds:.0f} | {base / seconds:.0%} "
            f"| {seconds / none:.2f}x |"
        )


if __name__ == "__main__":
    main()
