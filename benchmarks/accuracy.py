"""Accuracy on real photos: the default pipeline, run as a user runs it, scored on test.

    make bench-accuracy                                  # clothing8, flowers5, aerial21
    python benchmarks/accuracy.py --sets flowers5 aerial21 [--workdir DIR] [--set K=V]
    python benchmarks/accuracy.py --data PHOTOS --detail # one set, a row per model

Runs ``augment_offline.py``, ``train.py --phase head``, ``--phase probe``, ``--phase full``
and ``ensemble.py --out`` with the default configuration on each photo dataset laid out
as ``train/<class>/``, ``test/`` and ``test_labels.csv`` (the sets of
``../shared/datasets/``), each in a fresh work directory ``WORKDIR/<set>``. Training and
every selection use the training folder only; the test answer key is read only to score.

Writes ``--out`` (``benchmarks/results_accuracy.md``): per set, the submission's test
accuracy and macro-F1 with 95% bootstrap intervals (test images resampled), the seconds
of each stage and what the automatic choices chose; ``WORKDIR/<set>/submission.csv``
stays for paired comparisons (``benchmarks/compare.py``). ``--detail`` adds, per set, a
table with a row per model and phase (every model predicts the test set again: slow on
the large sets) in ``results_accuracy_<set>.md``.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATASETS = REPO.parent / "shared" / "datasets"
DEFAULT_SETS = ("clothing8", "flowers5", "aerial21")
STAGES = ("augment", "head", "probe", "full", "ensemble")
TIME_LIMIT_MIN = 45  # the whole default pipeline must fit in this on a 2-core CPU
# configs/accurate.yaml's second k-fold run: its name and backbone (as `make accurate`)
ACCURATE_RUN = ("lite1", "efficientnet_lite1")


def run_stage(name, argv, log):
    """One script of the pipeline, as a user would type it; returns its wall time."""
    started = time.perf_counter()
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(argv)}", flush=True)
    with open(log, "a") as out:
        out.write(f"\n=== {name}: {' '.join(argv)}\n")
        out.flush()
        code = subprocess.call([sys.executable, *argv], cwd=REPO, stdout=out, stderr=out)
    seconds = time.perf_counter() - started
    if code:
        sys.exit(f"{name} failed (exit {code}); see {log}")
    print(f"    {seconds:.0f} s", flush=True)
    return seconds


def score(y_true, probabilities):
    from sklearn.metrics import accuracy_score, f1_score

    predicted = np.asarray(probabilities).argmax(1)
    return (
        accuracy_score(y_true, predicted),
        f1_score(y_true, predicted, average="macro", labels=range(probabilities.shape[1])),
    )


def main():
    args = parse_args()
    summary = []
    for data in args.data or [DATASETS / name for name in args.sets]:
        if not (data / "train").is_dir() or not (data / "test_labels.csv").exists():
            sys.exit(f"{data} needs train/<class>/, test/ and test_labels.csv")
        workdir = args.workdir / data.name
        wall = run_pipeline(args, data, workdir)
        summary.append(summary_row(data, workdir, wall))
        if args.detail or args.kfold or args.accurate or args.epoch_all:
            detail(args, data, workdir, wall)
    write_summary(args, summary)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sets = " ".join(DEFAULT_SETS)
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), metavar="NAME",
                        help=f"data sets of {DATASETS} (default: {sets})")  # fmt: skip
    parser.add_argument("--data", type=Path, action="append", metavar="DIR",
                        help="a data set folder instead of --sets (repeatable)")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=REPO / "work" / "bench_accuracy")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results_accuracy.md")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every stage"
    )
    parser.add_argument(
        "--detail",
        action="store_true",
        help="a row per model and phase too (predicts the test set again)",
    )
    parser.add_argument(
        "--epoch-all",
        type=int,
        default=0,
        metavar="N",
        help="also train the augmented model's full phase with train.epoch=all for N "
        "epochs, for comparison (0 = skip, the default)",
    )
    parser.add_argument(
        "--score-only",
        action="store_true",
        help="score the artefacts of an earlier run in --workdir again (no training)",
    )
    parser.add_argument(
        "--kfold",
        action="store_true",
        help="then configs/kfold.yaml (`make kfold`) in WORKDIR_kfold: five Lite0 fold runs "
        "of the original images, averaged",
    )
    parser.add_argument(
        "--accurate",
        action="store_true",
        help="then configs/accurate.yaml (`make accurate`, implies --kfold): the k-fold "
        "preset's runs plus five fold runs of a second backbone, ensembled",
    )
    args = parser.parse_args()
    if any("=" not in pair for pair in args.set):
        sys.exit("--set takes KEY=VALUE")
    unknown = [name for name in args.sets if not (DATASETS / name).is_dir()]
    if unknown and not args.data:
        sys.exit(f"no data set {unknown[0]} in {DATASETS}")
    return args


def _common(args, data, workdir):
    common = ["--data", str(data / "train"), "--workdir", str(workdir)]
    return common + [item for pair in args.set for item in ("--set", pair)]


def run_pipeline(args, data, workdir):
    """The five stages as a user types them, in a fresh ``workdir``; their wall times
    (read back with ``--score-only``)."""
    wall_record = workdir / "wall_seconds.json"
    if args.score_only:  # the artefacts and wall times of an earlier run of this script
        return json.loads(wall_record.read_text())
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    log, common = workdir / "pipeline.log", _common(args, data, workdir)
    submission = ["--test", str(data / "test"), "--out", str(workdir / "submission.csv")]
    argv = {
        "augment": ["augment_offline.py", *common],
        "head": ["train.py", "--phase", "head", *common],
        "probe": ["train.py", "--phase", "probe", *common],
        "full": ["train.py", "--phase", "full", *common],
        "ensemble": ["ensemble.py", *common, *submission],
    }
    wall = {}
    started = time.perf_counter()
    for stage in STAGES:
        wall[stage] = run_stage(f"{data.name} {stage}", argv[stage], log)
    wall["pipeline"] = time.perf_counter() - started
    wall_record.write_text(json.dumps(wall))
    return wall


def detail(args, data, workdir, wall):
    """The per-model table of one set (and the presets), as this script wrote before."""
    out = args.out.with_name(f"results_accuracy_{data.name}.md")
    args = argparse.Namespace(**{**vars(args), "data": data, "workdir": workdir, "out": out})
    rows = score_everything(args, workdir / "submission.csv", wall)
    log, common = workdir / "pipeline.log", _common(args, data, workdir)
    if args.kfold or args.accurate:
        rows += preset_rows(args, log, wall)
    if args.epoch_all:
        rows += epoch_all_rows(args, common, log, wall)
    (workdir / "wall_seconds.json").write_text(json.dumps(wall))
    write_table(args, rows, wall["pipeline"])


def bootstrap_scores(truth, predicted, n_classes, boots=2000, seed=0):
    """Accuracy and macro-F1 (scikit-learn) with 95% percentile intervals over test
    images resampled with replacement: ``{metric: (value, low, high)}``."""
    from sklearn.metrics import accuracy_score, f1_score

    from ripik_clf.predict.voting import macro_f1

    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(truth), (boots, len(truth)))
    right = truth == predicted
    accuracy = right[rows].mean(axis=1)
    f1 = [macro_f1(truth[r], predicted[r], n_classes) for r in rows]  # = scikit-learn's
    labels = list(range(n_classes))
    return {
        "accuracy": (accuracy_score(truth, predicted), *np.percentile(accuracy, [2.5, 97.5])),
        "macro_f1": (
            f1_score(truth, predicted, labels=labels, average="macro", zero_division=0),
            *np.percentile(f1, [2.5, 97.5]),
        ),
    }


def summary_row(data, workdir, wall):
    """One set's line: the submission's scores with intervals, stage times, choices."""
    import pandas as pd

    from ripik_clf.workdir import read_augment_settings, read_ensemble_definition

    answers = pd.read_csv(data / "test_labels.csv", dtype=str)
    ids, classes = list(answers["image_id"]), sorted(set(answers["label"]))
    truth = np.array([classes.index(label) for label in answers["label"]])
    predicted = submission_onehot(workdir / "submission.csv", ids, classes).argmax(1)
    scores = bootstrap_scores(truth, predicted, len(classes))
    settings, definition = read_augment_settings(workdir), read_ensemble_definition(workdir)
    chosen = [f"flips {settings.flips}" if settings else "no copies"]
    views = sorted({m.tta for m in definition.members})  # "auto" resolved per member
    chosen += [f"TTA {'/'.join(views)}", f"T {definition.temperature:.2f}"]
    chosen += ["weights " + "/".join(f"{w:.2f}" for w in definition.weights)]
    train = sum(1 for p in (data / "train").rglob("*") if p.is_file())
    return {"set": data.name, "classes": len(classes), "train": train, "test": len(ids),
            "scores": scores, "wall": wall, "choices": ", ".join(chosen)}  # fmt: skip


def write_summary(args, rows):
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "ripik_clf", "*.py"],
                           cwd=REPO, capture_output=True, text=True).stdout.strip()  # fmt: skip
    lines = [
        f"Default pipeline on real photos, {datetime.date.today()}, commit {commit}"
        f"{' + local changes' if dirty else ''}, {os.cpu_count()} CPU cores, "
        f"{', '.join(args.set) or 'default configuration'}. Test answer keys used only to "
        "score; [95% bootstrap interval over test images].",
        "",
        "| set | classes | train / test | test accuracy | test macro-F1 | "
        + " | ".join(f"{s} s" for s in STAGES)
        + " | total min | chosen on validation |",
        "|---|---:|---:|---|---|" + "---:|" * (len(STAGES) + 1) + "---|",
    ]
    for r in rows:
        cells = [f"{v:.4f} [{lo:.4f}, {hi:.4f}]" for v, lo, hi in r["scores"].values()]
        times = [f"{r['wall'][s]:.0f}" for s in STAGES]
        lines.append(f"| {r['set']} | {r['classes']} | {r['train']} / {r['test']} | "
                     + " | ".join(cells + times) + f" | {r['wall']['pipeline'] / 60:.1f} | "
                     f"{r['choices']} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    args.out.write_text(text)
    print(f"written to {args.out}")


def preset_rows(args, log, wall):
    """The k-fold presets, each in the commands of its make target, in one work directory
    of their own: configs/kfold.yaml (`make kfold`: five Lite0 fold runs of the original
    images), then with ``--accurate`` configs/accurate.yaml (`make accurate`: the same
    fold runs plus five of a second backbone, ensembled). Rows: each k-fold run alone
    (its folds averaged; out-of-fold validation) and each preset's submission, with its
    time. The per-run rows are ensembles of that run only, read from the prediction cache
    (no image is predicted twice); the preset's own submission is made last."""
    workdir = args.workdir.with_name(args.workdir.name + "_kfold")
    place = ["--workdir", str(workdir), "--data", str(args.data / "train")]
    place += [item for pair in args.set for item in ("--set", pair)]
    presets = [("kfold", ["original"], [])]
    if args.accurate:
        run, backbone = ACCURATE_RUN
        presets.append(("accurate", ["original", run], ["--run", run, "--backbone", backbone]))
    if not wall.get("presets_done"):
        shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for i, (name, members, extra) in enumerate(presets):
        config = ["--config", f"configs/{name}.yaml", *place]
        if f"{name}_preset" not in wall:
            started = time.perf_counter()
            for phase in ("head", "probe", "full"):
                argv = ["train.py", *config, "--phase", phase, *extra]
                run_stage(f"{name} {phase} {' '.join(extra)}", argv, log)
            wall[f"{name}_training"] = time.perf_counter() - started
        for run in members[1:]:  # the first run alone is the kfold preset's submission
            out = workdir / f"submission_{run}.csv"
            argv = ["ensemble.py", *config, "--members", run, "--test", str(args.data / "test"),
                    "--out", str(out)]  # fmt: skip
            run_stage(f"{name} ensemble of {run} alone", argv, log)
            rows.append(_submission_row(args, workdir, out, f"k-fold run {run} alone"))
        out = workdir / f"submission_{name}.csv"
        argv = ["ensemble.py", *config, "--test", str(args.data / "test"), "--out", str(out)]
        seconds = run_stage(f"{name} ensemble", argv, log)
        wall.setdefault(f"{name}_preset", wall[f"{name}_training"] + seconds)
        # accurate.yaml trains the kfold preset's runs too: its time includes theirs
        minutes = sum(wall[f"{n}_preset"] for n, _, _ in presets[: i + 1]) / 60
        rows.append(_submission_row(args, workdir, out, f"configs/{name}.yaml submission "
                                    f"(whole preset {minutes:.1f} min)", seconds))  # fmt: skip
    wall["presets_done"] = True
    return rows


