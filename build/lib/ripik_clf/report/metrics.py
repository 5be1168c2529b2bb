"""Classification metrics (from scikit-learn) and calibration metrics (Brier, ECE)."""

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, f1_score


def classification_metrics(y_true, probabilities, classes):
    """Accuracy, macro/weighted F1 and the per-class report for integer labels.

    Args:
        y_true: integer class indices, shape (N,).
        probabilities: softmax outputs, shape (N, C).
        classes: class names in output order.
    """
    from ripik_clf.evidence import paired_interval

    y_pred = np.asarray(probabilities).argmax(axis=1)
    labels = list(range(len(classes)))
    _, low, high = paired_interval(y_pred == np.asarray(y_true), level=0.95)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "accuracy_interval": [low, high],  # 95% bootstrap over the images
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


ECE_BINS = 15


def brier_score(y_true, probabilities):
    """Multi-class Brier score: mean over images of the squared distance to the one-hot."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    onehot = np.eye(probabilities.shape[1])[np.asarray(y_true)]
    return float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


def calibration_bins(y_true, probabilities, bins=ECE_BINS):
    """Per equal-width confidence bin: (mean confidence, accuracy, count)."""
    confidence = np.asarray(probabilities).max(axis=1)
    correct = np.asarray(probabilities).argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin b holds confidences in (edges[b], edges[b+1]]; confidence is never 0.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        rows.append(
            (
                float(confidence[mask].mean()) if mask.any() else np.nan,
                float(correct[mask].mean()) if mask.any() else np.nan,
                int(mask.sum()),
            )
        )
    return rows


def expected_calibration_error(y_true, probabilities, bins=ECE_BINS):
    """Sum over bins of |accuracy - confidence| weighted by the bin's share of images."""
    rows = calibration_bins(y_true, probabilities, bins)
    total = sum(count for _, _, count in rows)
    return float(sum(count / total * abs(acc - conf) for conf, acc, count in rows if count))


def summary_row(y_true, probabilities, classes):
    metrics = classification_metrics(y_true, probabilities, classes)
    metrics["brier"] = brier_score(y_true, probabilities)
    metrics["ece"] = expected_calibration_error(y_true, probabilities)
    return metrics
