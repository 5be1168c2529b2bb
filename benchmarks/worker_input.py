"""Each worker reads its share: decoded images and peak RSS per worker, 1 worker vs 2,
with the images decoded into memory and streamed from files (train.decoded_images).

    python benchmarks/worker_input.py [--sources 20000] [--size 128] [--epochs 2]
    python benchmarks/worker_input.py --full-phase [--images 2000]

Default: the full phase's input pipeline alone (train/datasets.py ``versioned_dataset``,
as the full phase builds it for worker k of N), one process per worker started together,
on generated JPEGs: ``--sources`` training sources of 4 versions each (the original and
3 copies), ``--epochs`` passes; each process reads every step of every epoch and prints
the images it decoded and its peak RSS. Large enough that the decoded versions dominate
a process's memory (20,000 x 2 epochs of 128-px images: 1.9 GiB on one worker).

``--full-phase``: the real thing end to end, ``train.py --phase full`` of the augmented
run on 1 worker and on 2 (TF_CONFIG, localhost ports) after one augment and head, at
32 px: the decoded images each worker reports in its own input line; its peak RSS is
mostly TensorFlow and the model at that size. On one 2-core machine the two workers
share the cores: these tables are about the input work each does, not speed.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from distributed import cluster, finish, run  # noqa: E402

READER = r"""
import json, resource, sys
import numpy as np
from ripik_clf.train.datasets import EpochClock, Share, versioned_dataset
spec = json.load(open(sys.argv[1]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # TensorFlow and the list
clock = EpochClock()
ds = versioned_dataset(spec["versions"], spec["labels"], 4, spec["size"], spec["batch"],
                       seed=1, clock=clock, epochs=spec["epochs"], cache=spec["memory"],
                       desc="input: decode", share=Share(spec["worker"], spec["workers"],
                                                         spec["workers"]))
read = 0
for epoch in range(spec["epochs"]):
    clock.epoch.assign(epoch)
    read += sum(int(x.shape[0]) for x, _ in ds)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("read", read, "peak RSS KiB:", peak, "input KiB:", peak - before)
"""
PEAK_RSS = r"""
import atexit, resource, sys
atexit.register(lambda: print("peak RSS KiB:", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True))
import train
train.main(sys.argv[2:])  # sys.argv[1] is "train.py"
"""  # noqa: E501
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]
DECODED = re.compile(r"images an epoch; ([\d,]+) (?:of [\d,]+ versions decoded|decodes from)")


def write_images(root, count, size=32, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(count):
        label = i % len(COLOURS)
        pixels = np.clip(np.array(COLOURS[label]) + rng.normal(0, 40, (size, size, 3)), 0, 255)
        path = root / f"c{label}" / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)


def write_versions(root, sources, versions, size):
    """``sources`` lists of ``versions`` generated JPEG paths (smooth colours, small
    files), and a label per source."""
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size)[:, None, None]
    out = []
    for s in range(sources):
        folder = root / f"{s // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        group = []
        for v in range(versions):
            colour = rng.integers(0, 256, 3)
            pixels = (ramp * colour + (1 - ramp) * colour[::-1]).repeat(size, axis=1)
            group.append(str(folder / f"{s:06d}_{v}.jpg"))
            Image.fromarray(pixels.astype(np.uint8)).save(group[-1], quality=85)
        out.append(group)
    return out, [s % 4 for s in range(sources)]


def input_benchmark(sources, size, epochs, batch=32):
    """Rows ``(mode, workers, [(decoded, peak RSS MiB) per worker], wall)``."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        versions, labels = write_versions(Path(tmp) / "images", sources, 4, size)
        print(f"{sources * 4:,} images written in {time.perf_counter() - started:.0f} s",
              flush=True)  # fmt: skip
        for mode in ("memory", "files"):
            for workers in (1, 2):
                started, children = time.perf_counter(), []
                for worker in range(workers):
                    spec = Path(tmp) / f"spec{worker}.json"
                    spec.write_text(json.dumps({
                        "versions": versions, "labels": labels, "size": size, "batch": batch,
                        "epochs": epochs, "memory": mode == "memory", "worker": worker,
                        "workers": workers}))  # fmt: skip
                    children.append(run([str(spec)], prefix=["-c", READER]))
                outputs = finish(children)
                rows.append((mode, workers, [_measure(o) for o in outputs],
                             time.perf_counter() - started))  # fmt: skip
                print(rows[-1], flush=True)
    return rows


def _workers(argv, count):
    """``train.py`` children under the peak-RSS wrapper: one, or a cluster."""
    if count == 1:
        return [run(argv, prefix=["-c", PEAK_RSS])]
    return cluster(argv, count, prefix=["-c", PEAK_RSS])


def _measure(output):
    """(decoded images, peak RSS MiB) of one process, from its output: its input line
    (decoded into memory, or decodes from files over all epochs)."""
    decoded = int(DECODED.search(output).group(1).replace(",", ""))
    rss = int(re.search(r"peak RSS KiB: (\d+)", output).group(1)) / 1024
    grown = re.search(r"input KiB: (\d+)", output)  # the input pipeline's own growth
    if grown:
        return decoded, rss, int(grown.group(1)) / 1024
    return decoded, rss


def full_phase_benchmark(images, epochs, copies, batch=32):
    common = ["--model", "augmented", "--set", "train.image_size=32", "--set",
              "train.weights=none", "--set", f"train.batch_size={batch}"]  # fmt: skip
    full = ["train.py", "--phase", "full", *common, "--set", f"train.full_epochs={epochs}",
            "--set", "train.full_min_steps=0", "--set", "train.full_patience=100"]  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data, base = Path(tmp) / "data", Path(tmp) / "base"
        started = time.perf_counter()
        write_images(data, images)
        print(f"{images} images written in {time.perf_counter() - started:.0f} s", flush=True)
        finish([run(["augment_offline.py", "--data", str(data), "--workdir", str(base),
                     "--copies", str(copies), "--size", "32", "--set",
                     "augment.flips=none"])])  # fmt: skip
        finish([run(["train.py", "--phase", "head", "--workdir", str(base), *common,
                         "--set", "train.head_epochs=1"])])  # fmt: skip
        for mode in ("memory", "files"):
            for workers in (1, 2):
                work = Path(tmp) / f"{mode}{workers}"
                shutil.copytree(base, work)
                argv = [*full, "--workdir", str(work), "--set", f"train.decoded_images={mode}"]
                started = time.perf_counter()
                outputs = finish(_workers(argv, workers))
                wall = time.perf_counter() - started
                rows.append((mode, workers, [_measure(o) for o in outputs], wall))
                print(rows[-1], flush=True)
                shutil.rmtree(work)
    return rows


def print_table(rows, title):
    """Per setup: what each worker decoded, its peak RSS and (input pipeline alone) how
    much of that the pipeline added to the process; ratios of one worker's to this."""
    grown = len(rows[0][2][0]) == 3
    print(f"\n{title}, {os.cpu_count()} CPU cores\n")
    print("| input | workers | decoded images per worker | peak RSS MiB per worker "
          + ("| of which the input pipeline, MiB " if grown else "")
          + "| 1 worker / this: decoded | peak RSS " + ("| input pipeline " if grown else "")
          + "| wall s |")  # fmt: skip
    print("|---|---:|---|---" + ("|---" if grown else "") + "|---:|---:"
          + ("|---:" if grown else "") + "|---:|")  # fmt: skip
    by_mode = {}
    for mode, workers, measured, wall in rows:
        columns = list(zip(*measured, strict=True))  # decoded, rss[, grown], per worker
        worst = [max(c) for c in columns]
        one = by_mode.setdefault(mode, worst)
        values = [", ".join(f"{v:,.0f}" for v in c) for c in columns]
        ratios = [f"{a / max(b, 1e-9):.2f}x" for a, b in zip(one, worst, strict=True)]
        print(f"| {mode} | {workers} | {' | '.join(values)} | {' | '.join(ratios)} | "
              f"{wall:.0f} |")  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=20000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--full-phase", action="store_true")
    parser.add_argument("--images", type=int, default=2000, help="--full-phase: photos")
    args = parser.parse_args(argv)
    if args.full_phase:
        rows = full_phase_benchmark(args.images, args.epochs, copies=3)
        title = (f"train.py --phase full, input per worker: {args.images} generated 32-px "
                 f"JPEGs, 4 versions per training source, {args.epochs} epochs")  # fmt: skip
    else:
        rows = input_benchmark(args.sources, args.size, args.epochs)
        title = (f"Full phase input pipeline per worker: {args.sources:,} sources x 4 "
                 f"versions, {args.size} px, {args.epochs} epochs, global batch 32")  # fmt: skip
    print_table(rows, title)


if __name__ == "__main__":
    main()
