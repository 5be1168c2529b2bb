"""Two submissions on the same answer key: is A better than B, worse, or within noise?

    python benchmarks/compare.py A.csv B.csv --answers test_labels.csv

Both submissions as ``ensemble.py`` writes them (``image_id,label``); the key as a data
set's ``test_labels.csv``. Prints both accuracies and macro-F1, the paired difference in
accuracy (A - B) with its 95% paired-bootstrap interval, the exact McNemar p-value on the
images exactly one of them gets right, and a last line starting with ``better``, ``worse``
or ``within noise`` (A against B): better or worse when McNemar's p < 0.05.

One run a side measures the test images' noise, not the training run's: two seeds of one
configuration differed by 1.3 points on aerial21 and 2.3 on flowers5 (McNemar p = 0.002,
p < 0.0001; benchmarks/RESULTS.md), so a single pair can call a seed "better". With other
runs of either side (another ``train.seed``: ``--also-a A2.csv ...``, ``--also-b B2.csv
...``) the verdict comes from a two-level bootstrap instead, resampling the runs of each
side and the test images (better or worse when its 95% interval excludes 0); it also
prints how far apart the runs of one side are. Few runs understate the runs' spread:
three a side or more.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ALPHA = 0.05


def read_labels(path, ids, id_col="image_id", label_col="label"):
    """A submission's labels in the order of ``ids``; every id must be there."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str)
    except (OSError, ValueError) as err:
        sys.exit(f"cannot read {path}: {err}")
    if not {id_col, label_col} <= set(table.columns):
        sys.exit(f"{path} needs columns {id_col},{label_col} (has {', '.join(table.columns)})")
    labels = table.drop_duplicates(id_col).set_index(id_col)[label_col]
    missing = [i for i in ids if i not in labels.index]
    if missing:
        sys.exit(f"{path} has no row for {len(missing)} answer-key images, e.g. {missing[0]}")
    return labels.loc[ids].to_numpy()


def compare(truth, a, b):
    """Paired comparison of two label arrays against ``truth`` (pure): a dict with both
    accuracies and macro-F1, the difference, its 95% interval, McNemar's p and the verdict."""
    from scipy.stats import binomtest
    from sklearn.metrics import accuracy_score, f1_score

    from ripik_clf.evidence import paired_interval

    right_a, right_b = a == truth, b == truth
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    diff, low, high = paired_interval(right_a.astype(float) - right_b, level=0.95)
    labels = sorted(set(truth))
    verdict = "within noise"
    if p < ALPHA:
        verdict = "better" if only_a > only_b else "worse"
    return {
        "n": len(truth),
        "accuracy": (accuracy_score(truth, a), accuracy_score(truth, b)),
        "macro_f1": tuple(
            f1_score(truth, x, labels=labels, average="macro", zero_division=0) for x in (a, b)
        ),
        "difference": diff,
        "interval": (low, high),
        "only_a": only_a,
        "only_b": only_b,
        "mcnemar_p": float(p),
        "verdict": verdict,
    }


def compare_runs(truth, runs_a, runs_b, boots=2000, seed=0):
    """Two sides of several runs each (label arrays) on the same answer key (pure): the
    mean accuracy of each side, their difference with a 95% interval from resampling
    runs within each side and test images together, the largest gap between two runs of
    one side, and the verdict."""
    right_a = np.array([a == truth for a in runs_a], dtype=float)
    right_b = np.array([b == truth for b in runs_b], dtype=float)
    rng = np.random.default_rng(seed)
    n = len(truth)
    diffs = np.empty(boots)
    for k in range(boots):
        images = rng.integers(0, n, n)
        pick_a = right_a[rng.integers(0, len(right_a), len(right_a))]
        pick_b = right_b[rng.integers(0, len(right_b), len(right_b))]
        diffs[k] = pick_a[:, images].mean() - pick_b[:, images].mean()
    low, high = np.percentile(diffs, [2.5, 97.5])
    verdict = "better" if low > 0 else "worse" if high < 0 else "within noise"
    run_accuracy = [r.mean(axis=1) for r in (right_a, right_b)]
    return {
        "n": n,
        "runs": (len(right_a), len(right_b)),
        "run_accuracy": run_accuracy,
        "accuracy": tuple(float(r.mean()) for r in run_accuracy),
        "difference": float(right_a.mean() - right_b.mean()),
        "interval": (float(low), float(high)),
        "run_gap": max(float(np.ptp(r)) for r in run_accuracy),
        "verdict": verdict,
    }


def print_runs(r):
    print(f"images: {r['n']}; runs: A {r['runs'][0]}, B {r['runs'][1]}")
    for name, accs, mean in zip(("A", "B"), r["run_accuracy"], r["accuracy"]):
        each = ", ".join(f"{x:.4f}" for x in accs)
        print(f"{name}: mean accuracy {mean:.4f} (runs: {each})")
    low, high = r["interval"]
    print(f"A - B accuracy: {r['difference']:+.4f} (95% two-level bootstrap, runs and "
          f"images: [{low:+.4f}, {high:+.4f}])")  # fmt: skip
    print(f"largest gap between two runs of one side: {r['run_gap']:.4f}")
    sides = "includes" if r["verdict"] == "within noise" else "excludes"
    print(f"{r['verdict']} (A against B, the 95% interval {sides} 0)")


def main():
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="submission A (the change)")
    parser.add_argument("b", type=Path, help="submission B (the baseline)")
    parser.add_argument("--answers", type=Path, required=True, help="image_id,label answer key")
    parser.add_argument("--also-a", type=Path, nargs="+", default=[], metavar="CSV",
                        help="other runs of A (another train.seed)")  # fmt: skip
    parser.add_argument("--also-b", type=Path, nargs="+", default=[], metavar="CSV",
                        help="other runs of B (another train.seed)")  # fmt: skip
    args = parser.parse_args()
    key = pd.read_csv(args.answers, dtype=str)
    ids, truth = list(key["image_id"]), key["label"].to_numpy()
    if args.also_a or args.also_b:
        runs_a = [read_labels(p, ids) for p in [args.a, *args.also_a]]
        runs_b = [read_labels(p, ids) for p in [args.b, *args.also_b]]
        return print_runs(compare_runs(truth, runs_a, runs_b))
    r = compare(truth, read_labels(args.a, ids), read_labels(args.b, ids))
    print(f"images: {r['n']}")
    for name, acc, f1 in zip(("A", "B"), r["accuracy"], r["macro_f1"]):
        print(f"{name}: accuracy {acc:.4f}  macro-F1 {f1:.4f}")
    low, high = r["interval"]
    print(
        f"A - B accuracy: {r['difference']:+.4f} (95% paired bootstrap [{low:+.4f}, {high:+.4f}])"
    )
    print(f"only A right: {r['only_a']}, only B right: {r['only_b']}; "
          f"exact McNemar p = {r['mcnemar_p']:.4f}")  # fmt: skip
    print("one run a side: the test images' noise only, not the training seed's "
          "(--also-a / --also-b: other runs)")  # fmt: skip
    print(f"{r['verdict']} (A against B, McNemar p {'<' if r['mcnemar_p'] < ALPHA else '>='} "
          f"{ALPHA})")  # fmt: skip


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # the reader went away (``| head``): nothing left to say
        sys.stderr.close()