def _submission_row(args, workdir, submission, name, seconds=None):
    """A submission scored on test, beside the validation macro-F1 its ensemble reported."""
    import pandas as pd

    from ripik_clf.workdir import read_ensemble_definition, read_report_metrics

    answers = pd.read_csv(args.data / "test_labels.csv", dtype=str)
    ids, classes = list(answers["image_id"]), sorted(set(answers["label"]))
    y = np.array([classes.index(label) for label in answers["label"]])
    definition = read_ensemble_definition(workdir)
    val = read_report_metrics(workdir)[f"soft ensemble | {definition.tta}"]["macro_f1"]
    weights = ", ".join(f"{f} x{w:.2f}" for f, w in zip(definition.families, definition.weights))
    test = score(y, submission_onehot(submission, ids, classes))
    return _row(f"{name}; weights {weights}", test, val, seconds, None)


def submission_onehot(submission, ids, classes):
    """A submission's labels, in ``ids`` order, as one-hot rows over ``classes``."""
    import pandas as pd

    submitted = pd.read_csv(submission, dtype=str).set_index("image_id")["label"]
    return np.eye(len(classes))[[classes.index(submitted[i]) for i in ids]]


def epoch_all_rows(args, common, log, wall):
    """The old epoch (every copy, every epoch) beside the default (one version of each
    source per epoch), for the `augmented` model, from the same head model. At its old
    default of 10 epochs it would take 15x the default's time (hours here), so it gets
    ``--epoch-all`` epochs: 1 epoch shows 6,465 images, more than the default's 10
    source epochs (4,310)."""
    import keras

    from ripik_clf.predict.members import Member, predict_members
    from ripik_clf.workdir import (
        read_run_metrics,
        read_run_record,
    )

    other = args.workdir.with_name(args.workdir.name + "_epoch_all")
    run = other / "runs" / "augmented"
    if "epoch_all" not in wall:
        shutil.rmtree(other, ignore_errors=True)
        shutil.copytree(args.workdir, other, ignore=shutil.ignore_patterns("features", "report"))
        for name in ("full.keras", "history_full.csv"):
            (run / name).unlink(missing_ok=True)
        # The same number of warm-up steps as the default (one source epoch = 1/15 of all).
        warmup = f"train.full_warmup_epochs={1 / 15:.4f}"
        argv = ["train.py", "--phase", "full", "--model", "augmented",
                *[a if a != str(args.workdir) else str(other) for a in common],
                "--set", "train.epoch=all", "--set", f"train.full_epochs={args.epoch_all}",
                "--set", warmup]  # fmt: skip
        wall["epoch_all"] = run_stage("full phase, train.epoch=all", argv, log)
    seconds = wall["epoch_all"]
    metrics = read_run_metrics(run)["full"]
    record = read_run_record(run)
    member = Member("augmented", run / "full.keras", record.classes, record.image_size)
    member.model = keras.models.load_model(member.path)
    answers = __import__("pandas").read_csv(args.data / "test_labels.csv", dtype=str)
    paths = [str(args.data / "test" / i) for i in answers["image_id"]]
    y = np.array([record.classes.index(label) for label in answers["label"]])
    images = metrics["train_images"] * metrics["epochs"]
    rows = []
    for mode in ("none", "flip"):
        p = predict_members([member], paths, mode)[0][0]
        name = f"augmented, full phase, train.epoch=all ({metrics['epochs']} epoch), TTA {mode}"
        rows.append(
            _row(
                name,
                score(y, p),
                metrics["macro_f1"] if mode == "none" else None,
                seconds if mode == "none" else None,
                images / metrics["seconds"] if mode == "none" else None,
            )  # fmt: skip
        )
    return rows


