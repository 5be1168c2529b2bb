"""Classification metrics, all from scikit-learn."""

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, f1_score


def classification_metrics(y_true, probabilities, classes):
    """Accuracy, macro/weighted F1 and the per-class report for integer labels.

    Args:
        y_true: integer class indices, shape (N,).
        probabilities: softmax outputs, shape (N, C).
        classes: class names in output order.
    """
    y_pred = np.asarray(probabilities).argmax(axis=1)
    labels = list(range(len(classes)))
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "weighted_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        "per_class": classification_report(
            y_true,
            y_pred,
            labels=labels,
            target_names=[str(c) for c in classes],
            output_dict=True,
            zero_division=0,
        ),
    }
