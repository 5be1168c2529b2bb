"""Offline augmentation: the naive notebook loop vs ours (1 worker, all workers).

    python benchmarks/augment.py [--sizes 200 800] [--copies 14] [--image-size 256] [--repeats 3]

The naive way, as the reference notebook did it: one process builds the pipeline, reads
every image into a list, augments into another list, then writes the files. Ours:
``augment_offline.py``'s runner (streaming, one task per source image).

Each variant runs in a fresh subprocess on the same generated JPEGs; peak memory is the
largest total resident memory of that process and all its workers, sampled every 50 ms.
Prints one table.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def make_sources(root, count, size=384):
    """``count`` photo-like JPEGs (smooth colour fields plus noise) in two classes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        base = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(base).resize((size, size), Image.BICUBIC), np.int16)
        image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
        path = root / f"class_{i % 2}" / f"img_{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path, quality=90)


def naive(data, out, copies, size):
    import albumentations as A
    import cv2

    from ripik_clf.augment.recipe import build_recipe

    pipeline = A.Compose([A.Resize(size, size), *build_recipe(flips=True).transforms])
    started = time.perf_counter()
    paths = sorted(data.rglob("*.jpg"))
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    augmented = []
    for path, image in zip(paths, images):
        for k in range(copies):
            augmented.append((path, k, pipeline(image=image)["image"]))
    for path, k, image in augmented:
        target = out / path.parent.name / f"{path.stem}__aug{k}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return len(augmented), time.perf_counter() - started


def ours(data, out, copies, size, workers):
    from ripik_clf.augment.runner import run_augmentation
    from ripik_clf.config import load_config
    from ripik_clf.data.dataset import discover
    from ripik_clf.data.splits import make_splits

    config = load_config(
        None,
        {
            "workdir": str(out),
            "augment.copies": copies,
            "augment.size": size,
            "augment.workers": workers,
        },
    )
    dataset, skipped = discover(data)
    splits = make_splits(dataset, config.split)
    splits["split"] = "train"  # augment every source, as the naive loop does
    started = time.perf_counter()
    written = run_augmentation(config, dataset, splits, skipped)["written"]
    return written, time.perf_counter() - started


def run_one(variant, data, out, copies, size):
    """Time the work itself (imports and start-up excluded for both)."""
    if variant == "naive":
        written, seconds = naive(data, out, copies, size)
    else:
        written, seconds = ours(data, out, copies, size, workers=int(variant.split("-")[1]))
    print(json.dumps({"written": written, "seconds": seconds}))


def _tree_rss_mb(root_pid):
    """Resident memory of a process and all its descendants (workers, forkserver)."""
    parent_of, rss = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parent_of[pid], rss[pid] = int(fields[1]), int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        children = [p for p, parent in parent_of.items() if parent in frontier]
        tree.update(children)
        frontier = children
    return sum(rss.get(p, 0) for p in tree) / 2**20


def measure(variant, data, copies, size):
    """Run one variant in a fresh process; sample its whole process tree's memory."""
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--one",
                variant,
                str(data),
                out,
                "--copies",
                str(copies),
                "--image-size",
                str(size),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _tree_rss_mb(proc.pid))
            time.sleep(0.05)
        stdout = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"{variant} failed with exit code {proc.returncode}")
    return dict(json.loads(stdout.strip().splitlines()[-1]), peak_mb=peak)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 800])
    parser.add_argument("--copies", type=int, default=14)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        variant, data, out = args.one
        return run_one(variant, Path(data), Path(out), args.copies, args.image_size)

    cores = os.cpu_count()
    variants = ["naive", "ours-1", f"ours-{cores}"]
    rate, peak = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            data = Path(tmp) / f"src{n}"
            make_sources(data, n)
            runs = {v: [] for v in variants}
            for rep in range(args.repeats):  # interleaved, so drift hits every variant alike
                for variant in variants:
                    r = measure(variant, data, args.copies, args.image_size)
                    runs[variant].append(r)
                    print(
                        f"  {n} sources, {variant}, run {rep + 1}: "
                        f"{r['written'] / r['seconds']:.1f} img/s, {r['peak_mb']:.0f} MB peak",
                        file=sys.stderr,
                    )
            for variant, results in runs.items():
                rate[n, variant] = float(np.median([r["written"] / r["seconds"] for r in results]))
                peak[n, variant] = max(r["peak_mb"] for r in results)
    print(
        f"\nOffline augmentation, {args.copies} copies/image at {args.image_size} px, "
        f"{cores} cores; images/s = copies written per second, median of {args.repeats} "
        "interleaved runs; peak MB = largest resident memory of the process tree\n"
    )
    print("| sources | variant | images/s | vs naive | peak MB |")
    print("|---:|---|---:|---:|---:|")
    for n in args.sizes:
        for v in variants:
            print(
                f"| {n} | {v} | {rate[n, v]:.1f} | {rate[n, v] / rate[n, 'naive']:.2f}x "
                f"| {peak[n, v]:.0f} |"
            )
    small, large = args.sizes[0], args.sizes[-1]
    print(
        f"\nspeed-up 1 -> {cores} workers: "
        + ", ".join(
            f"{n} sources {rate[n, variants[2]] / rate[n, 'ours-1']:.2f}x" for n in args.sizes
        )
    )
    print(
        f"peak memory {large} / {small} sources: "
        + ", ".join(f"{v} {peak[large, v] / peak[small, v]:.2f}x" for v in variants)
    )


if __name__ == "__main__":
    main()
