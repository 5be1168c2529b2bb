"""benchmarks/compare.py: known answers for one run a side and for several runs a side."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from compare import compare, compare_runs  # noqa: E402

RUN_SPREAD = 0.012  # accuracy sd between training seeds, about aerial21's (1.3 points apart)


def runs(rng, ease, shift, count):
    """``count`` training runs of one configuration: each image right with its ease,
    moved by the run's own luck (a seed) and by the configuration's ``shift``."""
    return [
        np.where(rng.random(len(ease)) < ease + rng.normal(0, RUN_SPREAD) + shift, 0, 1)
        for _ in range(count)
    ]


def verdicts(shift, count, draws=30, images=800):
    rng = np.random.default_rng(7)
    several, single = [], []
    for draw in range(draws):
        ease, truth = rng.beta(8, 1, images), np.zeros(images, int)
        a, b = runs(rng, ease, shift, count), runs(rng, ease, 0, count)
        several.append(compare_runs(truth, a, b, boots=400, seed=draw)["verdict"])
        single.append(compare(truth, a[0], b[0])["verdict"])
    return several, single


def test_equal_configurations_stay_within_noise_with_runs_a_side():
    several, single = verdicts(shift=0.0, count=3)
    assert several.count("within noise") >= 0.9 * len(several)
    # one run a side calls seed luck a difference more often: why --also-a/-b exist
    assert single.count("within noise") < several.count("within noise")


def test_a_clearly_better_configuration_is_found():
    several, _ = verdicts(shift=0.08, count=3)  # about +6 points: easy images saturate
    assert several.count("better") >= 0.9 * len(several)


def test_one_run_a_side_keeps_mcnemar():
    truth = np.zeros(200, int)
    a, b = truth.copy(), truth.copy()
    b[:30] = 1  # A right on 30 images B gets wrong, never the other way
    r = compare(truth, a, b)
    assert r["verdict"] == "better" and (r["only_a"], r["only_b"]) == (30, 0)
    assert compare(truth, b, a)["verdict"] == "worse"


def _write(path, ids, labels):
    pd.DataFrame({"image_id": ids, "label": labels}).to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("also", [[], ["--also-b"]])
def test_command_line_ends_with_the_verdict(tmp_path, also):
    ids = [f"{k}.jpg" for k in range(100)]
    truth = ["cat"] * 50 + ["dog"] * 50
    wrong = ["dog"] * 20 + ["cat"] * 80  # 30 % right
    key = _write(tmp_path / "key.csv", ids, truth)
    a = _write(tmp_path / "a.csv", ids, truth)
    b = _write(tmp_path / "b.csv", ids, wrong)
    extra = [*also, _write(tmp_path / "b2.csv", ids, wrong)] if also else []
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare.py"), a, b, "--answers", key, *extra],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert out.stdout.strip().splitlines()[-1].startswith("better")
    assert ("runs: A 1, B 2" in out.stdout) == bool(also)
