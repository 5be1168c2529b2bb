import json
import shutil

import pandas as pd
import pytest
from PIL import Image

import ensemble
from conftest import make_folder_dataset, write_image
from ripik_clf.config import load_config
from ripik_clf.train.phases import train_head


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two members (head-phase models of the same run, copied) and a small test folder."""
    root = tmp_path_factory.mktemp("ens")
    data = make_folder_dataset(root / "data", {"a": 6, "b": 6, "c": 6}, size=32)
    for i in range(4):
        write_image(root / "test" / f"t{i}.png", seed=50 + i)
    write_image(root / "test" / "sub dir" / "nested.jpg", seed=60)
    frames = [Image.new("RGB", (40, 30), colour) for colour in ("red", "blue")]  # animated
    frames[0].save(root / "test" / "anim.gif", save_all=True, append_images=frames[1:])
    config = load_config(
        None,
        {
            "workdir": str(root / "work"),
            "data.path": str(data),
            "train.models": "original",
            "train.image_size": 32,
            "train.head_epochs": 2,
            "train.batch_size": 8,
        },
    )
    train_head(config, "original")
    runs = root / "work" / "runs"
    shutil.copytree(runs / "original", runs / "second")
    for run in ("original", "second"):
        shutil.copy(runs / run / "head.keras", runs / run / "full.keras")
    return root


def run(setup, *extra, out="sub.csv"):
    argv = [
        "--data",
        str(setup / "data"),
        "--workdir",
        str(setup / "work"),
        "--test",
        str(setup / "test"),
        "--out",
        str(setup / out),
        "--members",
        "original",
        "second",
        *extra,
    ]
    ensemble.main(argv)


def test_submission_probabilities_and_report(setup):
    run(setup, "--tta", "flip")
    submission = pd.read_csv(setup / "sub.csv")
    assert list(submission.columns) == ["image_id", "label"]
    assert submission["image_id"].tolist() == sorted(
        ["anim.gif", "t0.png", "t1.png", "t2.png", "t3.png", "sub dir/nested.jpg"]
    )
    assert set(submission["label"]) <= {"a", "b", "c"}
    probabilities = pd.read_csv(setup / "sub_probabilities.csv")
    assert list(probabilities.columns) == ["image_id", "a", "b", "c"]
    assert (probabilities[["a", "b", "c"]].sum(axis=1).round(6) == 1).all()
    report = setup / "work" / "report"
    for name in (
        "reliability.png",
        "hardest.png",
        "confusion_soft_ensemble.png",
        "confusion_original.png",
    ):
        with Image.open(report / name) as image:
            assert image.format == "PNG" and image.size[0] > 200
    text = (report / "report.md").read_text()
    assert "| soft ensemble | flip |" in text and "| hard ensemble | none |" in text
    calibration = text.split("## Calibration (validation)")[1].split("##")[0]
    row = next(r for r in calibration.splitlines() if r.startswith("| soft ensemble |"))
    nll_before, nll_after = map(float, row.split("|")[3:5])
    assert nll_after <= nll_before + 1e-9  # the ensemble's temperature minimises it here


def _fails(setup, capsys, *extra, out="sub.csv"):
    with pytest.raises(SystemExit) as exit_info:
        run(setup, *extra, out=out)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def one_model_twice(setup):
    """Two member names for one model file, in every spelling a member has."""
    model = setup / "work" / "runs" / "original" / "full.keras"
    yield ["original", "original"]
    yield ["original", "original:full"]
    yield ["original:head", "second", "original:head"]
    yield ["original", str(model)]
    yield [str(model), str(model.parent / ".." / "original" / "full.keras")]


def test_one_model_named_twice_is_refused(setup, capsys):
    for members in one_model_twice(setup):
        line = _fails(setup, capsys, "--members", *members, out="twice.csv")
        assert line.startswith("error: members ") and "are one model" in line, (members, line)
        assert "name it once" in line
    assert not (setup / "twice.csv").exists()


def test_bad_inputs(setup, capsys, tmp_path):
    assert "output folder does not exist" in _fails(setup, capsys, out="nowhere/sub.csv")
    (setup / "a_folder").mkdir(exist_ok=True)
    assert "is a folder: name the submission file" in _fails(setup, capsys, out="a_folder")
    assert "3 weights given for 2 members" in _fails(setup, capsys, "--weights", "1", "2", "3")
    assert "no trained model at" in _fails(setup, capsys, "--members", "nothing")
    (tmp_path / "fake.keras").write_text("not a model")
    shutil.copy(setup / "work" / "runs" / "original" / "run.json", tmp_path / "run.json")
    assert "fake.keras is not a Keras model file (a .keras file is a zip archive" in _fails(
        setup, capsys, "--members", str(tmp_path / "fake.keras")
    )
    import pickle

    (tmp_path / "pickled.keras").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    shutil.copy(tmp_path / "run.json", tmp_path / "run.json.bak")
    assert "pickled.keras is not a Keras model file" in _fails(
        setup, capsys, "--members", str(tmp_path / "pickled.keras")
    )
    (tmp_path / "empty").mkdir()
    assert "holds no image files" in _fails(setup, capsys, "--test", str(tmp_path / "empty"))
    missing = str(tmp_path / "no_answers.csv")
    assert "answer key " + missing + " not found" in _fails(setup, capsys, "--answers", missing)
    key = tmp_path / "key.csv"
    pd.DataFrame({"image_id": ["other.png"], "label": ["a"]}).to_csv(key, index=False)
    assert "labels none of the 6 test images" in _fails(setup, capsys, "--answers", str(key))
    unreadable = tmp_path / "unreadable"
    for i in range(2):
        (unreadable / f"{i}.png").parent.mkdir(exist_ok=True)
        (unreadable / f"{i}.png").write_bytes(b"not a png")
    message = _fails(setup, capsys, "--test", str(unreadable), "--on-bad-image", "skip",
                     out="all_bad.csv")  # fmt: skip
    assert "none of the 2 test images" in message and "all_bad_skipped.csv" in message
    assert not (setup / "all_bad.csv").exists()


def test_side_files_are_named_after_the_submission(setup):
    """Two submissions in one folder keep their own probabilities."""
    run(setup, "--tta", "none", out="one.csv")
    run(setup, "--tta", "flip", out="two.csv")
    one, two = (pd.read_csv(setup / f"{n}_probabilities.csv") for n in ("one", "two"))
    assert len(one) == len(two) == len(pd.read_csv(setup / "one.csv"))
    assert not (setup / "probabilities.csv").exists()


def test_members_must_agree(setup, capsys):
    record_path = setup / "work" / "runs" / "second" / "run.json"
    record = json.loads(record_path.read_text())
    try:
        record_path.write_text(json.dumps(dict(record, classes=["a", "b", "d"])))
        assert "different class lists: c, d" in _fails(setup, capsys)
        record_path.write_text(json.dumps(dict(record, image_size=64)))
        # Members may differ in size, but a record must match its own model.
        assert "takes 32 px images but its run.json says 64 px" in _fails(setup, capsys)
    finally:
        record_path.write_text(json.dumps(record))


@pytest.mark.slow
def test_unreadable_test_image_fails_or_is_skipped(setup, capsys):
    bad = setup / "test" / "broken.jpg"
    bad.write_text("not an image")
    try:
        assert "broken.jpg cannot be read" in _fails(setup, capsys, out="sub2.csv")
        assert not (setup / "sub2.csv").exists()
        run(setup, "--on-bad-image", "skip", out="sub3.csv")
        assert "broken.jpg" not in set(pd.read_csv(setup / "sub3.csv")["image_id"])
        assert len(pd.read_csv(setup / "sub3.csv")) == 6
        assert "broken.jpg" in pd.read_csv(setup / "sub3_skipped.csv")["path"].iloc[0]
        assert "skipped 1 unreadable test image" in capsys.readouterr().out
    finally:
        bad.unlink()


@pytest.mark.slow
def test_greedy_selection_and_adaptive_tta(setup, capsys):
    run(setup, "--tta", "flip", "--select", "greedy", "--tta-threshold", "auto", out="g.csv")
    out = capsys.readouterr().out
    assert "greedy selection:" in out and "Adaptive TTA: threshold" in out
    text = (setup / "work" / "report" / "report.md").read_text()
    assert "Greedy selection (Caruana et al., 2004; no check against noise) chose:" in text
    assert "| soft ensemble | flip |" in text  # the greedy ensemble: the one submitted

    def probabilities(*extra):
        run(setup, *extra, out="p.csv")
        return pd.read_csv(setup / "p_probabilities.csv").drop(columns="image_id").to_numpy()

    full = probabilities("--tta", "flip")
    plain = probabilities("--tta", "none")
    assert abs(probabilities("--tta", "flip", "--tta-threshold", "1") - full).max() < 1e-6
    assert abs(probabilities("--tta", "flip", "--tta-threshold", "0") - plain).max() < 1e-6


def test_adaptive_needs_tta(setup, capsys):
    message = _fails(setup, capsys, "--tta", "none", "--tta-threshold", "0.5")
    assert "ensemble.tta_threshold" in message and "off when ensemble.tta is none" in message


def _cli(setup, *argv):
    from ripik_clf.__main__ import main

    main([*argv, "--workdir", str(setup / "work"), "--set", f"data.path={setup / 'data'}",
          "--set", "train.models=original"])  # fmt: skip


def test_predict_command(setup, capsys):
    _cli(setup, "predict", str(setup / "test"), "--top-k", "2")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6 and all(line.count(",") == 1 for line in lines)
    _cli(setup, "predict", str(setup / "test" / "t0.png"), "--json", "--tta", "flip")
    result = json.loads(capsys.readouterr().out)
    top = result["predictions"][0]["top"]
    assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"]
    assert {t["class"] for t in top} == {"a", "b", "c"}
    with pytest.raises(SystemExit):
        _cli(setup, "predict", str(setup / "missing.png"))
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(
    "fmt,quantize", [("savedmodel", "none"), ("tflite", "float16"), ("onnx", "none")]
)
def test_export_round_trips(setup, capsys, fmt, quantize):
    _cli(setup, "export", "original", "--format", fmt, "--quantize", quantize,
         "--out", str(setup / "export"))  # fmt: skip
    out = capsys.readouterr().out
    agreement = float(out.split("arg-max agreement ")[1].split("%")[0])
    assert agreement >= 99.5  # below that the command itself fails
    difference = float(out.split("max |p - p_keras| = ")[1].split(",")[0])
    assert difference < (1e-4 if quantize == "none" else 5e-2)
    assert json.loads((setup / "export" / "original_classes.json").read_text()) == ["a", "b", "c"]
    spec = json.loads((setup / "export" / "original_preprocessing.json").read_text())
    assert fmt in spec["formats"]


def test_export_errors(setup, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tf2onnx", None)  # as if not installed
    for argv, message in [
        (["export", "original", "--format", "onnx"], "needs the packages tf2onnx"),
        (["export", "original", "--format", "pdf"], "unknown export format 'pdf'"),
        (["export", "ghost", "--format", "tflite"], "no trained model for run 'ghost'"),
        (
            ["export", "original", "--format", "savedmodel", "--quantize", "float16"],
            "applies to tflite only",
        ),
    ]:
        with pytest.raises(SystemExit):
            _cli(setup, *argv)
        assert message in capsys.readouterr().err


def test_a_full_disk_while_writing_the_submission_is_one_line(setup, capsys, monkeypatch):
    import errno
    import os

    def full_disk(self, path, *args, **kwargs):
        with open(path, "w") as handle:
            handle.write("image_id,la")  # what a full disk leaves
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    line = _fails(setup, capsys, out="full.csv")
    assert line == f"error: cannot write {setup / 'full.csv'}: No space left on device"
    assert not (setup / "full.csv").exists()
    assert not [p for p in setup.iterdir() if ".tmp-" in p.name]


@pytest.mark.slow  # 24 s; the shard mechanism's fast test: test_shards (features)
def test_shards_fill_the_prediction_cache_and_the_merge_predicts_nothing(
    setup, capsys, monkeypatch, tmp_path
):
    """``ensemble.py --shard I/N`` on N machines (validation and test shares, every TTA),
    then ``ensemble.py``: the submission one machine makes, and no model runs in the merge."""
    import ripik_clf.predict.cache as cache_module

    work = tmp_path / "work"
    shutil.copytree(setup / "work", work)
    shutil.rmtree(work / "predictions", ignore_errors=True)  # what other tests cached

    def ensemble_run(*extra, out):
        argv = ["--data", str(setup / "data"), "--workdir", str(work), "--test",
                str(setup / "test"), "--out", str(tmp_path / out), "--members", "original",
                "second", "--tta", "flip", "--tta-threshold", "auto", *extra]  # fmt: skip
        ensemble.main(argv)
        return capsys.readouterr().out

    whole = ensemble_run(out="whole.csv")
    shutil.rmtree(work / "predictions")
    for i in (1, 2):
        ensemble_run("--shard", f"{i}/2", out="merged.csv")
    assert not (tmp_path / "merged.csv").exists()  # a shard writes only the cache
    entries = list((work / "predictions").rglob("*.npz"))
    # 2 members x (18 x 0.2 validation + 6 test images) x 2 TTA modes, one each
    assert len(entries) == len({p.name + p.parent.parent.name for p in entries}) > 0

    def no_model(*args, **kwargs):
        raise AssertionError("the merge ran a model")

    monkeypatch.setattr(cache_module, "predict_members", no_model)
    merged = ensemble_run(out="merged.csv")
    assert " 0 predicted now" in merged and " 0 predicted now" not in whole
    assert (tmp_path / "merged.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "merged_probabilities.csv"),
        pd.read_csv(tmp_path / "whole_probabilities.csv"),
    )


@pytest.mark.slow  # the class's fast tests: tests/test_publication.py
@pytest.mark.parametrize("side", ["probabilities", "submission"])
def test_an_output_that_cannot_be_written_leaves_the_previous_set_whole(setup, capsys, side):
    """A side file that is a folder once left a new submission beside the old
    ensemble.json: now nothing of the new set is published, so the submission, its
    probabilities and the record predict follows still agree."""
    from ripik_clf import workdir as wd
    from ripik_clf.predict.ensemble import Ensemble

    out = setup / "whole.csv"
    run(setup, "--tta", "none", "--on-bad-image", "skip", out="whole.csv")
    before = {p: p.read_bytes() for p in (out, wd.beside_submission(out, "probabilities"),
                                          wd.ensemble_definition_path(setup / "work"))}  # fmt: skip
    blocker = out if side == "submission" else wd.beside_submission(out, side)
    saved = blocker.read_bytes() if blocker.exists() else None
    blocker.unlink(missing_ok=True)
    blocker.mkdir()
    try:
        line = _fails(setup, capsys, "--tta", "flip", "--on-bad-image", "skip", out="whole.csv")
    finally:
        blocker.rmdir()
        if saved is not None:
            blocker.write_bytes(saved)
    assert "is a folder" in line
    assert {p: p.read_bytes() for p in before} == before  # the old set, untouched
    assert not list(setup.glob(".*.staged")) and not list((setup / "work").rglob(".*.staged"))
    ensemble = Ensemble.load(setup / "work")
    assert ensemble.definition.tta == "none"  # the record of the submission on disk
