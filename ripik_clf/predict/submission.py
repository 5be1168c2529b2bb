"""``ensemble.py``: predict the test folder, write the submission and the report."""

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ripik_clf.atomic import atomic_write_csv
from ripik_clf.data.dataset import class_names, load_dataset
from ripik_clf.data.images import IMAGE_EXTENSIONS
from ripik_clf.data.splits import load_or_make_splits, split_record
from ripik_clf.errors import UserError
from ripik_clf.locks import exclusive
from ripik_clf.predict.calibration import (
    apply_temperature,
    fit_temperature,
    negative_log_likelihood,
)
from ripik_clf.predict.members import (
    check_member_splits,
    choose_threshold,
    default_member_names,
    greedy_selection,
    hard_vote,
    load_members,
    member_tta,
    predict_members,
    resolve_members,
    soft_vote,
)
from ripik_clf.progress import progress
from ripik_clf.report import plots as ev


def test_images(test_dir):
    """Every image file below ``test_dir`` (any depth), sorted by relative path."""
    test_dir = Path(test_dir)
    if not test_dir.is_dir():
        raise UserError(f"test folder not found: {test_dir}")
    files = sorted(
        p
        for p in test_dir.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(s.startswith(".") for s in p.relative_to(test_dir).parts)
    )
    if not files:
        raise UserError(
            f"test folder {test_dir} holds no image files ({', '.join(IMAGE_EXTENSIONS)})"
        )
    return [p.relative_to(test_dir).as_posix() for p in files]


def resolve_test_dir(config):
    if config.data.test:
        return Path(config.data.test), None
    if config.data.path is None:  # the demo: its test folder and answer key
        from ripik_clf.data.demo import ensure_demo_data

        paths = ensure_demo_data()
        return paths["test"], paths["answers"]
    raise UserError("no test folder: pass --test DIR (or set data.test)")


def run_ensemble(config, out_path, answers=None):
    """Predict validation and test with every member; write submission, probabilities, report.

    One ensemble at a time per work directory: it holds the lock of ``WORKDIR/report``."""
    with exclusive(Path(config.workdir) / "report", "ensemble.py"):
        return _run_ensemble(config, out_path, answers)


def _run_ensemble(config, out_path, answers=None):
    ens, workdir = config.ensemble, Path(config.workdir)
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise UserError(f"output folder does not exist: {out_path.parent}")
    test_dir, demo_answers = resolve_test_dir(config)
    test_ids = test_images(test_dir)
    members = resolve_members(workdir, ens.members, default_member_names(config))
    names = list(dict.fromkeys(m.family for m in members))  # validated per family (OOF)
    _check_fold_mix(members, ens.allow_mixed)
    if ens.weights and len(ens.weights) != len(names):
        raise UserError(
            f"{len(ens.weights)} weights given for {len(names)} members ({', '.join(names)})"
        )
    load_members(members)
    classes = members[0].classes

    compare = ens.tta if ens.tta != "none" else "flip"
    modes = list(dict.fromkeys(("none", compare)))
    val, val_raw, val_y, val_paths, val_notes = _validation(config, members, names, classes, modes)
    # The ensemble, defined once: a weight per family (fold runs of one model share
    # theirs); every table, figure and the submission use exactly these weights.
    weights, notes = _choose_weights(ens, val[ens.tta], val_y, names)
    notes = val_notes + notes
    # The ensemble's own temperature, on top of its members': averaging softmaxes makes
    # an ensemble under-confident, which one more temperature fixes.
    temperature = fit_temperature(soft_vote(val[ens.tta], weights), val_y)
    test_paths = [str(test_dir / i) for i in test_ids]
    probabilities, failures, seconds, adaptive_note = _predict_test(
        members, names, test_paths, ens, weights, val, val_y
    )
    notes += adaptive_note
    keep = _handle_failures(failures, test_dir, test_ids, ens.on_bad_image, out_path)
    ids = [test_ids[i] for i in keep]
    families = family_mean(probabilities[:, keep], members, names)
    soft = soft_vote(families, weights)
    submission = pd.DataFrame(
        {ens.id_col: ids, ens.label_col: [classes[k] for k in soft.argmax(1)]}
    )
    atomic_write_csv(submission, out_path)
    table = pd.DataFrame(apply_temperature(soft, temperature), columns=[str(c) for c in classes])
    table.insert(0, ens.id_col, ids)
    atomic_write_csv(table, out_path.with_name("probabilities.csv"))

    report_dir = workdir / "report"
    rows = _validation_rows(val, val_y, names, classes, weights)
    test_rows = _test_rows(
        answers or demo_answers,
        ids,
        probabilities[:, keep],
        families,
        [m.name for m in members],
        names,
        classes,
        ens,
        weights,
    )
    calibration = calibration_section(
        val_raw[ens.tta], val[ens.tta], val_y, names, weights, members, temperature, ens.tta
    )
    _write_report(
        notes + calibration,
        weights,
        report_dir,
        rows,
        test_rows,
        val[ens.tta],
        val_y,
        val_paths,
        classes,
        names,
        ens,
        len(ids),
        seconds,
        temperature=temperature,
        member_temperatures={m.name: m.fitted for m in members},
    )
    return {
        "rows": rows,
        "test_rows": test_rows,
        "submission": out_path,
        "report": report_dir,
        "images": len(ids),
        "seconds": seconds,
    }


