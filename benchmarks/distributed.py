"""The full phase on 1 worker, 2 workers (TF_CONFIG, localhost ports) and MirroredStrategy
over 2 logical CPU devices, at one fixed global batch: training images/s per setup and how
far each model is from the one worker's.

    python benchmarks/training.py --workers      # (calls this module)
    python benchmarks/distributed.py [--epochs 2] [--image-size 64] [--global-batch 32]

On the demo digits (the `original` run's training split), EfficientNet-Lite0, after one
head phase shared by every setup. On a machine with one CPU the workers share its cores:
the table then shows that the setups train the same model (correctness) and what the
collectives cost, not a speed-up; on N machines or GPUs it shows the scaling.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

TWO_CPUS = r"""
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import train
train.main(sys.argv[1:])
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run(argv, env=None, prefix=()):
    """A Python child in the repository (output captured), e.g. ``train.py ...``."""
    environ = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    out = subprocess.PIPE
    return subprocess.Popen([sys.executable, *prefix, *argv], cwd=REPO, env=environ, stdout=out,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def finish(children):
    """Their outputs; a child that failed ends the benchmark with its output."""
    outputs = [c.communicate()[0] for c in children]
    for child, output in zip(children, outputs):
        if child.returncode != 0:
            sys.exit(f"a training process failed:\n{output[-3000:]}")
    return outputs


def _setups(global_batch):
    """(name, replicas, per-replica batch, how to start it); train.batch_size is the
    global batch in every setup (each replica takes its share)."""
    half = global_batch // 2
    return [
        ("1 worker", 1, global_batch, lambda argv: [run(argv)]),
        ("2 workers (TF_CONFIG, localhost)", 2, half, lambda argv: cluster(argv)),
        ("MirroredStrategy, 2 logical CPUs", 2, half,
         lambda argv: [run([*argv[1:], "--set", "train.distribute=mirrored"],
                            prefix=["-c", TWO_CPUS])]),
    ]  # fmt: skip


def cluster(argv, workers=2, prefix=()):
    """``workers`` children on localhost ports, each with its TF_CONFIG."""
    ports = [f"localhost:{_free_port()}" for _ in range(workers)]
    return [
        run(argv, {"TF_CONFIG": json.dumps({"cluster": {"worker": ports},
                                            "task": {"type": "worker", "index": i}})}, prefix)
        for i in range(workers)
    ]  # fmt: skip


def benchmark(epochs, image_size, global_batch):
    from kill_cases import fingerprint_of_model

    from ripik_clf import workdir as wd

    common = ["--config", "configs/demo.yaml", "--model", "original", "--set",
              f"train.image_size={image_size}"]  # fmt: skip
    full = ["train.py", "--phase", "full", *common, "--set", f"train.full_epochs={epochs}",
            "--set", "train.full_min_steps=0", "--set", "train.full_warmup_epochs=0",
            "--set", "train.ema=false", "--set", "train.full_start=head",
            "--set", "train.full_patience=100",
            # No random block drops or dropout: replicas draw their own masks, and the
            # weight column is meant to show the same training, not the same statistics.
            "--set", "train.stochastic_depth=0", "--set", "train.dropout=0"]  # fmt: skip
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "head"
        finish([run(["train.py", "--phase", "head", *common, "--workdir", str(base)])])
        for name, replicas, batch, start in _setups(global_batch):
            work = Path(tmp) / name.split()[0] / "work"
            shutil.copytree(base, work, dirs_exist_ok=True)
            argv = [*full, "--workdir", str(work), "--set", f"train.batch_size={global_batch}"]
            started = time.perf_counter()
            finish(start(argv))
            wall = time.perf_counter() - started
            folder = wd.run_dir(work, "original")
            metrics = wd.read_run_metrics(folder)["full"]
            weights = fingerprint_of_model(folder / "full.keras")
            reference = reference or weights
            difference = max(float(abs(a - b).max()) for a, b in zip(weights, reference))
            rate = metrics["train_images"] * metrics["epochs"] / metrics["seconds"]
            rows.append((name, replicas, batch, metrics, rate, wall, difference))
    return rows


def _device():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return ", ".join(tf.config.experimental.get_device_details(g).get("device_name", "GPU")
                         for g in gpus)  # fmt: skip
    return f"CPU ({os.cpu_count()} cores)"


def print_table(rows, epochs, image_size, global_batch):
    print(f"\nFull phase, demo digits at {image_size} px, {epochs} epochs, global batch "
          f"{global_batch}, efficientnet_lite0, on {_device()}\n")  # fmt: skip
    print(
        "| setup | replicas | batch per replica | train seconds | images/s | vs 1 worker "
        "| wall s (with start-up) | max abs weight diff vs 1 worker | val macro-F1 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = rows[0][4]
    for name, replicas, batch, m, rate, wall, diff in rows:
        print(f"| {name} | {replicas} | {batch} | {m['seconds']:.1f} | {rate:.1f} | "
              f"{rate / base:.2f}x | {wall:.0f} | {diff:.1e} | {m['macro_f1']:.4f} |")  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--global-batch", type=int, default=32)
    args = parser.parse_args(argv)
    rows = benchmark(args.epochs, args.image_size, args.global_batch)
    print_table(rows, args.epochs, args.image_size, args.global_batch)


if __name__ == "__main__":
    main()
