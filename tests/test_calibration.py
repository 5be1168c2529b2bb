"""Temperature scaling: pure functions, recorded per run, applied by predict and export."""

import json

import keras
import numpy as np
import pytest

from ripik_clf.predict.calibration import (
    apply_temperature,
    fit_temperature,
    negative_log_likelihood,
    scaled_model,
)
from ripik_clf.report.metrics import expected_calibration_error


def _overconfident(n=2000, classes=4, seed=0):
    """Labels and probabilities from a model whose logits are 3x too large."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)) * 1.5
    true_p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in true_p])
    sharp = np.exp(3 * logits)
    return labels, sharp / sharp.sum(1, keepdims=True)


def test_apply_temperature_keeps_the_argmax_and_inverts():
    _, p = _overconfident(50)
    softened = apply_temperature(p, 2.5)
    assert (softened.argmax(1) == p.argmax(1)).all()
    np.testing.assert_allclose(softened.sum(1), 1.0)
    assert softened.max(1).mean() < p.max(1).mean()
    np.testing.assert_allclose(apply_temperature(softened, 1 / 2.5), p, atol=1e-9)


def test_fit_temperature_recovers_the_overconfidence_and_lowers_ece():
    labels, p = _overconfident()
    temperature = fit_temperature(p, labels)
    assert temperature == pytest.approx(3.0, rel=0.15)
    calibrated = apply_temperature(p, temperature)
    assert negative_log_likelihood(labels, calibrated) < negative_log_likelihood(labels, p)
    assert expected_calibration_error(labels, calibrated) < 0.5 * expected_calibration_error(
        labels, p
    )


def test_scaled_model_applies_the_temperature_in_the_graph():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(inputs))
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    expected = apply_temperature(model.predict(x, verbose=0), 0.5)
    np.testing.assert_allclose(scaled_model(model, 0.5).predict(x, verbose=0), expected, atol=1e-5)
    assert scaled_model(model, 1.0) is model


@pytest.mark.slow
def test_training_records_a_temperature_and_predict_and_export_use_it(tmp_path, capsys):
    import train
    from conftest import make_folder_dataset, write_image
    from ripik_clf.__main__ import main as cli_main
    from ripik_clf.predict.export import check_export, export_model

    data = make_folder_dataset(tmp_path / "data", {"a": 6, "b": 6, "c": 6}, size=32)
    write_image(tmp_path / "test" / "t.png", seed=99)
    common = ["--data", str(data), "--workdir", str(tmp_path / "work")]
    train.main([*common, "--phase", "probe", "--model", "original", "--weights", "none",
                "--image-size", "32"])  # fmt: skip
    run = tmp_path / "work" / "runs" / "original"
    record = json.loads((run / "run.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())["probe"]
    assert record["temperature"]["probe"] == pytest.approx(metrics["temperature"])
    assert metrics["val_ece_calibrated"] <= metrics["val_ece"] + 1e-9
    # A temperature far from 1, so that using it (or not) shows.
    record["temperature"]["probe"] = 4.0
    (run / "run.json").write_text(json.dumps(record))
    capsys.readouterr()
    cli_main(["predict", str(tmp_path / "test"), "--members", "original:probe", "--json",
              "--workdir", str(tmp_path / "work"), "--top-k", "3"])  # fmt: skip
    top = json.loads(capsys.readouterr().out)["predictions"][0]["top"]
    model = keras.models.load_model(run / "probe.keras")
    from ripik_clf.data.images import load_for_model

    image = load_for_model(tmp_path / "test" / "t.png", 32)[None].astype("float32")
    expected = apply_temperature(model.predict(image, verbose=0), 4.0)[0]
    np.testing.assert_allclose(sorted(t["probability"] for t in top), sorted(expected), atol=1e-5)
    exported = export_model(run / "probe.keras", "savedmodel", tmp_path / "export")
    difference, agreement = check_export(run / "probe.keras", exported, "savedmodel", image)
    assert difference < 1e-5 and agreement == 1.0
    from ripik_clf.predict.export import run_export

    np.testing.assert_allclose(run_export(exported, "savedmodel", image)[0], expected, atol=1e-5)

    # The export carries its preprocessing; `predict --exported` follows it and gives the
    # Keras model's (calibrated) probabilities.
    spec = json.loads((tmp_path / "export" / "original_preprocessing.json").read_text())
    assert spec["input"]["shape"] == [None, 32, 32, 3] and spec["value_range"] == [0, 255]
    assert spec["classes"] == ["a", "b", "c"] and "INTER_AREA" in spec["resize"]
    assert spec["files"] == ["original_savedmodel"]
    capsys.readouterr()
    cli_main(["predict", str(tmp_path / "test"), "--exported", str(exported), "--json",
              "--workdir", str(tmp_path / "work")])  # fmt: skip
    top = json.loads(capsys.readouterr().out)["predictions"][0]["top"]
    np.testing.assert_allclose(sorted(t["probability"] for t in top), sorted(expected), atol=1e-5)