def _choose_weights(ens, val_probabilities, val_y, names):
    """The soft-voting weights: given, equal, or chosen by greedy selection on validation."""
    if ens.weights or ens.select != "greedy":  # weights given: the user's choice wins
        return [float(w) for w in ens.weights] if ens.weights else [1.0] * len(names), []
    counts, score = greedy_selection(val_probabilities, val_y)
    chosen = ", ".join(f"{n} x{c}" for n, c in zip(names, counts) if c)
    print(f"greedy selection: {chosen} (validation macro-F1 {score:.4f})")
    return [float(c) for c in counts], [
        f"Greedy selection (Caruana et al., 2004) chose: {chosen}; "
        f"validation macro-F1 {score:.4f}.",
        "",
    ]


def family_mean(probabilities, members, names):
    """Member probabilities ``(M, N, C)`` -> one per family ``(F, N, C)``: the mean of a
    family's fold runs (a plain run is a family of one)."""
    return np.stack(
        [
            np.mean([p for p, m in zip(probabilities, members) if m.family == name], axis=0)
            for name in names
        ]
    )


def _predict_test(members, names, paths, ens, weights, val, val_y):
    """Per-member test probabilities with plain or two-stage (adaptive) TTA."""
    bar = progress(len(paths), "predict test")
    started = time.perf_counter()
    if ens.adaptive == "off":
        probabilities, failures = predict_members(members, paths, ens.tta, ens.batch_size, bar)
        bar.close()
        return probabilities, failures, time.perf_counter() - started, []
    threshold = (
        choose_threshold(soft_vote(val["none"], weights), soft_vote(val[ens.tta], weights), val_y)
        if ens.adaptive == "auto"
        else float(ens.adaptive)
    )
    plain, failures = predict_members(members, paths, "none", ens.batch_size, bar)
    bar.close()
    confidence = np.nan_to_num(soft_vote(family_mean(plain, members, names), weights)).max(axis=1)
    failed = np.isnan(plain[0, :, 0])
    redo = np.flatnonzero(~failed & ((confidence < threshold) | (threshold >= 1)))
    probabilities = plain.copy()
    if len(redo):
        again, _ = predict_members(members, [paths[i] for i in redo], ens.tta, ens.batch_size)
        probabilities[:, redo] = again
    seconds = time.perf_counter() - started
    note = (
        f"Adaptive TTA: threshold {threshold:.4f} ({ens.adaptive}); {len(redo)} of "
        f"{len(paths)} test images ({len(redo) / len(paths):.1%}) re-predicted with "
        f"`{ens.tta}` in {seconds:.1f} s in all."
    )
    print(note)
    return probabilities, failures, seconds, [note, ""]


