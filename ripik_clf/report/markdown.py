"""``WORKDIR/report/``: report.md with its figures, report.html (the same, figures inline,
with the runs table and training curves), metrics.json and ensemble.json."""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ripik_clf import workdir as wd
from ripik_clf.atomic import atomic_write_text
from ripik_clf.predict.calibration import negative_log_likelihood
from ripik_clf.predict.combiner import SoftVote
from ripik_clf.report import html, plots
from ripik_clf.report.leaderboard import USED_TO_CHOOSE, collect_runs, leaderboard_rows
from ripik_clf.report.metrics import ECE_BINS, brier_score, expected_calibration_error


@dataclass
class EnsembleReport:
    """Everything the report shows about one ensemble (validation at its TTA)."""

    names: list  # families, in weight order
    combiner: SoftVote  # how the families' probabilities become the submission's
    tta: str
    classes: list
    rows: dict  # {(name, TTA mode): validation metrics}
    test_rows: dict  # {name: test metrics}; {} without an answer key
    val_probabilities: np.ndarray  # (families, images, classes) at `tta`, calibrated
    val_y: np.ndarray
    val_paths: list
    n_test: int
    seconds: float
    member_temperatures: dict = field(default_factory=dict)  # {member: {TTA: T}}
    notes: list = field(default_factory=list)  # markdown lines after the header
    # With an answer key: the test images it labels, their classes and the submission's
    # probabilities (the ensemble's vote, temperature applied); None without one.
    test_y: np.ndarray = None
    test_probabilities: np.ndarray = None
    test_paths: list = None
    member_folders: dict = field(default_factory=dict)  # {run: its folder}, for the curves


def write_report(workdir, report):
    """Figures, ``report.md``, ``report.html`` and ``metrics.json`` (ensemble.py writes
    ``ensemble.json``)."""
    out = wd.report_dir(workdir)
    out.mkdir(parents=True, exist_ok=True)
    figures = _figures(out, report)
    metrics = {f"{name} | {mode}": m for (name, mode), m in report.rows.items()}
    metrics |= {f"test: {name}": m for name, m in report.test_rows.items()}
    wd.write_report_metrics(workdir, finite(metrics))
    text = _header(report) + _tables(report)
    lines = text + _figure_links(report, figures)
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    page = html.render_page("ripik_clf report", text + _footnote(report),
                            _html_sections(report, figures, workdir))  # fmt: skip
    atomic_write_text(out / "report.html", page)


def _figures(out, report):
    """Every figure, written as PNG: ``[(file name, caption)]`` in the report's order."""
    soft = report.combiner.apply(report.val_probabilities)  # as <out>_probabilities.csv
    named = dict(zip(report.names, report.val_probabilities)) | {"soft ensemble": soft}
    y, classes = report.val_y, report.classes
    figures = []
    if report.test_y is not None:
        test_p = report.test_probabilities
        plots.plot_confusion(report.test_y, test_p.argmax(1), classes,
                             out / "confusion_test.png", "submission on test")  # fmt: skip
        plots.plot_hardest(report.test_y, test_p, classes, report.test_paths,
                           out / "hardest_test.png", split="test")  # fmt: skip
        figures += [("confusion_test.png", "Confusion matrix: the submission on test"),
                    ("hardest_test.png", "Hardest test images")]  # fmt: skip
    for name, p in named.items():
        plots.plot_confusion(y, p.argmax(1), classes, out / f"confusion_{_slug(name)}.png", name)
        figures.append((f"confusion_{_slug(name)}.png", f"Confusion matrix: {name} (validation)"))
    plots.plot_reliability(y, named, out / "reliability.png")
    plots.plot_hardest(y, soft, classes, report.val_paths, out / "hardest.png")
    figures += [("reliability.png", "Reliability diagram (validation)"),
                ("hardest.png", "Hardest validation images")]  # fmt: skip
    if report.member_folders:
        histories = {run: _histories(folder) for run, folder in report.member_folders.items()}
        plots.plot_training_curves(histories, out / "training_curves.png")
        figures.append(("training_curves.png", "Training curves per run: head, then full"))
    return figures


def _histories(folder):
    tables = {phase: wd.read_history(wd.history_path(folder, phase)) for phase in ("head", "full")}
    return {phase: t.apply(pd.to_numeric, errors="coerce") for phase, t in tables.items() if len(t)}


RUN_COLUMNS = (
    "run",
    "phase",
    "epochs",
    "val_n",
    "val_accuracy",
    "val_accuracy_95",
    "val_macro_f1",
    "val_nll",
    "seconds",
    "note",
)  # the runs table's, shown


def _html_sections(report, figures, workdir):
    """report.html after the text: the figures in place, then the members' runs table."""
    out = wd.report_dir(workdir)
    sections = [("Figures", "\n".join(html.figure(out / name, caption)
                                       for name, caption in figures))]  # fmt: skip
    runs = [(name, record, metrics) for name, record, metrics in collect_runs(workdir)
            if name in report.member_folders]  # fmt: skip
    if runs:
        rows = leaderboard_rows(runs, batch_size=1)
        body = html.table(RUN_COLUMNS, [[r[c] for c in RUN_COLUMNS] for r in rows],
                          row_class=lambda row: "kept" if row[-1] else None)  # fmt: skip
        sections.append(("Runs of the members", f"<p>{USED_TO_CHOOSE}</p>\n{body}"))
    return sections


