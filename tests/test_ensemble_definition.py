"""One ensemble (members and weights) behind the submission and every table."""

import json
import shutil

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import ensemble
from ripik_clf.config import load_config
from ripik_clf.data.images import load_for_model
from ripik_clf.predict.calibration import apply_temperature, fit_temperature
from ripik_clf.predict.voting import soft_vote
from ripik_clf.train.phases import train_head

COLOURS = {"blue": (0, 0, 220), "green": (0, 200, 0), "red": (220, 0, 0)}


def _noisy(path, colour, seed):
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, (32, 32, 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def two_members(tmp_path_factory):
    """A head model that tells colours apart, and two confident constant ones ("always
    blue"): equal weights follow the constant members, greedy selection does not.

    Two of them, because each member is calibrated first: the good member (perfect on
    validation) is sharpened, and one constant member alone no longer outvotes it."""
    root = tmp_path_factory.mktemp("definition")
    answers = []
    for k, (label, colour) in enumerate(COLOURS.items()):
        for i in range(8):
            _noisy(root / "data" / label / f"{i}.png", colour, 100 * k + i)
        for i in range(3):
            _noisy(root / "test" / f"{label}{i}.png", colour, 1000 + 100 * k + i)
            answers.append((f"{label}{i}.png", label))
    pd.DataFrame(answers, columns=["image_id", "label"]).to_csv(root / "answers.csv", index=False)
    config = load_config(None, {
        "workdir": str(root / "work"), "data.path": str(root / "data"),
        "train.models": "original", "train.image_size": 32, "train.head_epochs": 40,
        "train.head_lr": 0.01, "train.batch_size": 8,
    })  # fmt: skip
    train_head(config, "original")
    runs = root / "work" / "runs"
    shutil.copytree(runs / "original", runs / "constant")
    shutil.copy(runs / "original" / "head.keras", runs / "original" / "full.keras")
    model = keras.models.load_model(runs / "original" / "head.keras")
    kernel, bias = model.get_layer("classifier").get_weights()
    # Logit 80: still ~0.97 "blue" after the largest temperature calibration may fit
    # (20), so calibrating it cannot hide how bad it is.
    model.get_layer("classifier").set_weights([kernel * 0, np.array([80.0, 0.0, 0.0])])
    model.save(runs / "constant" / "full.keras")
    shutil.copytree(runs / "constant", runs / "constant2")
    return root


def test_report_and_submission_use_the_chosen_weights(two_members, capsys):
    root = two_members
    ensemble.main(["--data", str(root / "data"), "--workdir", str(root / "work"),
                   "--test", str(root / "test"), "--out", str(root / "sub.csv"),
                   "--members", "original", "constant", "constant2", "--tta", "none",
                   "--select", "greedy", "--answers", str(root / "answers.csv")])  # fmt: skip
    assert "greedy selection: original x1 (" in capsys.readouterr().out
    metrics = json.loads((root / "work" / "report" / "metrics.json").read_text())

    # Validation: the "soft ensemble" row is the greedy ensemble (= original alone here),
    # not the equal-weight average, which the constant members dominate.
    assert metrics["soft ensemble | none"]["macro_f1"] == metrics["original | none"]["macro_f1"]
    equal = metrics["soft, equal weights | none"]["macro_f1"]
    assert equal < metrics["soft ensemble | none"]["macro_f1"]  # the weighting matters

    # Test: the reported ensemble scores exactly what the submission holds.
    truth = pd.read_csv(root / "answers.csv").set_index("image_id")["label"]
    submitted = pd.read_csv(root / "sub.csv").set_index("image_id")["label"]
    accuracy = float((submitted == truth[submitted.index]).mean())
    assert metrics["test: soft ensemble"]["accuracy"] == pytest.approx(accuracy)

    # And the probabilities are the weighted vote of the members, recomputed by hand,
    # with the temperatures the ensemble recorded.
    files = sorted((root / "test").iterdir())
    images = np.stack([load_for_model(f, 32) for f in files]).astype("float32")
    definition = json.loads((root / "work" / "report" / "ensemble.json").read_text())
    members = []
    for name in ("original", "constant", "constant2"):
        run = root / "work" / "runs" / name
        p = keras.models.load_model(run / "full.keras").predict(images, verbose=0)
        members.append(apply_temperature(p, definition["member_temperatures"][name]["none"]))
    expected = apply_temperature(soft_vote(members, [1, 0, 0]), definition["temperature"])
    written = pd.read_csv(root / "probabilities.csv").set_index("image_id")
    np.testing.assert_allclose(written.loc[[f.name for f in files]].to_numpy(), expected, atol=1e-5)


def test_member_temperatures_are_fitted_under_the_tta_they_are_used_with(two_members, tmp_path):
    root = two_members
    ensemble.main(["--data", str(root / "data"), "--workdir", str(root / "work"),
                   "--test", str(root / "test"), "--out", str(tmp_path / "sub.csv"),
                   "--members", "original", "--tta", "flip"])  # fmt: skip
    definition = json.loads((root / "work" / "report" / "ensemble.json").read_text())
    # By hand: the mean softmax of each validation image and its mirror image.
    splits = pd.read_csv(root / "work" / "splits.csv")
    val = splits[splits["split"] == "val"]
    images = np.stack([load_for_model(root / "data" / i, 32) for i in val["image"]])
    model = keras.models.load_model(root / "work" / "runs" / "original" / "full.keras")
    flipped = (model.predict(images, verbose=0) + model.predict(images[:, :, ::-1], verbose=0)) / 2
    labels = [list(COLOURS).index(label) for label in val["label"]]
    expected = fit_temperature(flipped, labels)
    assert definition["member_temperatures"]["original"]["flip"] == pytest.approx(
        expected, rel=1e-3
    )
    # The temperature without TTA is fitted apart (and used for plain predictions).
    assert set(definition["member_temperatures"]["original"]) == {"none", "flip"}


@pytest.mark.slow
def test_member_weights_change_the_submission_and_the_old_flag_still_works(
    two_members, tmp_path, capsys
):
    work = tmp_path / "work"
    shutil.copytree(two_members / "work", work)  # the fixture's report stays as it is
    common = ["--data", str(two_members / "data"), "--workdir", str(work), "--tta", "none",
              "--test", str(two_members / "test"),
              "--members", "original", "constant", "constant2"]  # fmt: skip
    ensemble.main([*common, "--out", str(tmp_path / "a.csv"), "--member-weights", "1", "0", "0"])
    ensemble.main([*common, "--out", str(tmp_path / "b.csv"), "--weights", "0", "1", "1"])
    assert "note: --weights is now --member-weights" in capsys.readouterr().err
    first = pd.read_csv(tmp_path / "a.csv")["label"]
    second = pd.read_csv(tmp_path / "b.csv")["label"]
    assert set(second) == {"blue"}  # the constant members alone
    assert set(first) == set(COLOURS)  # the good member alone tells the colours apart