def _check_fold_mix(members, allow_mixed):
    folded = {m.fold is not None for m in members}
    if len(folded) == 2 and not allow_mixed:
        plain = next(m.name for m in members if m.fold is None)
        raise UserError(
            f"member {plain} is not a fold model but others are; fold models "
            "are validated out-of-fold, so mixing needs --allow-mixed"
        )


def _validation(config, members, names, classes, modes):
    """Validation probabilities per family ``(F, N, C)`` for each TTA mode.

    A member is only ever scored on images it never trained on (``held_out`` in its
    run.json): with one split, the validation images; with K folds, its own fold, so each
    family is scored out-of-fold. With ``--allow-mixed`` members may come from different
    splits; the validation set is then the images every family held out.

    Returns:
        (probabilities by mode, labels, paths, report notes).
    """
    dataset, _ = load_dataset(config.data)
    if class_names(dataset) != classes:
        raise UserError(
            f"the members were trained on classes {classes}, the data has {class_names(dataset)}"
        )
    splits = load_or_make_splits(dataset, config.split, config.workdir)
    if not config.ensemble.allow_mixed:
        check_member_splits(members, split_record(splits, config.split))
    held = {}
    for member in members:
        if "held_out" not in member.record:
            raise UserError(
                f"run {member.name} has no record of its validation images "
                "(made by an older version): retrain it"
            )
        held[member.name] = set(member.record["held_out"])
    common = set(splits["image"])
    for name in names:
        common &= set().union(*(held[m.name] for m in members if m.family == name))
    if not common:
        raise UserError(
            "no image is held out by every member (each one trained on images the others "
            "validate on): there is no fair validation set; use members of one split"
        )
    table = splits[splits["image"].isin(common)].merge(dataset[["image", "path"]], on="image")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in table["label"]])
    paths, images = list(table["path"]), list(table["image"])
    val = {mode: np.full((len(names), len(paths), len(classes)), np.nan) for mode in modes}
    raw = {mode: np.full_like(val[mode], np.nan) for mode in modes}  # before temperatures

    # Members that score the same images (all of them with one split; one fold's models
    # with K folds) predict together, so each image is decoded once per group and mode.
    rows_of = {
        m.name: tuple(i for i, img in enumerate(images) if img in held[m.name]) for m in members
    }
    groups = list(dict.fromkeys(rows_of.values()))
    bar = progress(sum(len(rows) for rows in groups) * len(modes), "predict validation")
    for rows in groups:
        group = [m for m in members if rows_of[m.name] == rows]
        rows = np.array(rows, dtype=int)
        for mode in modes:
            predicted, _ = predict_members(
                group, [paths[i] for i in rows], mode, config.ensemble.batch_size, bar, False
            )
            for member, probabilities in zip(group, predicted):
                family = names.index(member.family)
                raw[mode][family, rows] = probabilities
                # Fitted on the probabilities it will be used on: TTA averages views,
                # which softens them, so the run's temperature (no TTA) would not fit.
                temperature = fit_temperature(probabilities, y[rows])
                member.fitted[member_tta(member, mode)] = temperature
                val[mode][family, rows] = apply_temperature(probabilities, temperature)
    bar.close()
    missing = [n for n, family in zip(names, val[modes[0]]) if np.isnan(family).any()]
    if missing:
        raise UserError(f"{missing[0]} could not score some validation images (unreadable)")
    notes = []
    if len(table) < len(splits[splits["split"] != "train"]):
        notes = [
            f"Validation: the {len(table)} images that every member held out (members of "
            "different splits: each is scored only on images it never trained on).",
            "",
        ]
    return val, raw, y, paths, notes


