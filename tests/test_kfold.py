import json
import shutil

import pandas as pd
import pytest

import ensemble
import train
from conftest import make_folder_dataset, write_image
from ripik_clf.__main__ import main as cli_main
from ripik_clf.augment.runner import run_augmentation
from ripik_clf.config import load_config
from ripik_clf.data.dataset import load_dataset
from ripik_clf.data.splits import load_or_make_splits
from ripik_clf.train.phases import model_data, train_head

FOLDS = 3


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    """A 3-fold split, one augmented copy per image, and a head model per fold."""
    root = tmp_path_factory.mktemp("kfold")
    data = make_folder_dataset(root / "data", {"a": 6, "b": 6, "c": 6}, size=32)
    for i in range(3):
        write_image(root / "test" / f"t{i}.png", seed=80 + i)
    config = load_config(None, {
        "workdir": str(root / "work"), "data.path": str(data), "split.folds": FOLDS,
        "augment.copies": 1, "augment.size": 32, "augment.workers": 1,
        "train.models": "augmented", "train.image_size": 32, "train.head_epochs": 2,
        "train.batch_size": 8,
    })  # fmt: skip
    dataset, skipped = load_dataset(config.data)
    splits = load_or_make_splits(dataset, config.split, config.workdir)
    run_augmentation(config, dataset, splits, skipped)
    for fold in range(FOLDS):
        train_head(config, "augmented", fold=fold)
        run = root / "work" / "runs" / f"augmented_fold{fold}"
        shutil.copy(run / "head.keras", run / "full.keras")  # stands in for the full phase
    return root, config


def _stem(path):
    folder, name = path.rsplit("/", 2)[-2:]
    return f"{folder}/{name.split('__aug')[0].rsplit('.', 1)[0]}"


def test_folds_never_train_on_their_validation_images_or_copies(folded):
    _, config = folded
    seen = []
    for fold in range(FOLDS):
        data = model_data(config, "augmented", fold=fold)
        val = {_stem(p) for p in data.val_paths}
        assert not val & {_stem(p) for p in data.train_paths}
        seen += sorted(val)
    assert len(seen) == len(set(seen)) == 18  # the folds cover every image once


def test_out_of_fold_report_covers_every_image_once(folded):
    root, _ = folded
    ensemble.main(["--data", str(root / "data"), "--workdir", str(root / "work"),
                   "--set", "split.folds=3", "--set", "train.models=augmented",
                   "--test", str(root / "test"), "--out", str(root / "sub.csv"),
                   "--tta", "none"])  # fmt: skip
    metrics = json.loads((root / "work" / "report" / "metrics.json").read_text())
    assert metrics["augmented | none"]["n"] == 18
    assert len(pd.read_csv(root / "sub.csv")) == 3


def test_mixing_fold_and_plain_models_needs_allow_mixed(folded, capsys):
    root, _ = folded
    runs = root / "work" / "runs"
    shutil.copytree(runs / "augmented_fold0", runs / "plain", dirs_exist_ok=True)
    record = json.loads((runs / "plain" / "run.json").read_text())
    (runs / "plain" / "run.json").write_text(json.dumps(dict(record, fold=None)))
    argv = ["--data", str(root / "data"), "--workdir", str(root / "work"), "--set",
            "split.folds=3", "--test", str(root / "test"), "--out", str(root / "mixed.csv"),
            "--tta", "none", "--members", "augmented_fold0", "augmented_fold1",
            "augmented_fold2", "plain"]  # fmt: skip
    with pytest.raises(SystemExit):
        ensemble.main(argv)
    assert "mixing needs --allow-mixed" in capsys.readouterr().err
    ensemble.main([*argv, "--allow-mixed"])
    assert len(pd.read_csv(root / "mixed.csv")) == 3
    # "plain" trained on folds 1 and 2: it is scored only on fold 0, the images it held
    # out, and so is everyone else (never on a member's training images).
    metrics = json.loads((root / "work" / "report" / "metrics.json").read_text())
    fold0 = len(record["held_out"])
    assert fold0 == 6 and metrics["plain | none"]["n"] == fold0
    assert metrics["augmented | none"]["n"] == fold0
    assert "every member held out" in (root / "work" / "report" / "report.md").read_text()


def test_two_kfold_runs_of_one_variant_vote_as_two_families(folded):
    """A second k-fold run of the same data variant (another backbone, say: ``--run
    second``) is its own family, named on the command line without its folds."""
    root, _ = folded
    runs = root / "work" / "runs"
    for fold in range(FOLDS):
        shutil.copytree(runs / f"augmented_fold{fold}", runs / f"second_fold{fold}",
                        dirs_exist_ok=True)  # fmt: skip
    ensemble.main(["--data", str(root / "data"), "--workdir", str(root / "work"),
                   "--set", "split.folds=3", "--test", str(root / "test"),
                   "--out", str(root / "two.csv"), "--tta", "none", "--select", "none",
                   "--members", "augmented", "second"])  # fmt: skip
    metrics = json.loads((root / "work" / "report" / "metrics.json").read_text())
    assert metrics["augmented | none"]["n"] == metrics["second | none"]["n"] == 18
    definition = json.loads((root / "work" / "report" / "ensemble.json").read_text())
    assert definition["families"] == ["augmented", "second"]
    assert len(definition["members"]) == 2 * FOLDS


