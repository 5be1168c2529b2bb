"""The report's figures: confusion matrices, the reliability diagram, the hardest images,
the training curves."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from ripik_clf.atomic import atomic_write  # noqa: E402
from ripik_clf.data.images import read_rgb  # noqa: E402
from ripik_clf.report.metrics import expected_calibration_error  # noqa: E402


def _save(fig, path, dpi):
    """Written whole (a kill never leaves half a PNG) and closed."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    plt.close(fig)


def plot_confusion(y_true, y_pred, classes, path, title):
    """Rows: the true class. Each cell shows its count out of the row's images and that
    fraction ("4/5" says more than "0.80" on a small validation split)."""
    counts = confusion_matrix(y_true, y_pred, labels=range(len(classes)))
    totals = counts.sum(axis=1, keepdims=True)
    matrix = counts / np.maximum(totals, 1)
    side = max(5, 0.55 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), [str(c) for c in classes], rotation=90)
    ax.set_yticks(range(len(classes)), [f"{c} ({t})" for c, t in zip(classes, totals[:, 0])])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (images)")
    ax.set_title(f"{title}: confusion matrix ({int(totals.sum())} images; count/row, fraction)")
    if len(classes) <= 25:
        size = 7 if len(classes) <= 12 else 5
        for (i, j), count in np.ndenumerate(counts):
            if count:
                ax.text(j, i, f"{count}/{totals[i, 0]}\n{matrix[i, j]:.2f}", ha="center",
                        va="center", fontsize=size,
                        color="white" if matrix[i, j] > 0.5 else "black")  # fmt: skip
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    _save(fig, path, 110)


def plot_reliability(y_true, named_probabilities, path, split="validation"):
    """Accuracy against confidence in bins of equal counts (as many bins as the images
    support: a 15-bin curve of 15 images is a zig-zag), each point labelled with its
    count; below, a histogram of the confidences. ECE in the legend: 15 equal bins."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6.5, 8), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    for name, probabilities in named_probabilities.items():
        bins = adaptive_bins(y_true, probabilities)
        ece = expected_calibration_error(y_true, probabilities)
        (line,) = ax.plot(bins[:, 0], bins[:, 1], marker="o", label=f"{name} (ECE {ece:.3f})")
        for confidence, accuracy, count in bins:
            ax.annotate(f"{count:.0f}", (confidence, accuracy), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=7, color=line.get_color())  # fmt: skip
        hist.hist(probabilities.max(axis=1), bins=20, range=(0, 1), histtype="step",
                  color=line.get_color())  # fmt: skip
    n = len(y_true)
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability ({split}, {n} images, {len(bins)} bins of ~{n // len(bins)})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper left", fontsize=8)
    hist.set_xlabel("confidence (max probability)")
    hist.set_ylabel("images")
    fig.tight_layout()
    _save(fig, path, 110)


def adaptive_bins(y_true, probabilities):
    """``(bins, 3)``: mean confidence, accuracy and count of bins holding equal numbers
    of images, about 15 images each (2 to 15 bins)."""
    confidence = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == np.asarray(y_true)
    order = np.argsort(confidence, kind="stable")
    count = int(np.clip(len(order) // 15, 2, 15)) if len(order) >= 2 else 1
    return np.array([
        (confidence[part].mean(), right[part].mean(), len(part))
        for part in np.array_split(order, count) if len(part)
    ])  # fmt: skip


def hardest_mistakes(y_true, probabilities, count):
    """Indices of the wrong predictions, most confident first."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(y_true))
    return wrong[np.argsort(-probabilities[wrong].max(axis=1), kind="stable")][:count]


def hardest_images(y_true, probabilities, count):
    """The sheet's images: the most confident mistakes, then (to fill the last row, or the
    sheet when there are few mistakes) the correct ones the model was least sure of."""
    wrong = hardest_mistakes(y_true, probabilities, count)
    right = np.flatnonzero(probabilities.argmax(axis=1) == np.asarray(y_true))
    unsure = right[np.argsort(probabilities[right].max(axis=1), kind="stable")]
    cols = SHEET_COLUMNS
    wanted = count if len(wrong) < cols else min(count, -(-len(wrong) // cols) * cols)
    return list(wrong) + list(unsure[: max(0, wanted - len(wrong))])


SHEET_COLUMNS = 4


def plot_hardest(y_true, probabilities, classes, image_paths, path, count=16, split="validation"):
    chosen = hardest_images(y_true, probabilities, count)
    rows = max(1, -(-len(chosen) // SHEET_COLUMNS))
    fig, axes = plt.subplots(rows, SHEET_COLUMNS, figsize=(3 * SHEET_COLUMNS, 3.7 * rows),
                             squeeze=False)  # fmt: skip
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, chosen):
        ax.imshow(read_rgb(image_paths[index]))
        first, second = np.argsort(-probabilities[index])[:2]
        wrong = first != y_true[index]
        ax.set_title(
            f"{Path(image_paths[index]).name}\ntrue {classes[y_true[index]]}"
            f"{' (mistake)' if wrong else ''}\n1. {classes[first]} "
            f"{probabilities[index, first]:.2f}  2. {classes[second]} "
            f"{probabilities[index, second]:.2f}",
            fontsize=8, color="#b00020" if wrong else "#333333",
        )  # fmt: skip
    if not chosen:
        axes.flat[0].text(0.5, 0.5, f"no {split} images", ha="center")
    mistakes = sum(probabilities[i].argmax() != y_true[i] for i in chosen)
    fig.suptitle(f"Hardest {split} images: {mistakes} most confident mistakes (red), then "
                 "the correct ones least sure (top-2 probabilities)")  # fmt: skip
    fig.tight_layout()
    _save(fig, path, 100)


def plot_training_curves(histories, path):
    """Per run: loss and validation loss, and validation macro-F1, by epoch, the head
    phase then the full phase (a dotted line where the full phase starts).
    ``histories``: ``{run: {phase: DataFrame}}`` (phases without a history left out)."""
    runs = [r for r, phases in histories.items() if phases]
    fig, axes = plt.subplots(max(1, len(runs)), 2, figsize=(11, 3.2 * max(1, len(runs))),
                             squeeze=False)  # fmt: skip
    for (loss_ax, f1_ax), run in zip(axes, runs):
        start = 0
        for phase, table in histories[run].items():
            epochs = start + np.arange(1, len(table) + 1)
            for column, style in (("loss", "-"), ("val_loss", "--")):
                if column in table:
                    loss_ax.plot(epochs, table[column], style, label=f"{phase} {column}")
            if "val_macro_f1" in table:
                f1_ax.plot(epochs, table["val_macro_f1"], marker=".", label=phase)
            if start:
                for ax in (loss_ax, f1_ax):
                    ax.axvline(start + 0.5, color="grey", linestyle=":", linewidth=1)
            start = epochs[-1] if len(epochs) else start
        loss_ax.set_title(f"{run}: loss")
        f1_ax.set_title(f"{run}: validation macro-F1")
        for ax in (loss_ax, f1_ax):
            ax.set_xlabel("epoch (head, then full)")
            ax.legend(fontsize=7)
    if not runs:
        axes[0, 0].text(0.5, 0.5, "no training history", ha="center")
    fig.tight_layout()
    _save(fig, path, 100)