def calibration_section(raw, calibrated, y, names, weights, members, temperature, tta):
    """Report lines: each family's and the ensemble's validation ECE and Brier score
    before and after temperature scaling (fitted on these same images: in-sample)."""
    temperatures = {
        name: ", ".join(f"{m.temperature_for(tta):.2f}" for m in members if m.family == name)
        for name in names
    }
    rows = [(n, temperatures[n], r, c) for n, r, c in zip(names, raw, calibrated)]
    ensemble = apply_temperature(soft_vote(calibrated, weights), temperature)
    rows.append(("soft ensemble", f"{temperature:.2f}", soft_vote(raw, weights), ensemble))
    lines = [
        "## Calibration (validation)",
        "",
        "Temperature scaling: one temperature per model and TTA, fitted here on its "
        "validation probabilities with the TTA it is used with (minimum negative "
        "log-likelihood, NLL), and one for the ensemble on top; "
        "`probabilities.csv` and `predict` use them. Fitted and measured on the same "
        "images (in-sample).",
        "",
        "| model | temperature | NLL before | NLL after | ECE before | ECE after "
        "| Brier before | Brier after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t, before, after in rows:
        cells = [
            f"{metric(y, p):.4f}"
            for metric in (negative_log_likelihood, ev.expected_calibration_error, ev.brier_score)
            for p in (before, after)
        ]
        lines.append(f"| {name} | {t} | " + " | ".join(cells) + " |")
    return lines + [""]


def _handle_failures(failures, test_dir, test_ids, policy, out_path):
    if failures and policy == "fail":
        path, reason = failures[0]
        raise UserError(
            f"test image {path} cannot be read ({reason}); a submission needs every "
            f"row: fix it, or pass --on-bad-image skip ({len(failures)} unreadable)"
        )
    failed = {Path(p).relative_to(test_dir).as_posix() for p, _ in failures}
    if failures:
        skipped = out_path.with_name("skipped.csv")
        atomic_write_csv(pd.DataFrame(failures, columns=["path", "reason"]), skipped)
        print(f"warning: skipped {len(failures)} unreadable test image(s), listed in {skipped}:")
        for path, reason in failures[:10]:
            print(f"  {path}: {reason}")
    return [i for i, name in enumerate(test_ids) if name not in failed]


def _validation_rows(val, val_y, names, classes, weights):
    rows = {}
    for mode, probabilities in val.items():
        for name, p in zip(names, probabilities):
            rows[(name, mode)] = ev.summary_row(val_y, p, classes)
        rows[("soft ensemble", mode)] = ev.summary_row(
            val_y, soft_vote(probabilities, weights), classes
        )
        rows[("hard ensemble", mode)] = _hard_row(val_y, probabilities, classes, weights)
        if len(set(weights)) > 1:  # how the chosen weights compare with plain averaging
            rows[("soft, equal weights", mode)] = ev.summary_row(
                val_y, soft_vote(probabilities), classes
            )
    return rows


def _hard_row(y_true, probabilities, classes, weights=None):
    """Hard voting yields labels, not probabilities: no Brier score or ECE."""
    onehot = np.eye(len(classes))[hard_vote(probabilities, weights)]
    return dict(ev.summary_row(y_true, onehot, classes), brier=np.nan, ece=np.nan)


def _test_rows(answers, ids, probabilities, families, member_names, names, classes, ens, weights):
    if answers is None or not Path(answers).exists():
        return {}
    key = pd.read_csv(answers, dtype=str)
    truth = dict(
        zip(
            key[ens.id_col] if ens.id_col in key else key.iloc[:, 0],
            key[ens.label_col] if ens.label_col in key else key.iloc[:, 1],
        )
    )
    index = {c: i for i, c in enumerate(classes)}
    known = [i for i, name in enumerate(ids) if truth.get(name) in index]
    y = np.array([index[truth[ids[i]]] for i in known])
    rows = {
        name: ev.summary_row(y, p[known], classes) for name, p in zip(member_names, probabilities)
    }
    if len(names) < len(member_names):  # fold runs: each model family's mean too
        rows |= {
            f"{n} (mean of folds)": ev.summary_row(y, p[known], classes)
            for n, p in zip(names, families)
        }
    rows["soft ensemble"] = ev.summary_row(y, soft_vote(families[:, known], weights), classes)
    rows["hard ensemble"] = _hard_row(y, families[:, known], classes, weights)
    return rows


def _write_report(
    notes,
    weights,
    report_dir,
    rows,
    test_rows,
    val_probabilities,
    val_y,
    val_paths,
    classes,
    names,
    ens,
    n_test,
    seconds,
    temperature=1.0,
    member_temperatures=None,
):
    report_dir.mkdir(parents=True, exist_ok=True)
    soft = soft_vote(val_probabilities, weights)
    named = dict(zip(names, val_probabilities)) | {"soft ensemble": soft}
    for name, p in named.items():
        slug = name.replace(" ", "_").replace("/", "_")
        ev.plot_confusion(val_y, p.argmax(1), classes, report_dir / f"confusion_{slug}.png", name)
    ev.plot_reliability(val_y, named, report_dir / "reliability.png")
    ev.plot_hardest(val_y, soft, classes, val_paths, report_dir / "hardest.png")
    lines = [
        "# ripik_clf evaluation report",
        "",
        f"Members: {', '.join(names)}; weights: {', '.join(f'{w:g}' for w in weights)}; "
        f"submission TTA: "
        f"`{ens.tta}`. Validation split: {len(val_y)} real images (never augmented).",
        "",
        *notes,
        "## Validation",
        "",
        metrics_table(rows),
        "",
    ]
    if test_rows:
        lines += [
            "## Test (answer key)",
            "",
            metrics_table({(k, ens.tta): v for k, v in test_rows.items()}),
            "",
        ]
    per_class = rows[("soft ensemble", ens.tta)]["per_class"]
    lines += [
        "## Per class (soft ensemble, validation)",
        "",
        "| class | precision | recall | F1 | images |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c} | {per_class[str(c)]['precision']:.4f} | {per_class[str(c)]['recall']:.4f} "
        f"| {per_class[str(c)]['f1-score']:.4f} | {per_class[str(c)]['support']:.0f} |"
        for c in classes
    ]
    lines += [""]
    metrics = {f"{name} | {mode}": m for (name, mode), m in rows.items()}
    metrics |= {f"test: {name}": m for name, m in test_rows.items()}
    (report_dir / "metrics.json").write_text(json.dumps(_finite(metrics), indent=2))
    # The ensemble behind the submission, for anyone who scores it again (benchmarks).
    definition = {"members": names, "weights": weights, "tta": ens.tta}
    definition["temperature"] = temperature  # applied to the weighted soft vote
    definition["member_temperatures"] = member_temperatures  # per member, by TTA views
    (report_dir / "ensemble.json").write_text(json.dumps(definition, indent=2))
    lines += [
        f"Test set: {n_test} images predicted in {seconds:.1f} s "
        f"({n_test / max(seconds, 1e-9):.1f} images/s with `{ens.tta}` TTA).",
        "",
        "## Figures",
        "",
        "- [All metrics, per class too](metrics.json)",
        "- [Reliability diagram](reliability.png)",
        "- [Most confident mistakes](hardest.png)",
        *[
            f"- [Confusion matrix: {n}](confusion_{n.replace(' ', '_').replace('/', '_')}.png)"
            for n in named
        ],
        "",
        "Brier score: mean squared distance of the probabilities to the one-hot truth (lower is "
        f"better). ECE: expected calibration error over {ev.ECE_BINS} confidence bins. Hard "
        "voting gives no probabilities, so no Brier score or ECE.",
    ]
    (report_dir / "report.md").write_text("\n".join(lines) + "\n")


def _finite(value):
    """NaN (no Brier score for hard voting) becomes null: strict JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def metrics_table(rows):
    out = [
        "| model | TTA | accuracy | macro-F1 | weighted-F1 | Brier | ECE |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (name, mode), m in rows.items():
        brier = "-" if np.isnan(m["brier"]) else f"{m['brier']:.4f}"
        ece = "-" if np.isnan(m["ece"]) else f"{m['ece']:.4f}"
        out.append(
            f"| {name} | {mode} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | "
            f"{m['weighted_f1']:.4f} | {brier} | {ece} |"
        )
    return "\n".join(out)