def _slug(name):
    return name.replace(" ", "_").replace("/", "_")


def _header(report):
    weights = ", ".join(f"{w:g}" for w in report.combiner.weights)
    return [
        "# ripik_clf evaluation report",
        "",
        f"Members: {', '.join(report.names)}; weights: {weights}; submission TTA: "
        f"`{report.tta}`. Validation split: {len(report.val_y)} real images (never augmented).",
        "",
        *report.notes,
    ]


VALIDATION_IS_IN_SAMPLE = (
    "Each member's scores are held out from its training; the ensemble's are not held out "
    "from the choices made on these same images (early stopping, start model, TTA, weights, "
    "temperature): optimistic, the more so the fewer the images. The held-out evidence "
    "behind each choice is listed under Automatic choices; the test table (with an answer "
    "key) is the honest estimate."
)


def _tables(report):
    lines = ["## Validation", "", VALIDATION_IS_IN_SAMPLE, "", metrics_table(report.rows), ""]
    if report.test_rows:
        test = {(k, report.tta): v for k, v in report.test_rows.items()}
        lines += ["## Test (answer key: held out from every choice)", "", metrics_table(test), ""]
    per_class = report.rows[("soft ensemble", report.tta)]["per_class"]
    lines += [
        "## Per class (soft ensemble, validation)",
        "",
        "| class | precision | recall | F1 | images |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in map(str, report.classes):
        m = per_class[c]
        lines.append(
            f"| {c} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1-score']:.4f} "
            f"| {m['support']:.0f} |"
        )
    return lines + [""]


def _figure_links(report, figures):
    return [
        "## Figures",
        "",
        "All of them inline: [report.html](report.html). "
        "[All metrics, per class too](metrics.json).",
        "",
        *[f"- [{caption}]({name})" for name, caption in figures],
        "",
        *_footnote(report),
    ]


def _footnote(report):
    rate = report.n_test / max(report.seconds, 1e-9)
    return [
        f"Test set: {report.n_test} images predicted in {report.seconds:.1f} s "
        f"({rate:.1f} images/s with `{report.tta}` TTA).",
        "",
        "Brier score: mean squared distance of the probabilities to the one-hot truth (lower is "
        f"better). ECE: expected calibration error over {ECE_BINS} confidence bins. Hard "
        "voting gives no probabilities, so no Brier score or ECE.",
    ]


def calibration_section(raw, calibrated, y, names, combiner, temperatures):
    """Report lines: each family's and the ensemble's validation NLL, ECE and Brier score
    before and after temperature scaling (fitted on these same images: in-sample).
    ``temperatures``: ``{family: "T1, T2"}`` as shown; ``combiner``: the ensemble's vote."""
    rows = [(n, temperatures[n], r, c) for n, r, c in zip(names, raw, calibrated)]
    rows.append(  # members vote with their softmaxes as they are
        ("soft ensemble", f"{combiner.temperature:.2f}", combiner.vote(raw), combiner.apply(raw))
    )
    lines = [
        "## Calibration (validation)",
        "",
        "Temperature scaling: one temperature per model and TTA, fitted here on its "
        "validation probabilities with the TTA it is used with (minimum negative "
        "log-likelihood, NLL; T = 1 with fewer than 5 mistakes), shown for each model's own "
        "calibration: members vote with their softmaxes as they are, so no temperature "
        "moves a vote. The ensemble's temperature, on top of the vote, is what "
        "`<out>_probabilities.csv` and `predict` use; it is kept at 1 unless a temperature "
        "fitted on half the images lowers the other half's log loss beyond noise (see the "
        "automatic choices). Every figure here is fitted and measured on the same images "
        "(in-sample): optimistic.",
        "",
        "| model | temperature | NLL before | NLL after | ECE before | ECE after "
        "| Brier before | Brier after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t, before, after in rows:
        cells = [
            f"{metric(y, p):.4f}"
            for metric in (negative_log_likelihood, expected_calibration_error, brier_score)
            for p in (before, after)
        ]
        lines.append(f"| {name} | {t} | " + " | ".join(cells) + " |")
    return lines + [""]


def finite(value):
    """NaN (no Brier score for hard voting) becomes null: strict JSON has no NaN."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def metrics_table(rows):
    out = [
        "| model | TTA | n | accuracy [95% interval] | macro-F1 | weighted-F1 | Brier | ECE |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, mode), m in rows.items():
        brier = "-" if np.isnan(m["brier"]) else f"{m['brier']:.4f}"
        ece = "-" if np.isnan(m["ece"]) else f"{m['ece']:.4f}"
        low, high = m.get("accuracy_interval", (np.nan, np.nan))
        out.append(
            f"| {name} | {mode} | {m['n']} | {m['accuracy']:.4f} [{low:.3f}, {high:.3f}] | "
            f"{m['macro_f1']:.4f} | {m['weighted_f1']:.4f} | {brier} | {ece} |"
        )
    return "\n".join(out)
