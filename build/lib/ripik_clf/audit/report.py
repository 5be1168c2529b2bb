"""What the audit writes: ``audit.csv``, ``audit.md``, one contact sheet per kind, and
review files in the formats ``data.relabel`` and ``data.exclude`` read."""

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from ripik_clf.atomic import atomic_write_csv, atomic_write_text
from ripik_clf.data.images import BadImage, read_rgb

KINDS = {  # kind -> what it means, in the order the report lists them
    "label conflict": "the same photo (or a near copy) under two different labels",
    "split leak": "copies of one photo on both sides of the split (or in train and test)",
    "label error": "a label that the other images' labels contradict (confident learning)",
    "outlier": "far from every class (feature distance), or blank",
    "redundant": "copies of one photo within one class and side (it weighs double)",
    "unreadable": "cannot be decoded",
}
THUMB = 112  # pixels per thumbnail
SHEET_LIMIT = 36  # findings per contact sheet (all of them are in audit.csv)


def write_audit(out_dir, found, table, summary):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(found, out_dir / "audit.csv")
    ids = dict(zip(table["path"], table["image"]))
    errors = found[found["kind"] == "label error"]
    atomic_write_csv(
        pd.DataFrame({"image": errors["image"].map(ids), "label": errors["suggestion"]}),
        out_dir / "relabel_suggestions.csv",
    )
    sheets = {}
    for kind in KINDS:
        rows = found[found["kind"] == kind]
        if len(rows):
            sheets[kind] = out_dir / f"sheet_{kind.replace(' ', '_')}.png"
            contact_sheet(rows.head(SHEET_LIMIT), sheets[kind])
    text = markdown(found, table, summary, sheets, ids)
    atomic_write_text(out_dir / "audit.md", text)
    counts = ", ".join(f"{(found.kind == k).sum()} {k}" for k in KINDS if (found.kind == k).any())
    print(f"audit: {counts or 'no findings'}; wrote {out_dir / 'audit.md'} and audit.csv")


def contact_sheet(rows, path):
    """Thumbnails of each finding (both images of a pair) with a caption, in a grid."""
    pair = bool(rows["other_image"].astype(bool).any())
    cell_w, cell_h = THUMB * (2 if pair else 1) + (8 if pair else 24), THUMB + 30
    per_row = 4 if pair else 7
    n_rows = -(-len(rows) // per_row)
    sheet = Image.new("RGB", (cell_w * per_row, cell_h * n_rows), "white")
    draw = ImageDraw.Draw(sheet)
    for k, row in enumerate(rows.itertuples(index=False)):
        x, y = (k % per_row) * cell_w, (k // per_row) * cell_h
        for n, image in enumerate([row.image, row.other_image] if pair else [row.image]):
            sheet.paste(_thumbnail(image), (x + 4 + n * THUMB, y + 2))
        draw.text((x + 4, y + THUMB + 4), _caption(row)[: cell_w // 6], fill="black")
        draw.text((x + 4, y + THUMB + 16), Path(row.image).name[: cell_w // 6], fill="gray")
    sheet.save(path)


def _thumbnail(path):
    try:
        image = Image.fromarray(read_rgb(path))
    except BadImage:
        return Image.new("RGB", (THUMB, THUMB), "red")
    image.thumbnail((THUMB, THUMB))
    canvas = Image.new("RGB", (THUMB, THUMB), "white")
    canvas.paste(image, ((THUMB - image.width) // 2, (THUMB - image.height) // 2))
    return canvas


def _caption(row):
    if row.kind == "unreadable":
        return row.detail.split(": ", 1)[-1]
    if row.kind == "label error":
        return f"{row.label} -> {row.suggestion} ({row.score:.2f})"
    if row.other_image:
        return f"{row.label or 'test'} | {row.other_label or 'test'} cos {row.score:.2f}"
    return f"{row.label or 'test'}: {row.detail.split(': ', 1)[-1]}"


def markdown(found, table, summary, sheets, ids):
    labelled = table[table["label"].notna()]
    lines = [
        "# Data audit",
        "",
        f"{len(labelled)} labelled images in {len(summary['classes'])} classes"
        + (
            f", {int((table.side == 'test').sum())} test images"
            if (table.side == "test").any()
            else ""
        )
        + f". Sides: {summary['split_note']}.",
        "",
        "| finding | count | what it means |",
        "|---|---:|---|",
        *[f"| {k} | {int((found.kind == k).sum())} | {meaning} |" for k, meaning in KINDS.items()],
        "",
        *[f"{note}\n" for note in summary["notes"]],
        *_balance(labelled),
        *_sizes(summary["signals"]),
    ]
    for kind in KINDS:
        rows = found[found["kind"] == kind]
        if len(rows):
            lines += _section(kind, rows, sheets[kind], ids)
    lines += _method(summary)
    return "\n".join(lines) + "\n"


def _balance(labelled):
    counts = pd.crosstab(labelled["label"], labelled["side"])
    header = "| class | " + " | ".join(counts.columns) + " | all |"
    lines = ["## Class balance", "", header, "|---" + "|---:" * (len(counts.columns) + 1) + "|"]
    for label, row in counts.iterrows():
        lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + f" | {row.sum()} |")
    return lines + [""]


def _sizes(signals):
    sizes = np.array([(s["width"], s["height"]) for s in signals if s is not None])
    if not len(sizes):
        return []
    stats = [np.min(sizes, 0), np.median(sizes, 0), np.max(sizes, 0)]
    cells = " | ".join(f"{w:.0f} x {h:.0f}" for w, h in stats)
    return ["## Image sizes (width x height)", "", "| min | median | max |", "|---|---|---|",
            f"| {cells} |", ""]  # fmt: skip


def _section(kind, rows, sheet, ids):
    lines = [f"## {kind} ({len(rows)})", "", f"![{kind}]({sheet.name})", ""]
    lines += ["| image | other image | label | suggestion | score | detail |",
              "|---|---|---|---|---:|---|"]  # fmt: skip
    for row in rows.head(25).itertuples(index=False):
        other = ids.get(row.other_image, row.other_image)
        label = row.label + (f" / {row.other_label}" if row.other_label else "")
        lines.append(
            f"| {ids.get(row.image, row.image)} | {other} | {label} | {row.suggestion} "
            f"| {'' if pd.isna(row.score) else f'{row.score:.3f}'} | {row.detail} |"
        )
    if len(rows) > 25:
        lines.append(f"| ... {len(rows) - 25} more in audit.csv | | | | | |")
    return lines + [""]


def _method(summary):
    t = summary["thresholds"]
    return [
        "## How",
        "",
        f"- Duplicates: same file bytes, same decoded pixels, or near copies: perceptual (DCT) "
        f"hash distance <= {t['hamming']} of 64 bits and backbone-feature cosine >= "
        f"{t['cosine']}.",
        "- Label errors: confident learning (Northcutt et al., 2021) on out-of-fold "
        "probabilities: a k-fold training's when its fold runs cover every image, else a "
        "logistic probe's on the cached features; implemented in ripik_clf (cleanlab is "
        "AGPL-3.0).",
        f"- Outliers: robust z-score > {t['z']:g} of the feature distance to the nearest "
        "class centre, or a uniform (blank) image.",
        "",
        "To act on it: review `relabel_suggestions.csv`, keep the rows you agree with and "
        "pass it as `--set data.relabel=FILE`; list images to drop, one per line, in a file "
        "passed as `--set data.exclude=FILE`. Either changes the dataset: rerun "
        "`augment_offline.py --resplit` and retrain.",
    ]