def test_a_run_name_that_is_both_a_run_and_a_kfold_run_is_refused(folded, capsys):
    """``--members augmented`` with runs/augmented/ beside augmented_fold0.. is never
    resolved by guessing (a stale single-split run used to win silently)."""
    root, _ = folded
    runs = root / "work" / "runs"
    shutil.copytree(runs / "augmented_fold0", runs / "augmented", dirs_exist_ok=True)
    try:
        with pytest.raises(SystemExit):
            ensemble.main(["--data", str(root / "data"), "--workdir", str(root / "work"),
                           "--set", "split.folds=3", "--test", str(root / "test"),
                           "--out", str(root / "amb.csv"), "--tta", "none",
                           "--members", "augmented"])  # fmt: skip
    finally:
        shutil.rmtree(runs / "augmented")  # the module's other tests share this workdir
    assert "member 'augmented' is ambiguous" in capsys.readouterr().err
    assert not (root / "amb.csv").exists()


def test_members_with_no_common_held_out_image_are_refused(folded, capsys):
    root, _ = folded
    runs = root / "work" / "runs"
    for name, fold in (("only0", 0), ("only1", 1)):
        shutil.copytree(runs / f"augmented_fold{fold}", runs / name, dirs_exist_ok=True)
        record = json.loads((runs / name / "run.json").read_text())
        (runs / name / "run.json").write_text(json.dumps(dict(record, fold=None)))
    with pytest.raises(SystemExit):
        ensemble.main(["--data", str(root / "data"), "--workdir", str(root / "work"),
                       "--set", "split.folds=3", "--test", str(root / "test"),
                       "--out", str(root / "none.csv"), "--tta", "none", "--allow-mixed",
                       "--members", "only0", "only1"])  # fmt: skip
    assert "no image is held out by every member" in capsys.readouterr().err
    assert not (root / "none.csv").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--fold", "5", "--set", "split.folds=3"], "fold 5 is out of range"),
        # the workdir records its 3-fold split: asking for none contradicts it
        (["--fold", "1", "--set", "split.folds=0"], "--fold 1 needs a k-fold split"),
        (["--set", "split.folds=1"], "split.folds=1: expected 0, or 2 or more"),
    ],
)
def test_fold_arguments(folded, capsys, args, message):
    root, _ = folded
    with pytest.raises(SystemExit):
        train.main(["--data", str(root / "data"), "--workdir", str(root / "work"),
                    "--model", "original", *args])  # fmt: skip
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_predict_and_export_in_a_kfold_workdir(folded, capsys):
    from ripik_clf.__main__ import main as cli_main

    root, _ = folded
    common = ["--workdir", str(root / "work"), "--set", f"data.path={root / 'data'}",
              "--set", "split.folds=3", "--set", "train.models=augmented"]  # fmt: skip
    capsys.readouterr()
    cli_main(["predict", str(root / "test"), "--json", *common])
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert len(predictions) == 3  # default members: the fold runs, as in ensemble.py
    cli_main(["export", "augmented_fold1", "--format", "savedmodel", *common])
    out = capsys.readouterr().out
    assert "on 6 validation images" in out and "agreement 100.00%" in out  # fold 1's images


def test_audit_reuses_the_folds_out_of_fold_probabilities(folded, tmp_path):
    root, _ = folded
    work = tmp_path / "work"
    shutil.copytree(root / "work", work)  # the fixture's files stay as they are
    runs = [work / "runs" / f"augmented_fold{fold}" for fold in range(FOLDS)]
    tables = [pd.read_csv(run / "val_probabilities_head.csv") for run in runs]
    for run, table in zip(runs, tables):  # each fold run saved its held-out images' softmax
        assert sorted(table["image"]) == json.loads((run / "run.json").read_text())["held_out"]
    images = [image for table in tables for image in table["image"]]
    assert len(images) == len(set(images)) == 18
    # Plant a confident contradiction in the fold runs' probabilities: a probe fitted by
    # the audit could not know of it, so finding it shows the saved ones were used.
    planted = tables[0]["image"][tables[0]["image"].str.startswith("a/")].iloc[0]
    for run, table in zip(runs, tables):
        for row, image in enumerate(table["image"]):
            truth = "c" if image == planted else image.split("/")[0]
            table.loc[row, ["a", "b", "c"]] = [0.9 if c == truth else 0.05 for c in "abc"]
        table.to_csv(run / "val_probabilities_head.csv", index=False)
    cli_main(["audit", "--data", str(root / "data"), "--workdir", str(work),
              "--set", "split.folds=3", "--set", "train.models=augmented",
              "--set", "train.image_size=32"])  # fmt: skip
    suggestions = pd.read_csv(work / "audit" / "relabel_suggestions.csv")
    assert suggestions.values.tolist() == [[planted, "c"]]
    report = (work / "audit" / "audit.md").read_text()
    assert "out-of-fold probabilities of the 3 augmented fold runs (head phase)" in report
