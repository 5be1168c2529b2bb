"""Runs are experiments: named runs of any backbone and size coexist, vote together, are
never overwritten unasked, and are listed by ``python -m ripik_clf runs``."""

import pandas as pd
import pytest

import ensemble
import train
from conftest import make_folder_dataset, write_image
from ripik_clf import workdir as wd
from ripik_clf.cli import main as cli_main
from ripik_clf.report.leaderboard import leaderboard_rows

TINY = ["--weights", "none", "--set", "train.head_epochs=2", "--set", "train.batch_size=8",
        "--set", "train.full_min_steps=0", "--set", "split.val_fraction=0.3"]  # fmt: skip


def _exit_code(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        train.main(argv)
    return stop.value.code, capsys.readouterr().err


@pytest.mark.slow  # five trainings, two backbones (about a minute): make test-slow, CI
def test_two_backbones_at_two_sizes_are_two_runs_that_vote_together(tmp_path, capsys):
    data = make_folder_dataset(tmp_path / "data", {"a": 6, "b": 6, "c": 6})
    for i in range(3):
        write_image(tmp_path / "test" / f"t{i}.png", seed=90 + i)
    work = str(tmp_path / "work")
    common = ["--data", str(data), "--workdir", work, *TINY]
    train.main(["--phase", "head", "--run", "lite", "--image-size", "32", *common])
    train.main(["--phase", "head", "--run", "b0", "--backbone", "efficientnetb0",
                "--image-size", "48", *common])  # fmt: skip
    # The full phase continues each run with its own backbone and size: no flags needed.
    for run in ("lite", "b0"):
        train.main(["--phase", "full", "--run", run, "--workdir", work, "--epochs", "1", *TINY])
    records = {run: wd.read_run_record(wd.run_dir(work, run)) for run in ("lite", "b0")}
    assert (records["lite"].backbone, records["lite"].image_size) == ("efficientnet_lite0", 32)
    assert (records["b0"].backbone, records["b0"].image_size) == ("efficientnetb0", 48)
    assert all((wd.run_dir(work, r) / "full.keras").exists() for r in records)

    out = tmp_path / "s.csv"
    ensemble.main(["--workdir", work, "--test", str(tmp_path / "test"), "--out", str(out),
                   "--members", "lite", "b0", "--select", "none", "--tta", "none"])  # fmt: skip
    assert len(pd.read_csv(out)) == 3
    assert wd.read_ensemble_definition(work).families == ["lite", "b0"]

    # Another backbone in an existing run is refused in one line that names the ways out.
    code, err = _exit_code(["--phase", "head", "--run", "lite", "--backbone",
                            "efficientnetb0", "--image-size", "32", *common], capsys)  # fmt: skip
    assert code == 2 and "--run NAME" in err and "--overwrite" in err and "backbone" in err
    # The same settings again would delete the finished full.keras: refused too ...
    code, err = _exit_code(["--phase", "head", "--run", "lite", "--image-size", "32", *common],
                           capsys)  # fmt: skip
    assert code == 2 and "already has head.keras, full.keras" in err
    assert (wd.run_dir(work, "lite") / "full.keras").exists()
    # ... unless asked for.
    train.main(["--phase", "head", "--run", "lite", "--image-size", "32", "--overwrite", *common])
    assert not (wd.run_dir(work, "lite") / "full.keras").exists()

    capsys.readouterr()
    cli_main.main(["runs", "--workdir", work])
    printed = capsys.readouterr().out
    assert "| lite | head |" in printed and "| b0 | full |" in printed
    table = pd.read_csv(wd.leaderboard_path(work))
    assert set(zip(table["run"], table["phase"])) == {("lite", "head"), ("b0", "head"),
                                                      ("b0", "full")}  # fmt: skip
    assert set(table.loc[table["run"] == "b0", "image_size"]) == {48}


def test_the_runs_table_sorts_by_validation_macro_f1_and_counts_steps():
    record = wd.RunRecord(classes=["a", "b"], image_size=224, backbone="lite", seed=1)
    runs = [
        ("x", record, {"head": {"macro_f1": 0.7, "epochs": 3, "train_images": 100,
                                "seconds": 10.0, "nll": 0.9}}),
        ("y", record, {"full": {"macro_f1": 0.9, "epochs": 2, "train_images": 100,
                                "seconds": 50.0}}),
    ]  # fmt: skip
    rows = leaderboard_rows(runs, batch_size=32)
    assert [(r["run"], r["phase"]) for r in rows] == [("y", "full"), ("x", "head")]
    assert rows[0]["steps"] == 2 * 4 and rows[0]["images_per_s"] == pytest.approx(4.0)
    assert rows[1]["val_nll"] == 0.9 and rows[0]["val_nll"] is None


def test_an_empty_workdir_has_no_runs_table(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli_main.main(["runs", "--workdir", str(tmp_path)])
    assert stop.value.code == 2 and "no runs" in capsys.readouterr().err
