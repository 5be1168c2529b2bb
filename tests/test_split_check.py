"""A model trained on one split is refused everywhere once the split changes."""

import shutil

import pytest

import augment_offline
import ensemble
import train
from conftest import QUICK_COPIES, make_folder_dataset, write_image
from ripik_clf.__main__ import main as cli_main


@pytest.fixture(scope="module")
def resplit(tmp_path_factory):
    """Head models trained on the seed-42 split, then a new split with seed 7."""
    root = tmp_path_factory.mktemp("resplit")
    data = make_folder_dataset(root / "data", {"a": 6, "b": 6, "c": 6}, size=32)
    write_image(root / "test" / "t0.png", seed=70)
    common = ["--data", str(data), "--workdir", str(root / "work")]
    aug = QUICK_COPIES
    augment_offline.main([*common, *aug])
    train.main([*common, "--phase", "head", "--image-size", "32", "--epochs", "1"])
    for run in ("original", "augmented"):
        run_dir = root / "work" / "runs" / run
        shutil.copy(run_dir / "head.keras", run_dir / "full.keras")
    augment_offline.main([*common, *aug, "--resplit", "--set", "split.seed=7"])
    return root, common


def _one_line_error(capsys, call):
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("model", ["original", "augmented"])
def test_full_phase_refuses_a_head_of_the_old_split(resplit, capsys, model):
    root, common = resplit
    line = _one_line_error(
        capsys,
        lambda: train.main(
            [
                *common,
                "--phase",
                "full",
                "--model",
                model,
                "--set",
                "split.seed=7",
                "--image-size",
                "32",
            ]
        ),  # fmt: skip
    )
    assert line.startswith(f"error: run {model} was trained on another split of the data")
    assert "seed 42 -> 7" in line


def test_ensemble_predict_and_export_refuse_members_of_the_old_split(resplit, capsys):
    root, common = resplit
    seven = ["--set", "split.seed=7"]
    line = _one_line_error(
        capsys,
        lambda: ensemble.main(
            [*common, *seven, "--test", str(root / "test"), "--out", str(root / "sub.csv")]
        ),  # fmt: skip
    )
    assert "run original was trained on another split of the data (seed 42 -> 7)" in line
    assert not (root / "sub.csv").exists()
    workdir = ["--workdir", str(root / "work")]
    line = _one_line_error(
        capsys, lambda: cli_main(["predict", str(root / "test"), *workdir, *seven])
    )
    assert "run original was trained on another split" in line
    line = _one_line_error(
        capsys,
        lambda: cli_main(["export", "augmented", "--format", "savedmodel", *workdir, *seven]),
    )
    assert "run augmented was trained on another split" in line


def test_full_phase_without_a_split_exits_and_makes_none(resplit, capsys, tmp_path):
    """A work directory holding head models but no split: the full phase never makes one
    (a split made now would not be the one the head trained on)."""
    root, _ = resplit
    work = tmp_path / "work"
    shutil.copytree(root / "work" / "runs", work / "runs")
    line = _one_line_error(
        capsys,
        lambda: train.main(
            [
                "--phase",
                "full",
                "--workdir",
                str(work),
                "--data",
                str(root / "data"),
                "--image-size",
                "32",
            ]
        ),  # fmt: skip
    )
    assert line.startswith("error:")
    assert not (work / "splits.csv").exists()


def other_data(root):
    """Data other than the split's, in the spellings a user might type."""
    make_folder_dataset(root / "other", {"a": 2, "b": 2}, size=32)
    yield root / "other"
    yield root / "missing"
    yield root / "test"  # the test folder
    yield root / "data" / "a"  # one of its class folders


def _later_stage(stage, root, data):
    work = ["--workdir", str(root / "work")]
    if stage == "full":
        return train.main, ["--data", str(data), *work, "--phase", "full"]
    if stage == "ensemble":
        out = ["--test", str(root / "test"), "--out", str(root / "s.csv")]
        return ensemble.main, ["--data", str(data), *work, *out]
    return cli_main, ["export", "original", "--format", "tflite", "--set", f"data.path={data}",
                      *work]  # fmt: skip


@pytest.mark.parametrize("stage", ["full", "ensemble", "export"])
def test_a_later_stage_refuses_other_data_than_the_split_was_made_from(resplit, capsys, stage):
    root, _ = resplit
    for data in other_data(root):
        main, argv = _later_stage(stage, root, data)
        line = _one_line_error(capsys, lambda: main(argv))  # noqa: B023 - called at once
        assert line.startswith(f"error: --data {data} is not the data the split in "), line
        assert "drop --data, or pass another --workdir" in line


def test_the_same_data_by_another_spelling_is_the_same(resplit, tmp_path, capsys):
    """A link to the data, or a path through one of its folders: the split's data, so the
    stage goes on (to the refusal of its stale models: the split changed since)."""
    root, _ = resplit
    (tmp_path / "link").symlink_to(root / "data")
    for spelling in (tmp_path / "link", root / "data" / "a" / ".."):
        main, argv = _later_stage("ensemble", root, spelling)
        line = _one_line_error(capsys, lambda: main(argv))  # noqa: B023 - called at once
        assert "is not the data" not in line and "another split" in line, line
