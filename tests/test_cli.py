"""The scripts as a user runs them: finetune.py, and an ensemble of different backbones."""

import json

import pandas as pd
import pytest

import augment_offline
import ensemble
import finetune
import train
from conftest import QUICK_COPIES, make_folder_dataset, write_image
from ripik_clf import workdir as wd

pytestmark = pytest.mark.slow  # two trainings each (CI runs them: make test-slow)

SMALL = ["--set", "train.image_size=32", "--set", "train.weights=none", "--set",
         "train.head_epochs=2", "--set", "train.batch_size=8", "--set", "train.full_min_steps=0",
         "--model", "original"]  # fmt: skip


def _workdir(tmp_path):
    data = make_folder_dataset(tmp_path / "data", {"a": 5, "b": 5, "c": 5})
    for i in range(4):
        write_image(tmp_path / "test" / f"t{i}.png", seed=70 + i)
    work = str(tmp_path / "work")
    augment_offline.main(["--data", str(data), "--workdir", work, *QUICK_COPIES])
    return work


def test_finetune_script_runs_the_full_phase_of_a_head(tmp_path):
    work = _workdir(tmp_path)
    train.main(["--phase", "head", "--workdir", work, *SMALL])
    finetune.main(["--workdir", work, "--epochs", "1", "--lr", "1e-5",
                   "--set", "train.full_warmup_epochs=0", *SMALL])  # fmt: skip
    run = wd.run_dir(work, "original")
    assert (run / "full.keras").exists()
    metrics = wd.read_run_metrics(run)
    assert metrics["full"]["epochs"] == 1 and set(metrics) == {"head", "full"}
    assert wd.read_run_record(run).temperature.keys() == {"head", "full"}


def test_members_of_different_backbones_vote_together(tmp_path):
    work = _workdir(tmp_path)
    train.main(["--phase", "head", "--workdir", work, *SMALL])  # efficientnet_lite0
    runs = tmp_path / "work" / "runs"
    # A second backbone is a second run (it used to need a copied folder).
    # ... at its own input size: flags win over --set, so --image-size 48 beats SMALL's 32.
    train.main(["--phase", "head", "--workdir", work, "--backbone", "efficientnetb0",
                "--run", "b0", *SMALL, "--image-size", "48"])  # fmt: skip
    assert wd.read_run_record(runs / "b0").backbone == "efficientnetb0"
    assert wd.read_run_record(runs / "original").backbone == "efficientnet_lite0"
    out = tmp_path / "s.csv"
    ensemble.main(["--workdir", work, "--test", str(tmp_path / "test"), "--out", str(out),
                   "--members", "original:head", "b0:head", "--select", "none",
                   "--tta", "none"])  # fmt: skip
    assert len(pd.read_csv(out)) == 4
    metrics = json.loads((runs.parent / "report" / "metrics.json").read_text())
    assert {"original:head | none", "b0:head | none"} <= set(metrics)
    definition = wd.read_ensemble_definition(work)
    assert [m.name for m in definition.members] == ["original:head", "b0:head"]
    assert [m.image_size for m in definition.members] == [32, 48]
    assert definition.weights == [1.0, 1.0]
