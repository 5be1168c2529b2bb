"""The report's rows of metrics (pure: probabilities in, metrics out)."""

import sys
from pathlib import Path

import numpy as np

from ripik_clf.errors import UserError
from ripik_clf.predict.combiner import SoftVote
from ripik_clf.predict.voting import hard_vote
from ripik_clf.report.metrics import summary_row
from ripik_clf.workdir import load_csv


def validation_rows(probabilities_by_mode, y, names, classes, combiner, tta=None):
    """``{(row name, TTA mode): metrics}``: each family, the soft and hard ensemble, and
    (when the weights are not equal) the plain average they replace. The soft ensemble
    is ``combiner``'s; its temperature (fitted for the submission's ``tta``) applies at
    that TTA only."""
    rows = {}
    equal = SoftVote.equal(len(names))
    for mode, probabilities in probabilities_by_mode.items():
        for name, p in zip(names, probabilities):
            rows[(name, mode)] = summary_row(y, p, classes)
        soft = combiner.apply(probabilities) if mode == tta else combiner.vote(probabilities)
        rows[("soft ensemble", mode)] = summary_row(y, soft, classes)
        rows[("hard ensemble", mode)] = hard_row(y, probabilities, classes, combiner.weights)
        if len(set(combiner.weights)) > 1:  # how the chosen weights compare with plain averaging
            rows[("soft, equal weights", mode)] = summary_row(y, equal.vote(probabilities), classes)
    return rows


def hard_row(y_true, probabilities, classes, weights=None):
    """Hard voting yields labels, not probabilities: no Brier score or ECE."""
    onehot = np.eye(len(classes))[hard_vote(probabilities, weights)]
    return dict(summary_row(y_true, onehot, classes), brier=np.nan, ece=np.nan)


def read_answers(answers, id_col, label_col):
    """``{image id: label}`` from an answer key CSV (its first two columns when the
    submission's column names are not there); None when there is no key."""
    if answers is None:
        return None
    if not Path(answers).is_file():
        raise UserError(f"answer key {answers} not found (--answers names a CSV file)")
    key = load_csv(answers, (), "pass a CSV of image_id,label")
    if key.shape[1] < 2:
        raise UserError(f"answer key {answers} needs two columns (image id, label)")
    ids = key[id_col] if id_col in key else key.iloc[:, 0]
    labels = key[label_col] if label_col in key else key.iloc[:, 1]
    return dict(zip(ids, labels))


def labelled_test(truth, ids, classes):
    """The test images the answer key labels with a known class: their positions in
    ``ids`` and their class indices."""
    index = {c: i for i, c in enumerate(classes)}
    known = [i for i, name in enumerate(ids) if truth.get(name) in index]
    if not known:
        raise UserError(
            f"the answer key labels none of the {len(ids)} test images with a known class "
            f"(test ids look like {ids[0]!r}, the key's like {next(iter(truth), None)!r}; "
            f"classes: {', '.join(classes)})"
        )
    return known, np.array([index[truth[ids[i]]] for i in known])


def test_rows(truth, ids, members, families, classes, combiner):
    """``{row name: metrics}`` on the test images the answer key labels: each member
    (``{name: probabilities}``), each family's fold mean (``{name: probabilities}``, when
    there are fold runs) and the two ensembles (the soft one ``combiner``'s, as in
    ``<out>_probabilities.csv``); {} without a key."""
    if truth is None:
        return {}
    known, y = labelled_test(truth, ids, classes)
    if len(known) < len(ids):
        print(
            f"note: test scores cover the {len(known)} of {len(ids)} test images the answer "
            "key labels with a known class",
            file=sys.stderr,
        )
    rows = {name: summary_row(y, p[known], classes) for name, p in members.items()}
    if len(families) < len(members):  # fold runs: each model family's mean too
        rows |= {
            f"{n} (mean of folds)": summary_row(y, p[known], classes) for n, p in families.items()
        }
    stacked = np.stack(list(families.values()))[:, known]
    rows["soft ensemble"] = summary_row(y, combiner.apply(stacked), classes)
    rows["hard ensemble"] = hard_row(y, stacked, classes, combiner.weights)
    return rows
