"""The probe member: train.py --phase probe writes probe.keras, a classifier model whose
outputs are the scikit-learn probe's, and it can join the ensemble as NAME:probe."""

import json

import numpy as np
import pandas as pd
import pytest

import augment_offline
import ensemble
import train
from conftest import QUICK_COPIES, make_folder_dataset, write_image
from ripik_clf.models.probe import fit_probe, probe_as_dense


@pytest.mark.parametrize("classes", [2, 3])
def test_probe_folds_into_one_dense_layer(classes):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(classes), 12)
    features = rng.normal(size=(len(labels), 5)) * [1, 10, 0.1, 3, 1] + labels[:, None]
    probe = fit_probe(features, labels, folds=3)
    kernel, bias = probe_as_dense(probe)
    logits = features @ kernel + bias
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    np.testing.assert_allclose(softmax, probe.predict_proba(features), atol=1e-5)


def test_probe_phase_and_a_probe_member_in_the_ensemble(tmp_path):
    data = make_folder_dataset(tmp_path / "data", {"a": 6, "b": 6, "c": 6}, size=32)
    for i in range(3):
        write_image(tmp_path / "test" / f"t{i}.png", seed=90 + i)
    common = ["--data", str(data), "--workdir", str(tmp_path / "work")]
    small = ["--weights", "none", "--image-size", "32"]
    augment_offline.main([*common, *QUICK_COPIES])
    train.main([*common, *small, "--phase", "probe", "--model", "augmented"])
    run = tmp_path / "work" / "runs" / "augmented"
    metrics = json.loads((run / "metrics.json").read_text())["probe"]
    assert metrics["train_images"] == 2 * 15  # 15 training images and their copies
    assert (run / "probe.keras").exists() and not (run / "head.keras").exists()
    out = tmp_path / "sub.csv"
    ensemble.main(
        [
            *common,
            "--test",
            str(tmp_path / "test"),
            "--out",
            str(out),
            "--members",
            "augmented:probe",
            "--select",
            "none",
        ]  # fmt: skip
    )
    assert len(pd.read_csv(out)) == 3
    assert "augmented:probe" in (tmp_path / "work" / "report" / "report.md").read_text()