def score_everything(args, submission, wall):
    import keras
    import pandas as pd

    from ripik_clf.config import load_config
    from ripik_clf.predict.calibration import fit_temperature
    from ripik_clf.predict.combiner import SoftVote
    from ripik_clf.predict.members import Member, predict_members
    from ripik_clf.predict.tta import member_tta
    from ripik_clf.predict.voting import hard_vote
    from ripik_clf.train.phases import model_data
    from ripik_clf.workdir import (
        read_ensemble_definition,
        read_report_metrics,
        read_run_metrics,
        read_run_record,
    )

    overrides = dict(pair.split("=", 1) for pair in args.set)  # as every stage saw them
    overrides.update({"workdir": str(args.workdir), "data.path": str(args.data / "train")})
    config = load_config(None, overrides)
    answers = pd.read_csv(args.data / "test_labels.csv", dtype=str)
    ids, truth = list(answers["image_id"]), list(answers["label"])
    test_paths = [str(args.data / "test" / i) for i in ids]
    runs = args.workdir / "runs"
    rows = []

    data = model_data(config, "original")
    classes = data.classes
    y_test = np.array([classes.index(label) for label in truth])

    plain, with_tta, names, calibration = [], [], [], []
    for phase in ("head", "probe", "full"):
        for model in config.train.models:
            metrics = read_run_metrics(runs / model)[phase]
            record = read_run_record(runs / model)
            member = Member(model, runs / model / f"{phase}.keras", classes, record.image_size)
            member.record = record
            member.model = keras.models.load_model(member.path)
            mode = member_tta(member, config.ensemble.tta)
            # Its temperature for this TTA, fitted on validation as the ensemble does.
            val_p = predict_members([member], data.val_paths, mode, calibrated=False)[0][0]
            member.fitted[mode] = fit_temperature(val_p, data.val_y)
            p_none = predict_members([member], test_paths, "none")[0][0]
            p_tta = predict_members([member], test_paths, mode)[0][0]
            if phase == "full":
                plain.append(p_none)
                with_tta.append(p_tta)
                names.append(model)
            if phase != "head":
                calibration.append(
                    (f"{model}, {phase} phase, TTA {mode}", p_tta, member.temperature_for(mode))
                )
            images = metrics["train_images"] * (
                metrics["epochs"] if phase == "full" else 1
            )  # head: images through the backbone (features), full: images trained on
            seconds = metrics["feature_seconds"] if phase == "head" else metrics["seconds"]
            label = f"{model}, {phase} phase"
            extra = (
                f" ({metrics['epochs']} epochs)" if phase != "probe" else f" (C={metrics['C']:g})"
            )
            rows.append(
                _row(
                    f"{label}{extra}, no TTA",
                    score(y_test, p_none),
                    metrics["macro_f1"],
                    metrics["seconds"],
                    images / max(seconds, 1e-9),
                )  # fmt: skip
            )
            if mode != "none":
                rows.append(_row(f"{label}, TTA {mode}", score(y_test, p_tta), None, None, None))

    report = read_report_metrics(args.workdir)
    definition = read_ensemble_definition(args.workdir)
    weights = [definition.weights[definition.families.index(n)] for n in names]
    combiner = SoftVote(tuple(weights), definition.temperature)  # in this table's order
    tta = config.ensemble.tta  # the views offered; the submission used definition.tta
    rows.append(
        _row(
            f"soft ensemble, TTA {definition.tta} = submission.csv",
            score(y_test, submission_onehot(submission, ids, classes)),
            report[f"soft ensemble | {definition.tta}"]["macro_f1"],
            wall["ensemble"],
            len(ids) / max(wall["ensemble"], 1e-9),
        )  # fmt: skip
    )
    rows.append(
        _row(
            "soft ensemble, no TTA",
            score(y_test, combiner.vote(plain)),
            report["soft ensemble | none"]["macro_f1"],
            None,
            None,
        )  # fmt: skip
    )
    for label, probabilities, key in (
        (f"hard ensemble, TTA {tta}", with_tta, tta),
        ("hard ensemble, no TTA", plain, "none"),
    ):
        onehot = np.eye(len(classes))[hard_vote(probabilities, weights)]
        rows.append(
            _row(
                label,
                score(y_test, onehot),
                report[f"hard ensemble | {key}"]["macro_f1"],
                None,
                None,
            )  # fmt: skip
        )
    if len(set(weights)) > 1:  # what the recipe's plain average would have scored
        for label, probabilities, key in ((f"TTA {tta}", with_tta, tta), ("no TTA", plain, "none")):
            rows.append(
                _row(
                    f"soft ensemble, equal weights (not submitted), {label}",
                    score(y_test, SoftVote.equal(len(names)).vote(probabilities)),
                    report[f"soft, equal weights | {key}"]["macro_f1"],
                    None,
                    None,
                )  # fmt: skip
            )
    temperatures = [t for name, _, t in calibration if "full phase" in name]
    soft = "soft ensemble = submission_probabilities.csv"
    calibration.append((soft, None, definition.temperature))
    calibration_lines(calibration, y_test, with_tta, temperatures, combiner, report)
    chosen = ", ".join(f"{n} x{w:g}" for n, w in zip(names, weights))
    rows.append(_row(f"(ensemble weights, chosen on validation: {chosen})", None, None, None, None))
    rows += choice_rows(args.workdir, config.train.models)
    rows += tta_choice_rows(definition)
    rows.insert(0, _row(f"augment_offline.py ({config.augment.copies} copies per training "
                        "image)", None, None, wall["augment"], None))  # fmt: skip
    return rows


