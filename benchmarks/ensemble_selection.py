"""Ensemble selection on a small validation set: does a rule lose to equal weights?

    python benchmarks/ensemble_selection.py [--trials 300] [--val 111]

Simulated members (softmax of class signal + noise, 80% of the noise shared by all) scored on a
validation set of ``--val`` images (clothing8 has 111) and a test set of 2,000. Per
scenario, the test macro-F1 of each rule minus that of equal weights, mean and median
over the trials, and how often the rule gave one member more than 2/3 of the weight.
Scenarios: two equally good members; one member clearly better (selection should move
weight to it); three members, one weak.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ripik_clf.predict.combiner import SoftVote  # noqa: E402
from ripik_clf.predict.voting import bagged_greedy_selection, greedy_selection  # noqa: E402

CLASSES = 8
SHARED = 0.8  # share of the noise every member has in common
SCENARIOS = {"two equal": (1.6, 1.6), "one better": (2.2, 1.4), "three, one weak": (1.6, 1.6, 0.8)}


def members(signals, y, rng, shared=SHARED):
    """Softmaxes of class signal + noise; ``shared`` of the noise variance is common to
    all members (models of one dataset make correlated mistakes)."""
    common = rng.normal(0, 1, (len(y), CLASSES))
    out = []
    for signal in signals:
        own = rng.normal(0, 1, (len(y), CLASSES))
        logits = np.sqrt(shared) * common + np.sqrt(1 - shared) * own
        logits[np.arange(len(y)), y] += signal
        e = np.exp(logits - logits.max(1, keepdims=True))
        out.append(e / e.sum(1, keepdims=True))
    return np.stack(out)


def f1(y, p):
    return f1_score(y, p.argmax(1), average="macro", labels=range(CLASSES))


def trial(signals, n_val, rng):
    y_val, y_test = rng.integers(0, CLASSES, n_val), rng.integers(0, CLASSES, 2000)
    val, test = members(signals, y_val, rng), members(signals, y_test, rng)
    counts, _ = greedy_selection(val, y_val)
    bagged, _, _ = bagged_greedy_selection(val, y_val, seed=int(rng.integers(1 << 30)))
    base = f1(y_test, SoftVote.equal(len(signals)).vote(test))
    out = {}
    for name, w in (("greedy", counts), ("bagged", bagged)):
        w = np.asarray(w, float)
        out[name] = (f1(y_test, SoftVote(tuple(w)).vote(test)) - base, w.max() / w.sum() > 2 / 3)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--val", type=int, default=111)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"test macro-F1 minus equal weights, {args.trials} trials, {args.val} val images")
    print("| scenario | rule | mean (points) | median (points) | weight > 2/3 on one |")
    print("|---|---|---:|---:|---:|")
    for scenario, signals in SCENARIOS.items():
        results = [trial(signals, args.val, rng) for _ in range(args.trials)]
        for rule in ("greedy", "bagged"):
            gains = np.array([r[rule][0] for r in results]) * 100
            lopsided = np.mean([r[rule][1] for r in results])
            print(
                f"| {scenario} | {rule} | {gains.mean():+.2f} | {np.median(gains):+.2f} "
                f"| {lopsided:.0%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
