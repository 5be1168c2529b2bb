"""The report's rows, tables and figures (report/tables.py, markdown.py, plots.py), on
probabilities made up here where the right numbers are known."""

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score

from conftest import write_image
from ripik_clf.errors import UserError
from ripik_clf.predict.combiner import SoftVote
from ripik_clf.report import tables
from ripik_clf.report.markdown import calibration_section, finite, metrics_table
from ripik_clf.report.plots import hardest_mistakes, plot_confusion, plot_hardest
from ripik_clf.report.tables import hard_row, read_answers, validation_rows

CLASSES = ["a", "b", "c"]
Y = np.array([0, 1, 2, 0, 1, 2])


def _member(labels, wrong):
    """Confident (0.9) where right, hesitant (0.5 against 0.4 for the truth) where wrong."""
    p = np.full((len(labels), 3), 0.05)
    p[np.arange(len(labels)), labels] = 0.9
    for i in wrong:
        p[i] = 0.1
        p[i, labels[i]], p[i, (labels[i] + 1) % 3] = 0.4, 0.5
    return p


# Two members that err on different images: the soft vote of both is right everywhere.
RIGHT_BUT_LAST = _member(Y, wrong=[5])
RIGHT_BUT_FIRST = _member(Y, wrong=[0])
EQUAL = SoftVote((1.0, 1.0))


def test_validation_rows_score_each_member_and_both_votes_with_sklearn():
    stacked = np.stack([RIGHT_BUT_LAST, RIGHT_BUT_FIRST])
    rows = validation_rows({"none": stacked}, Y, ["m1", "m2"], CLASSES, EQUAL)
    m1 = rows[("m1", "none")]
    assert m1["accuracy"] == pytest.approx(accuracy_score(Y, RIGHT_BUT_LAST.argmax(1)))
    assert m1["macro_f1"] == pytest.approx(f1_score(Y, RIGHT_BUT_LAST.argmax(1), average="macro"))
    assert rows[("soft ensemble", "none")]["accuracy"] == 1.0  # the two errors cancel
    assert ("soft, equal weights", "none") not in rows  # equal weights: nothing to compare
    weighted = validation_rows({"none": stacked}, Y, ["m1", "m2"], CLASSES, SoftVote((9.0, 1.0)))
    assert weighted[("soft ensemble", "none")]["accuracy"] == pytest.approx(5 / 6)
    assert weighted[("soft, equal weights", "none")]["accuracy"] == 1.0


def test_a_hard_vote_has_no_brier_or_ece_and_the_table_shows_a_dash():
    row = hard_row(Y, np.stack([RIGHT_BUT_LAST, RIGHT_BUT_LAST, RIGHT_BUT_FIRST]), CLASSES)
    assert np.isnan(row["brier"]) and np.isnan(row["ece"])
    assert row["accuracy"] == pytest.approx(5 / 6)  # two of three votes say the last is "a"
    table = metrics_table({("hard ensemble", "none"): row})
    assert "| hard ensemble | none | 6 | 0.8333 [" in table and "| - | - |" in table
    assert json.dumps(finite(row))  # strict JSON: NaN written as null
    assert finite(row)["brier"] is None


def test_test_rows_score_only_what_the_key_labels(tmp_path, capsys):
    ids = [f"t{i}.png" for i in range(6)]
    truth = {name: CLASSES[y] for name, y in zip(ids, Y)} | {"t5.png": "unknown class"}
    members = {"m1": RIGHT_BUT_LAST, "m2": RIGHT_BUT_FIRST}
    rows = tables.test_rows(truth, ids, members, members, CLASSES, EQUAL)
    assert "5 of 6" in capsys.readouterr().err
    assert rows["m1"]["accuracy"] == 1.0  # its one mistake is the unlabelled image
    assert rows["m2"]["accuracy"] == pytest.approx(4 / 5)
    assert tables.test_rows(None, ids, members, members, CLASSES, EQUAL) == {}
    with pytest.raises(UserError, match="labels none of the 6"):
        tables.test_rows({"other.png": "a"}, ids, members, members, CLASSES, EQUAL)