def tta_choice_rows(definition):
    """ensemble.tta auto's validation log losses, as the ensemble recorded them."""
    if not definition.tta_log_loss:
        return []
    losses = ", ".join(f"{mode} {loss:.4f}" for mode, loss in definition.tta_log_loss.items())
    return [_row(f"(ensemble.tta auto used {definition.tta}; validation log loss {losses})",
                 None, None, None, None)]  # fmt: skip


def choice_rows(workdir, variants):
    """What the defaults chose on this data (validation only): the flips, and the model
    each full phase started from."""
    from ripik_clf.workdir import read_augment_settings, read_run_metrics

    rows = []
    settings = read_augment_settings(workdir)
    auto = settings.flips_auto if settings else None
    if auto:
        losses = " / ".join(f"{name} {s['log_loss']:.4f}" for name, s in auto["scores"].items())
        rows.append(_row(f"(augment.flips auto chose {auto['chosen']}; probe validation log "
                         f"loss {losses})", None, None, None, None))  # fmt: skip
    starts = ", ".join(
        f"{v} from {read_run_metrics(workdir / 'runs' / v)['full'].get('started_from', 'head')}"
        for v in variants
    )
    rows.append(_row(f"(full phase started from: {starts})", None, None, None, None))
    return rows


CALIBRATION = []  # markdown lines of the calibration table, written after the main one


