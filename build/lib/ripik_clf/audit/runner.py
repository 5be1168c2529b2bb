"""The audit of one dataset (and optionally its test folder), end to end."""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ripik_clf import workdir as wd
from ripik_clf.audit import findings as fd
from ripik_clf.audit.report import KINDS, write_audit
from ripik_clf.audit.signals import BLANK_STD, image_signals
from ripik_clf.data.dataset import class_names, load_dataset
from ripik_clf.data.splits import (
    load_splits,
    make_splits,
    split_record,
)
from ripik_clf.errors import UserError
from ripik_clf.progress import progress

FINDING_COLUMNS = [
    "kind", "image", "other_image", "label", "other_label", "suggestion", "score", "detail",
]  # fmt: skip


KIND_ORDER = {kind: order for order, kind in enumerate(KINDS)}


def run_audit(config, test_dir=None):
    """Audit the configured dataset; write ``WORKDIR/audit/``. Returns the findings table."""
    dataset, skipped = load_dataset(config.data)
    sides, split_note, saved_split = _sides(dataset, config)
    table = _image_table(dataset, sides, test_dir)
    signals = _signals(list(table["path"]))
    readable = np.array([s is not None for s in signals])
    features = _features(config, list(table["path"]))
    readable &= ~np.isnan(features).any(axis=1)
    classes = class_names(dataset)
    notes = []  # what could not be checked, for the report
    oof = kfold_oof_probabilities(Path(config.workdir), saved_split, config.train.models, classes)
    found = _findings(table, signals, features, readable, classes, config.split.seed, notes, oof)
    skipped_rows = [
        dict.fromkeys(FINDING_COLUMNS, "")
        | {"kind": "unreadable", "image": path, "score": np.nan, "detail": why}
        for path, why in skipped
    ]  # found by discovery, never rows of the dataset: listed all the same
    found = pd.concat([found, pd.DataFrame(skipped_rows, columns=FINDING_COLUMNS)])
    found = found.reset_index(drop=True)
    summary = {
        "classes": classes,
        "split_note": split_note,
        "notes": notes,
        "signals": signals,
        "thresholds": {"hamming": fd.NEAR_HAMMING, "cosine": fd.NEAR_COSINE, "z": fd.OUTLIER_Z},
    }
    write_audit(wd.audit_dir(config.workdir), found, table, summary)
    return found


def _sides(dataset, config):
    """The side of every image: the saved split when there is one for this dataset, else
    the split the pipeline would make (computed, not saved: the audit creates nothing).

    Returns:
        (sides, a note saying which split, the saved split's record or None)."""
    workdir = Path(config.workdir)
    saved = None
    note = f"the saved split ({wd.split_paths(workdir)[0]})"
    try:
        splits = load_splits(dataset, config.split, workdir)
        saved = split_record(splits, config.split)
    except UserError:
        splits = make_splits(dataset, config.split)
        note = "the split augment_offline.py would make with these settings (no saved split fits)"
    side = dict(
        zip(
            splits["image"],
            np.where(
                splits["split"] == "fold", "fold " + splits["fold"].astype(str), splits["split"]
            ),
        )
    )
    # An image the split left out (it cannot be decoded) has no side; it is listed anyway.
    return [side.get(i, "left out") for i in dataset["image"]], note, saved


def kfold_oof_probabilities(workdir, split, variants, classes):
    """Out-of-fold probabilities of a k-fold training of this split, when one exists:
    every fold run of one data variant (``runs/<variant>_fold<k>/``) trained on ``split``
    with the same classes, each with its validation probabilities of one phase (full
    first, then head, then probe). Their models are better than the audit's quick probe.

    Returns:
        ({image: probabilities}, a description) or (None, "") when there is none.
    """
    if split is None or not split["folds"]:
        return None, ""
    for variant in variants:
        for phase in ("full", "head", "probe"):
            found = {}
            for fold in range(split["folds"]):
                run = wd.run_dir(workdir, wd.run_name(variant, fold))
                record = wd.read_run_record(run)
                if record is None or record.split != split or record.classes != classes:
                    break
                probabilities = wd.read_val_probabilities(run, phase, classes)
                if probabilities is None:
                    break
                found.update(probabilities)
            else:
                return found, f"the {split['folds']} {variant} fold runs ({phase} phase)"
    return None, ""


def _image_table(dataset, sides, test_dir):
    table = dataset[["image", "path", "label"]].assign(side=sides)
    if not test_dir:
        return table.reset_index(drop=True)
    from ripik_clf.predict.submission import test_images

    ids, _ = test_images(test_dir)  # the unusable ones: ensemble.py names them
    test = pd.DataFrame(
        {
            "image": [f"test/{i}" for i in ids],
            "path": [str((Path(test_dir) / i).resolve()) for i in ids],
            "label": None,
            "side": "test",
        }
    )
    return pd.concat([table, test], ignore_index=True)


def _signals(paths):
    bar = progress(len(paths), "audit: hash images")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        signals = []
        for result in pool.map(image_signals, paths):
            signals.append(result)
            bar.update(1)
    bar.close()
    return signals


