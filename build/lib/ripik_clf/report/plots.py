"""The report's figures: confusion matrices, the reliability diagram, the hardest errors."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from ripik_clf.data.images import read_rgb  # noqa: E402
from ripik_clf.report.metrics import ECE_BINS, calibration_bins, expected_calibration_error  # noqa: E402


def plot_confusion(y_true, y_pred, classes, path, title):
    matrix = confusion_matrix(y_true, y_pred, labels=range(len(classes))).astype(float)
    matrix /= np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = max(5, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), [str(c) for c in classes], rotation=90)
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title}: confusion matrix (rows sum to 1)")
    if len(classes) <= 20:
        for (i, j), value in np.ndenumerate(matrix):
            if value >= 0.005:
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value > 0.5 else "black",
                )
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(y_true, named_probabilities, path):
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    for name, probabilities in named_probabilities.items():
        rows = [(c, a) for c, a, n in calibration_bins(y_true, probabilities) if n]
        ece = expected_calibration_error(y_true, probabilities)
        ax.plot(*zip(*rows), marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram ({ECE_BINS} bins, validation)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def hardest_mistakes(y_true, probabilities, count):
    """Indices of the wrong predictions, most confident first."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(y_true))
    return wrong[np.argsort(-probabilities[wrong].max(axis=1), kind="stable")][:count]


def plot_hardest(y_true, probabilities, classes, image_paths, path, count=16):
    chosen = hardest_mistakes(y_true, probabilities, count)
    cols = 4
    rows = max(1, int(np.ceil(len(chosen) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, chosen):
        ax.imshow(read_rgb(image_paths[index]))
        predicted = probabilities[index].argmax()
        ax.set_title(
            f"{Path(image_paths[index]).name}\ntrue {classes[y_true[index]]}, "
            f"predicted {classes[predicted]}\nconfidence {probabilities[index, predicted]:.2f}",
            fontsize=8,
        )
    if not len(chosen):
        axes.flat[0].text(0.5, 0.5, "no mistakes on validation", ha="center")
    fig.suptitle("Most confident mistakes of the ensemble (validation)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
