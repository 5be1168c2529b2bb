"""report.html: one self-contained page (figures inline), the report's tables rendered,
test figures with an answer key, a hardest-images sheet that fills, bins that adapt."""

import base64
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import write_image
from ripik_clf import workdir as wd
from ripik_clf.predict.combiner import SoftVote
from ripik_clf.report.html import markdown_to_html
from ripik_clf.report.markdown import EnsembleReport, write_report
from ripik_clf.report.plots import SHEET_COLUMNS, adaptive_bins, hardest_images

CLASSES = ["a", "b", "c"]


def _probabilities(y, wrong, rng):
    p = rng.dirichlet(np.ones(3), len(y)) * 0.3
    p[np.arange(len(y)), y] += 0.7
    for i in wrong:
        p[i] = np.roll(p[i], 1)  # the largest moves off the truth
    return p / p.sum(1, keepdims=True)


def _report(tmp_path, answers, rng):
    y = np.arange(24) % 3
    val = _probabilities(y, wrong=[1, 5, 9], rng=rng)
    paths = [str(write_image(tmp_path / "img" / f"v{i}.png", seed=i)) for i in range(24)]
    folder = tmp_path / "w" / "runs" / "original"
    folder.mkdir(parents=True)
    history = pd.DataFrame({
        "epoch": [0, 1, 2], "loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.8, 0.7],
        "val_macro_f1": [0.5, 0.7, 0.8],
    })  # fmt: skip
    history.to_csv(wd.history_path(folder, "head"), index=False)
    history.to_csv(wd.history_path(folder, "full"), index=False)
    wd.write_run_record(folder, wd.RunRecord(CLASSES, 32, "efficientnet_lite0", variant="original"))
    kept = {"epochs": 3, "accuracy": 0.8, "macro_f1": 0.8, "n": 24, "started_from": "head",
            "improved_on_start": False}  # fmt: skip
    wd.write_run_metrics(folder, {"head": dict(kept, improved_on_start=None), "full": kept})
    row = {"accuracy": 0.875, "accuracy_interval": (0.7, 0.95), "n": 24, "macro_f1": 0.87,
           "weighted_f1": 0.87, "brier": 0.2, "ece": 0.05,
           "per_class": {c: {"precision": 1, "recall": 1, "f1-score": 1, "support": 8}
                         for c in CLASSES}}  # fmt: skip
    extra = {}
    if answers:
        extra = dict(test_y=y, test_probabilities=_probabilities(y, [0, 2], rng),
                     test_paths=paths)  # fmt: skip
    return EnsembleReport(
        ["original"], SoftVote((1.0,)), "none", CLASSES,
        rows={("original", "none"): row, ("soft ensemble", "none"): row},
        test_rows={"soft ensemble": row} if answers else {},
        val_probabilities=val[None], val_y=y, val_paths=paths, n_test=24, seconds=1.0,
        member_folders={"original": folder}, **extra,
    )  # fmt: skip


@pytest.mark.parametrize("answers", [False, True])
def test_report_html_is_one_self_contained_page_with_every_figure(tmp_path, answers):
    report = _report(tmp_path, answers, np.random.default_rng(0))
    write_report(tmp_path / "w", report)
    out = wd.report_dir(tmp_path / "w")
    page = (out / "report.html").read_text()
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(sources) == len(pngs)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    for source in sources:  # each one a whole PNG
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert ("confusion_test.png" in pngs) == answers and ("hardest_test.png" in pngs) == answers
    assert "training_curves.png" in pngs
    assert "<table>" in page and "| model |" not in page  # markdown tables rendered
    runs = page[page.index("Runs of the members") :]
    assert '<tr class="kept">' in runs and "full.keras is head" in runs  # the start was kept
    markdown = (out / "report.md").read_text()
    assert "report.html" in markdown and all(f"]({name})" in markdown for name in pngs)


def test_markdown_tables_lists_and_inline_forms_become_html():
    page = markdown_to_html(["# T", "", "| a | b |\n|---|---:|\n| 1 | **2** |", "",
                             "- one `x`", "- two", "", "text [link](m.json)"])  # fmt: skip
    assert "<h1>T</h1>" in page and "<th>a</th>" in page and "<td><strong>2</strong></td>" in page
    assert "<ul><li>one <code>x</code></li><li>two</li></ul>" in page
    assert '<a href="m.json">link</a>' in page and "---" not in page


def test_a_page_escapes_names_it_did_not_write():
    assert "&lt;script&gt;" in markdown_to_html(["a class named <script>"])


@pytest.mark.parametrize("n_wrong", [0, 1, 3, 5, 13])
def test_the_hardest_sheet_fills_its_rows(n_wrong):
    rng = np.random.default_rng(n_wrong)
    y = np.arange(40) % 3
    p = _probabilities(y, wrong=range(n_wrong), rng=rng)
    chosen = hardest_images(y, p, count=16)
    mistakes = [i for i in chosen if p[i].argmax() != y[i]]
    assert mistakes == list(chosen[: len(mistakes)]) and len(mistakes) == min(n_wrong, 16)
    assert len(chosen) % SHEET_COLUMNS == 0 and 0 < len(chosen) <= 16  # no blank cells
    confidence = p[chosen[len(mistakes) :]].max(1)
    assert list(confidence) == sorted(confidence)  # then the least sure correct ones


@pytest.mark.parametrize("n", [6, 40, 111, 2000])
def test_reliability_bins_adapt_to_the_number_of_images(n):
    rng = np.random.default_rng(n)
    y = rng.integers(0, 3, n)
    bins = adaptive_bins(y, _probabilities(y, [], rng))
    assert bins[:, 2].sum() == n and 2 <= len(bins) <= 15
    assert bins[:, 2].max() - bins[:, 2].min() <= 1  # equal counts
    assert np.all(np.diff(bins[:, 0]) >= 0)  # ordered by confidence


def test_confusion_cells_show_counts(tmp_path):
    from ripik_clf.report.plots import plot_confusion

    y = np.array([0, 0, 0, 0, 1, 2])
    path = tmp_path / "c.png"
    plot_confusion(y, np.array([0, 0, 0, 1, 1, 2]), CLASSES, path, "t")
    with Image.open(path) as image:
        assert image.size[0] > 300
