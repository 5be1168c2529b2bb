"""One ensemble (members and weights) behind the submission and every table."""

import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import ensemble
from ripik_clf import workdir as wd
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
    blue"): equal weights follow the constant members, greedy selection does not."""
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
    definition = wd.read_ensemble_definition(root / "work")
    temperatures = {m.name: m.temperatures for m in definition.members}
    members = []
    for name in ("original", "constant", "constant2"):
        run = root / "work" / "runs" / name
        p = keras.models.load_model(run / "full.keras").predict(images, verbose=0)
        members.append(apply_temperature(p, temperatures[name]["none"]))
    expected = apply_temperature(soft_vote(members, [1, 0, 0]), definition.temperature)
    written = pd.read_csv(root / "sub_probabilities.csv").set_index("image_id")
    np.testing.assert_allclose(written.loc[[f.name for f in files]].to_numpy(), expected, atol=1e-5)


def test_member_temperatures_are_shown_not_voted(two_members, tmp_path):
    """Each member's temperature is fitted under the TTA it is used with and shown in the
    report's calibration table; the vote uses the softmaxes as they are (recorded T = 1),
    so a member perfect on validation is not sharpened into a hard vote."""
    root = two_members
    work = tmp_path / "work"
    shutil.copytree(root / "work", work)
    ensemble.main(["--data", str(root / "data"), "--workdir", str(work),
                   "--test", str(root / "test"), "--out", str(tmp_path / "sub.csv"),
                   "--members", "original", "constant", "--member-weights", "1", "1",
                   "--tta", "flip"])  # fmt: skip
    definition = wd.read_ensemble_definition(work)
    for member in definition.members:
        assert member.temperatures == {"none": 1.0, "flip": 1.0}
    # By hand: the mean softmax of each validation image and its mirror image.
    splits = pd.read_csv(work / "splits.csv")
    val = splits[splits["split"] == "val"]
    images = np.stack([load_for_model(root / "data" / i, 32) for i in val["image"]])
    model = keras.models.load_model(work / "runs" / "original" / "full.keras")
    flipped = (model.predict(images, verbose=0) + model.predict(images[:, :, ::-1], verbose=0)) / 2
    labels = [list(COLOURS).index(label) for label in val["label"]]
    shown = f"| original | {fit_temperature(flipped, labels):.2f} |"
    assert shown in (work / "report" / "report.md").read_text()
    # The submission is the plain weighted mean of the softmaxes (its own T on top).
    files = sorted((root / "test").iterdir())
    test = np.stack([load_for_model(f, 32) for f in files]).astype("float32")
    members = []
    for name in ("original", "constant"):
        m = keras.models.load_model(work / "runs" / name / "full.keras")
        members.append((m.predict(test, verbose=0) + m.predict(test[:, :, ::-1], verbose=0)) / 2)
    submitted = pd.read_csv(tmp_path / "sub.csv").set_index("image_id")["label"]
    expected = [list(COLOURS)[k] for k in soft_vote(members).argmax(1)]
    assert [submitted[f.name] for f in files] == expected


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


@pytest.mark.slow  # 30 s; fast siblings: test_ensemble_run's predict, the API test below
def test_predict_and_the_python_api_use_the_submitted_ensemble(two_members, tmp_path, capsys):
    """Greedy keeps the good member alone; the equal-weight vote of the three (what
    predict used to do) says "blue" everywhere, so agreeing with the submission is not luck."""
    from ripik_clf import Ensemble
    from ripik_clf.cli.main import main as cli
    from ripik_clf.errors import UserError

    root, work, out = two_members, tmp_path / "work", tmp_path / "sub.csv"
    shutil.copytree(root / "work", work)
    ensemble.main(["--data", str(root / "data"), "--workdir", str(work), "--test",
                   str(root / "test"), "--out", str(out), "--members", "original", "constant",
                   "constant2", "--tta", "flip", "--select", "greedy"])  # fmt: skip
    submitted = pd.read_csv(out).set_index("image_id")["label"]
    written = pd.read_csv(tmp_path / "sub_probabilities.csv").set_index("image_id")
    capsys.readouterr()

    def predicted(*flags):
        cli(["predict", str(root / "test"), "--json", "--workdir", str(work), *flags])
        rows = json.loads(capsys.readouterr().out)["predictions"]
        return {Path(r["image"]).name: r["top"][0]["class"] for r in rows}

    assert predicted() == submitted.to_dict()
    assert set(predicted("--members", "original", "constant", "constant2").values()) == {"blue"}

    # The Python API: files and arrays, the submission's labels and probabilities.
    files = sorted((root / "test").iterdir())
    loaded = Ensemble.load(work)
    by_folder = loaded.predict(root / "test")
    assert by_folder.labels == [submitted[f.name] for f in files]
    np.testing.assert_allclose(
        by_folder.probabilities, written.loc[[f.name for f in files]].to_numpy(), atol=1e-5
    )
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    by_array = loaded.predict(arrays)
    assert by_array.labels == by_folder.labels
    np.testing.assert_allclose(by_array.probabilities, by_folder.probabilities, atol=1e-5)
    with pytest.raises(UserError, match="uint8 RGB"):
        loaded.predict([arrays[0].astype("float32")])

    # A member retrained after the submission is no longer the submitted ensemble.
    model = work / "runs" / "original" / "full.keras"
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 10**9))
    with pytest.raises(UserError, match="changed after the ensemble was made"):
        Ensemble.load(work)