def _features(config, paths):
    """Pooled backbone features, from the head phase's cache (computed there if absent)."""
    from ripik_clf.train import features as feature_cache
    from ripik_clf.train.phases import frozen_backbone

    _, extractor, size, cache = frozen_backbone(config)
    features, _ = feature_cache.extract_features(
        paths, extractor, size, cache, desc="audit: features"
    )
    return features


def _findings(table, signals, features, readable, classes, seed, notes, oof=(None, "")):
    index = {c: i for i, c in enumerate(classes)}
    labelled = readable & table["label"].notna().to_numpy()
    y = np.array([index.get(label, -1) for label in table["label"]])
    rows = [
        _row("unreadable", table, i, detail="cannot be decoded") for i in np.flatnonzero(~readable)
    ]
    ok = np.flatnonzero(readable)
    keys = [[signals[i][k] for i in ok] for k in ("file_sha1", "pixel_sha1", "phash")]
    pairs = fd.duplicate_pairs(*keys, features[ok])
    pairs[["i", "j"]] = ok[pairs[["i", "j"]].to_numpy()] if len(pairs) else pairs[["i", "j"]]
    labels = [label if isinstance(label, str) else None for label in table["label"]]
    for pair in fd.classify_pairs(pairs, labels, list(table["side"])).itertuples(index=False):
        detail = f"{pair.match}; hash distance {pair.hamming}/64, feature cosine {pair.cosine:.3f}"
        rows.append(_row(pair.kind, table, pair.i, pair.j, score=pair.cosine, detail=detail))
    rows += _label_errors(table, features, y, labelled, classes, seed, notes, oof)
    rows += _outliers(table, signals, features, y, labelled, readable, classes)
    found = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    # Within each kind, the most certain first: that is the order to review them in.
    return found.sort_values("score", ascending=False, kind="stable").sort_values(
        "kind", key=lambda kind: kind.map(KIND_ORDER), kind="stable", ignore_index=True
    )


def _row(kind, table, i, j=None, *, suggestion="", score=np.nan, detail=""):
    label = table["label"].iat[i]
    return {
        "kind": kind,
        "image": table["path"].iat[i],
        "other_image": "" if j is None else table["path"].iat[j],
        "label": label if isinstance(label, str) else "",
        "other_label": ""
        if j is None or not isinstance(table["label"].iat[j], str)
        else table["label"].iat[j],
        "suggestion": suggestion,
        "score": score,
        "detail": f"{table['side'].iat[i]}"
        + ("" if j is None else f" / {table['side'].iat[j]}")
        + f": {detail}",
    }


def _label_errors(table, features, y, labelled, classes, seed, notes, oof=(None, "")):
    """Confident learning on out-of-fold probabilities: a k-fold training's when they
    cover every labelled image (``oof``), else a logistic probe's, fitted here."""
    rows = np.flatnonzero(labelled)
    by_image, source = oof
    images = list(table["image"].iloc[rows])
    if by_image is not None and all(image in by_image for image in images):
        notes.append(f"Label errors: out-of-fold probabilities of {source}.")
        probabilities = np.stack([by_image[image] for image in images])
        return _label_error_rows(table, rows, y, probabilities, classes)
    if by_image is not None:
        notes.append(f"Label errors: {source} do not cover every image; a probe was fitted.")
    probabilities = _probe_oof(features[rows], y[rows], classes, seed, notes)
    if probabilities is None:
        return []
    return _label_error_rows(table, rows, y, probabilities, classes)


def _probe_oof(features, y, classes, seed, notes):
    """Out-of-fold probabilities of a logistic probe (C by CV log-loss), or None when a
    class is too small to cross-validate."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from ripik_clf.models.probe import fit_probe

    counts = np.bincount(y, minlength=len(classes))
    folds = int(min(5, counts[counts > 0].min()))
    if folds < 2 or (counts > 0).sum() < 2:
        notes.append("Label errors not checked: a class has fewer than 2 readable images.")
        print(f"audit: {notes[-1]}")
        return None
    probe = fit_probe(features, y, seed, folds, scoring="neg_log_loss").best_estimator_
    return cross_val_predict(
        probe,
        features,
        y,
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        method="predict_proba",
    )


def _label_error_rows(table, rows, y, probabilities, classes):
    suspect, suggested, _ = fd.confident_learning(y[rows], probabilities)
    found = []
    for k in np.flatnonzero(suspect):
        i, given, better = rows[k], y[rows[k]], suggested[k]
        detail = f"p({classes[given]}) = {probabilities[k, given]:.3f} out of fold"
        found.append(
            _row(
                "label error",
                table,
                i,
                suggestion=classes[better],
                score=probabilities[k, better],
                detail=detail,
            )
        )
    return found


def _outliers(table, signals, features, y, labelled, readable, classes):
    found = []
    distance, z = fd.outlier_scores(features, y, labelled)
    for i in np.flatnonzero(readable):
        blank = signals[i]["gray_std"] < BLANK_STD
        if blank or z[i] > fd.OUTLIER_Z:
            detail = (
                "blank (uniform) image"
                if blank
                else f"feature distance {distance[i]:.3f} to the nearest class centre"
            )
            found.append(_row("outlier", table, i, score=float(z[i]), detail=detail))
    return found