@pytest.mark.parametrize(
    "content, error",
    [(None, "not found"), ("image_id\nx.png\n", "two columns"), ("\x00\x01garbage", "")],
)
def test_a_bad_answer_key_is_one_line(tmp_path, content, error):
    key = tmp_path / "key.csv"
    if content is not None:
        key.write_text(content)
    with pytest.raises(UserError) as err:
        read_answers(key, "image_id", "label")
    assert error in str(err.value) and "\n" not in str(err.value)


def test_read_answers_falls_back_to_the_first_two_columns(tmp_path):
    key = tmp_path / "key.csv"
    key.write_text("file,truth\nx.png,a\ny.png,b\n")
    assert read_answers(key, "image_id", "label") == {"x.png": "a", "y.png": "b"}


def test_the_calibration_section_shows_scaling_lowering_nll_of_an_overconfident_model():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) * 4  # confident and often wrong
    logits[np.arange(300), y] += 2
    raw = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    from ripik_clf.predict.calibration import apply_temperature, fit_temperature

    t = fit_temperature(raw, y)
    assert t > 1  # over-confident: softened
    calibrated = apply_temperature(raw, t)
    lines = calibration_section(
        raw[None], calibrated[None], y, ["m"], SoftVote((1.0,)), {"m": f"{t:.2f}"}
    )
    row = next(line for line in lines if line.startswith("| m |"))
    nll_before, nll_after = (float(c) for c in row.strip("|").split("|")[2:4])
    assert nll_after < nll_before


def test_hardest_mistakes_are_the_confident_wrong_ones_first():
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([1, 1, 1, 0])  # wrong: rows 0 (0.9), 2 (0.6), 3 (0.7)
    assert list(hardest_mistakes(y, p, 10)) == [0, 3, 2]
    assert list(hardest_mistakes(y, p, 1)) == [0]


def test_the_figures_are_images_that_open(tmp_path):
    confusion = tmp_path / "confusion.png"
    plot_confusion(Y, RIGHT_BUT_LAST.argmax(1), CLASSES, confusion, "title")
    paths = [str(write_image(tmp_path / f"i{i}.png", seed=i)) for i in range(6)]
    hardest = tmp_path / "hardest.jpg"
    plot_hardest(Y, RIGHT_BUT_LAST, CLASSES, paths, hardest)
    for figure in (confusion, hardest):
        with Image.open(figure) as image:
            assert image.size[0] > 100 and image.size[1] > 100


def test_rows_show_n_and_a_95_interval_beside_each_score():
    stacked = np.stack([RIGHT_BUT_LAST, RIGHT_BUT_FIRST])
    rows = validation_rows({"none": stacked}, Y, ["m1", "m2"], CLASSES, EQUAL)
    m1 = rows[("m1", "none")]
    low, high = m1["accuracy_interval"]
    assert m1["n"] == len(Y) and low < m1["accuracy"] <= high <= 1.0
    assert f"| m1 | none | {len(Y)} | {m1['accuracy']:.4f} [{low:.3f}, {high:.3f}] |" in (
        metrics_table(rows)
    )


def test_an_ensemble_below_its_best_member_is_warned_about(capsys):
    from ripik_clf.predict.submission import _below_best_member

    def row(f1):
        return {"macro_f1": f1, "n": 100}

    rows = {("good", "none"): row(0.9), ("poor", "none"): row(0.5)}
    assert _below_best_member(rows | {("soft ensemble", "none"): row(0.9)}, ["good", "poor"],
                              "none") == []  # fmt: skip
    notes = _below_best_member(rows | {("soft ensemble", "none"): row(0.8)}, ["good", "poor"],
                               "none")  # fmt: skip
    assert "below its best member" in notes[0] and "--members good" in notes[0]
    assert "0.8000 vs good 0.9000" in capsys.readouterr().out