def calibration_lines(entries, y_test, members, temperatures, combiner, report):
    """Test ECE and Brier before and after temperature scaling (temperatures fitted on
    validation: the test set is out-of-sample for them)."""
    from ripik_clf.predict.calibration import apply_temperature, negative_log_likelihood
    from ripik_clf.report.metrics import brier_score, expected_calibration_error

    CALIBRATION[:] = [
        "Calibration on the test set (temperatures fitted on validation only):",
        "",
        "| model | temperature | test NLL before | test NLL after | test ECE before "
        "| test ECE after | test Brier before | test Brier after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, calibrated, temperature in entries:
        if calibrated is None:  # the ensemble: members' and its own temperature
            unscaled = [apply_temperature(p, 1 / t) for p, t in zip(members, temperatures)]
            raw = combiner.vote(unscaled)
            calibrated = combiner.apply(members)
        else:
            raw = apply_temperature(calibrated, 1 / temperature)
        cells = [
            f"{metric(y_test, p):.4f}"
            for metric in (negative_log_likelihood, expected_calibration_error, brier_score)
            for p in (raw, calibrated)
        ]
        CALIBRATION.append(f"| {name} | {temperature:.2f} | " + " | ".join(cells) + " |")


def _row(name, test, val_f1, seconds, rate):
    return {"name": name, "test": test, "val_f1": val_f1, "seconds": seconds, "rate": rate}


def write_table(args, rows, pipeline_seconds):
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "ripik_clf", "*.py"],
                           cwd=REPO, capture_output=True, text=True).stdout.strip()  # fmt: skip
    test_n = sum(1 for _ in open(args.data / "test_labels.csv")) - 1

    def f(value, digits=4):
        return "" if value is None else f"{value:.{digits}f}"

    lines = [
        f"Real photos: {args.data.name}, test set of {test_n} images (answer key used only "
        f"to score). {datetime.date.today()}, commit {commit}{' + local changes' if dirty else ''}"
        f", {', '.join(args.set) or 'default configuration'}; whole pipeline "
        f"{pipeline_seconds / 60:.1f} min (limit {TIME_LIMIT_MIN}).",
        "",
        "| row | test accuracy | test macro-F1 | val macro-F1 (used for selection) "
        "| stage wall time (s) | images/s (stage) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        test = row["test"] or (None, None)
        lines.append(
            f"| {row['name']} | {f(test[0])} | {f(test[1])} | {f(row['val_f1'])} "
            f"| {f(row['seconds'], 0)} | {f(row['rate'], 1)} |"
        )
    lines += ["", *CALIBRATION] if CALIBRATION else []
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    args.out.write_text(text)
    print(f"written to {args.out}")
    if pipeline_seconds > TIME_LIMIT_MIN * 60:
        print(f"warning: the pipeline took longer than {TIME_LIMIT_MIN} min")


if __name__ == "__main__":
    main()