@pytest.fixture(scope="module")
def flip_submission(two_members, tmp_path_factory):
    """The good member with two-stage flip TTA (threshold 0.9), submitted."""
    root, tmp = two_members, tmp_path_factory.mktemp("flip_submission")
    work = tmp / "work"
    shutil.copytree(root / "work", work)
    ensemble.main(["--data", str(root / "data"), "--workdir", str(work), "--test",
                   str(root / "test"), "--out", str(tmp / "sub.csv"), "--members", "original",
                   "constant", "--tta", "flip", "--select", "greedy",
                   "--set", "ensemble.tta_threshold=0.9"])  # fmt: skip
    return work, pd.read_csv(tmp / "sub.csv").set_index("image_id")["label"]


@pytest.mark.parametrize(
    "fmt", [pytest.param(f, marks=pytest.mark.slow) for f in ("savedmodel", "tflite", "onnx")],
)  # fmt: skip
def test_the_exported_ensemble_is_the_submitted_one(two_members, flip_submission, fmt, capsys):
    from ripik_clf.cli.main import main as cli

    work, submitted = flip_submission
    out = work.parent / f"export_{fmt}"
    capsys.readouterr()
    cli(["export", "--ensemble", "--format", fmt, "--workdir", str(work), "--out", str(out)])
    printed = capsys.readouterr().out
    difference = float(printed.split("max |p - p_keras| = ")[1].split(",")[0])
    assert difference < 1e-4, printed
    assert "agreement 100.00%" in printed
    (target,) = [p for p in out.iterdir() if p.name.startswith("ensemble") and "." not in p.name
                 or p.suffix in (".tflite", ".onnx")]  # fmt: skip
    cli(["predict", str(two_members / "test"), "--exported", str(target), "--json"])
    rows = json.loads(capsys.readouterr().out)["predictions"]
    assert {Path(r["image"]).name: r["top"][0]["class"] for r in rows} == submitted.to_dict()


def test_the_python_api_takes_every_kind_of_image_and_fails_per_item(two_members, tmp_path):
    """Paths, folders, arrays, PIL images and bytes, mixed in one list, give the labels
    the files give; an input that cannot be predicted gets None and its reason, and the
    rest of the batch is predicted."""
    from ripik_clf import Ensemble
    from ripik_clf.errors import UserError

    root, work = two_members, tmp_path / "work"
    shutil.copytree(root / "work", work)
    ensemble.main(["--data", str(root / "data"), "--workdir", str(work), "--test",
                   str(root / "test"), "--out", str(tmp_path / "sub.csv"), "--members",
                   "original", "--tta", "none"])  # fmt: skip
    loaded = Ensemble.load(work)
    files = sorted((root / "test").iterdir())
    expected = loaded.predict(files).labels
    image = Image.open(files[1])
    mixed = [
        files[0], np.asarray(image.convert("RGB")), image, files[2].read_bytes(),
        str(files[3]), tmp_path / "missing.png", np.zeros((4, 4, 3), "float32"), 5,
        b"not an image",
    ]  # fmt: skip
    result = loaded.predict(mixed)
    assert result.labels[:5] == [expected[0], expected[1], expected[1], expected[2], expected[3]]
    assert result.labels[5:] == [None] * 4 and np.isnan(result.probabilities[5:]).all()
    reasons = dict(result.failures)
    assert reasons[str(tmp_path / "missing.png")] == "not found"
    assert "uint8 RGB" in reasons["input 6"] and "int" in reasons["input 7"]
    assert "not an image file" in reasons["input 8"]
    for bad in (None, 5, []):
        with pytest.raises(UserError):
            loaded.predict(bad)
    for size in (0, -1, 2.5, True):
        with pytest.raises(UserError, match="batch_size"):
            loaded.predict(files, batch_size=size)
