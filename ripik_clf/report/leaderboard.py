"""The runs table (``python -m ripik_clf runs``): one row per run and phase, read from
each run's record and metrics, best validation macro-F1 first.

Its validation scores are the ones each phase chose with (early stopping, the best epoch):
a maximum over epochs, optimistic by a little; ``val_n`` and the 95% interval say how far
they can be trusted (``USED_TO_CHOOSE`` is printed with the table)."""

import math

import pandas as pd

from ripik_clf import workdir as wd

COLUMNS = [
    "run", "phase", "variant", "backbone", "image_size", "seed", "epochs", "steps",
    "val_n", "val_accuracy", "val_accuracy_95", "val_macro_f1", "val_nll", "seconds",
    "images_per_s", "note",
]  # fmt: skip
USED_TO_CHOOSE = (
    "val_*: the validation images each phase chose its best epoch on (a maximum: "
    "optimistic); val_accuracy_95: 95% bootstrap interval over those val_n images."
)
PHASE_ORDER = ("head", "probe", "full")


def leaderboard_rows(runs, batch_size):
    """Rows from ``[(run name, RunRecord, {phase: metrics})]`` (pure), sorted by
    validation macro-F1 (best first), then by run and phase."""
    rows = []
    for name, record, metrics in runs:
        for phase in PHASE_ORDER:
            m = metrics.get(phase)
            if not isinstance(m, dict):
                continue
            epochs = int(_number(m.get("epochs")) or 0)
            images = int(_number(m.get("train_images")) or 0)
            seconds = float(_number(m.get("seconds")) or 0.0)
            n = _number(m.get("n"))
            steps = epochs * math.ceil(images / batch_size) if epochs else 0
            rows.append({
                "run": name, "phase": phase, "variant": record.variant,
                "backbone": record.backbone, "image_size": record.image_size,
                "seed": record.seed, "epochs": epochs, "steps": steps,
                "val_n": None if n is None else int(n), "val_accuracy": _number(m.get("accuracy")),
                "val_accuracy_95": _interval(m.get("accuracy_interval")),
                "val_macro_f1": _number(m.get("macro_f1")),
                "val_nll": _number(m.get("nll")), "seconds": round(seconds, 1),
                "images_per_s": round(images * max(epochs, 1) / seconds, 1) if seconds else None,
                "note": _kept_start(phase, m),
            })  # fmt: skip
    rows.sort(key=lambda r: (-(r["val_macro_f1"] or 0), r["run"], PHASE_ORDER.index(r["phase"])))
    return rows


def _kept_start(phase, metrics):
    """Said of a full phase no epoch of which beat its start model: it is that model."""
    if phase == "full" and metrics.get("improved_on_start") is False:
        return f"no epoch beat the start: full.keras is {metrics.get('started_from', 'head')}"
    return None


def _number(value):
    """A recorded number as a float; None for anything else (a hand-edited or damaged
    metrics.json: "many", 1e400, a list), shown blank instead of breaking the table."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 <= value < 1e15 else None


def _interval(value):
    """``"low-high"`` of a recorded interval; None when not recorded (older runs)."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return f"{low:.3f}-{high:.3f}"


def collect_runs(workdir):
    """``[(run name, RunRecord, metrics)]`` of every run folder with a record."""
    root = wd.run_dir(workdir, "x").parent
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir() or wd.is_run_in_progress(folder.name):
            continue
        record = wd.read_run_record(folder)
        if record is not None:
            found.append((folder.name, record, wd.read_run_metrics(folder)))
    return found


def write_leaderboard(workdir, batch_size):
    """The table as a DataFrame, also written to ``WORKDIR/runs/leaderboard.csv``."""
    table = pd.DataFrame(leaderboard_rows(collect_runs(workdir), batch_size), columns=COLUMNS)
    if len(table):
        wd.write_leaderboard(workdir, table)
    return table


def format_table(table):
    """A Markdown table for the terminal."""

    def cell(value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return f"{value:.4f}" if isinstance(value, float) and value < 10 else str(value)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)
