"""How well `python -m ripik_clf audit` finds planted faults: precision and recall.

Builds the planted dataset (ripik_clf/audit/planted.py: a label conflict, a train/test
leak, three wrong labels, a blank image) with several seeds, audits each as a user would
(the CLI, a fresh work directory) and prints one row per run.

    python benchmarks/audit.py [--seeds 3] [--backbones none@32 imagenet@64]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ripik_clf.__main__ import main as cli_main  # noqa: E402
from ripik_clf.audit.planted import make_planted_dataset, score_findings  # noqa: E402


def audit_once(root, seed, weights, size):
    planted = make_planted_dataset(root / "data", seed=seed)
    started = time.perf_counter()
    cli_main(
        [
            "audit",
            "--data",
            str(root / "data/train"),
            "--test",
            str(root / "data/test"),
            "--workdir",
            str(root / "work"),
            "--set",
            f"train.weights={weights}",
            "--set",
            f"train.image_size={size}",
        ]  # fmt: skip
    )
    seconds = time.perf_counter() - started
    found = pd.read_csv(root / "work/audit/audit.csv", keep_default_na=False)
    return score_findings(found, planted) | {"seconds": seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--backbones", nargs="+", default=["none@32", "imagenet@64"])
    args = parser.parse_args(argv)
    rows = []
    for spec in args.backbones:
        weights, size = spec.split("@")
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                score = audit_once(Path(tmp), seed, weights, int(size))
            rows.append({"features": spec, "seed": seed, **score})
    table = pd.DataFrame(rows)
    print()
    print("| features | seed | recall | precision | findings | missed | seconds |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for r in table.itertuples():
        print(
            f"| lite0 {r.features} | {r.seed} | {r.recall:.2f} | {r.precision:.2f} | "
            f"{r.findings} | {', '.join(r.missed) or '-'} | {r.seconds:.1f} |"
        )
    print(f"\nall runs: recall {table.recall.mean():.3f}, precision {table.precision.mean():.3f}")


if __name__ == "__main__":
    main()
