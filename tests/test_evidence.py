"""Automatic choices against known answers: validation sets drawn so that two candidates
are equal in expectation keep the default in at least 90% of draws; sets where one is
clearly better choose it in at least 90% (ripik_clf/evidence.py and its users)."""

import numpy as np
import pytest

from ripik_clf.augment import flips
from ripik_clf.evidence import MIN_IMAGES, choose_with_margin, paired_interval
from ripik_clf.predict.calibration import (
    MIN_ERRORS,
    apply_temperature,
    choose_temperature,
    fit_temperature,
)
from ripik_clf.predict.voting import bagged_greedy_selection, choose_tta
from ripik_clf.train.full import choose_start

DRAWS = 100
N_VAL, N_CLASSES = 110, 8  # about clothing8's validation split


def softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def model_probabilities(rng, y, skill, n_classes=N_CLASSES):
    """A model's softmax: the true class's logit raised by ``skill``, Gaussian noise."""
    logits = rng.normal(0, 1, (len(y), n_classes))
    logits[np.arange(len(y)), y] += skill
    return softmax(logits)


def share(chosen, answer):
    return np.mean([c == answer for c in chosen])


def test_paired_interval_covers_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small = paired_interval(rng.normal(0.1, 1, 50))
    large = paired_interval(rng.normal(0.1, 1, 5000))
    assert small[1] < small[0] < small[2] and large[1] < large[0] < large[2]
    assert (large[2] - large[1]) < (small[2] - small[1]) / 5


def test_a_small_set_keeps_the_default_with_a_note():
    choice = choose_with_margin("x", "a", {"b": np.ones(MIN_IMAGES - 1)}, "loss")
    assert choice.chosen == "a" and "default kept" in choice.note
    assert choose_with_margin("x", "a", {"b": np.ones(MIN_IMAGES)}, "loss").chosen == "b"


def _ladder(rng, near, far):
    """Two candidates better than the default by ``near`` and ``far`` in mean per-image
    gain, on the same images (their per-image noise mostly shared, as paired losses)."""
    common = rng.normal(0, 0.3, N_VAL)
    gains = {"near": near + common + rng.normal(0, 0.1, N_VAL),
             "far": far + common + rng.normal(0, 0.1, N_VAL)}  # fmt: skip
    return choose_with_margin("x", "default", gains, "loss").chosen


def test_a_step_further_from_the_default_needs_its_own_evidence():
    """Both candidates beat the default; equal to each other in expectation, the one
    nearer the default is kept (the largest mean followed the noise between them)."""
    rng = np.random.default_rng(10)
    assert share([_ladder(rng, 0.15, 0.15) for _ in range(DRAWS)], "near") >= 0.9
    assert share([_ladder(rng, 0.15, 0.40) for _ in range(DRAWS)], "far") >= 0.9


def test_flips_take_horizontal_before_none():
    """Mirrors and none both beat every orientation, equally: horizontal is the step
    nearer the design's recipe."""
    rng = np.random.default_rng(11)
    chosen = []
    for _ in range(DRAWS):
        common = rng.normal(0, 0.3, N_VAL)
        gains = {"none": 0.15, "horizontal": 0.15, "all": 0.0}
        scores = {name: {"per_image": 1.0 - gain + common + rng.normal(0, 0.1, N_VAL)}
                  for name, gain in gains.items()}  # fmt: skip
        chosen.append(flips.choose(scores).chosen)
    assert share(chosen, "horizontal") >= 0.9


def _tta_choice(rng, skill_none, skill_auto):
    y = rng.integers(0, N_CLASSES, N_VAL)
    none = model_probabilities(rng, y, skill_none)[None]
    auto = model_probabilities(rng, y, skill_auto)[None]
    return choose_tta({"none": none, "auto": auto}, y)[0].chosen


def test_tta_equal_in_expectation_keeps_none():
    rng = np.random.default_rng(1)
    assert share([_tta_choice(rng, 2.5, 2.5) for _ in range(DRAWS)], "none") >= 0.9


def test_tta_clearly_better_is_chosen():
    rng = np.random.default_rng(2)
    assert share([_tta_choice(rng, 2.0, 3.5) for _ in range(DRAWS)], "auto") >= 0.9


def test_tta_records_its_evidence():
    rng = np.random.default_rng(3)
    y = rng.integers(0, N_CLASSES, N_VAL)
    p = model_probabilities(rng, y, 2.0)[None]
    choice, losses = choose_tta({"none": p, "auto": p.copy()}, y)
    assert choice.chosen == "none" and losses["none"] == losses["auto"]
    record = choice.to_record()
    assert record["default"] == "none" and record["n"] == N_VAL
    assert record["candidates"]["auto"]["estimate"] == 0.0
    # Given weights: the vote they make is judged (the second member has weight 0).
    good, bad = model_probabilities(rng, y, 4.0)[None], model_probabilities(rng, y, 0.5)[None]
    pair_none, pair_auto = np.concatenate([good, bad]), np.concatenate([bad, good])
    assert choose_tta({"none": pair_none, "auto": pair_auto}, y, [1.0, 0.0])[0].chosen == "none"
    assert choose_tta({"none": pair_none, "auto": pair_auto}, y, [0.0, 1.0])[0].chosen == "auto"


def calibrated_set(rng, sharpness, n=N_VAL):
    """Probabilities and labels drawn from them, then sharpened: the true temperature is
    ``sharpness`` (1 = calibrated as they are)."""
    p = softmax(rng.normal(0, 2.0, (n, N_CLASSES)))
    y = np.array([rng.choice(N_CLASSES, p=row) for row in p])
    return apply_temperature(p, 1 / sharpness), y


def test_a_calibrated_model_keeps_temperature_one():
    rng = np.random.default_rng(4)
    temperatures = [choose_temperature(*calibrated_set(rng, 1.0))[0] for _ in range(DRAWS)]
    assert share(temperatures, 1.0) >= 0.9


def test_an_overconfident_model_gets_its_temperature():
    rng = np.random.default_rng(5)
    temperatures = [choose_temperature(*calibrated_set(rng, 3.0))[0] for _ in range(DRAWS)]
    assert np.mean([t != 1.0 for t in temperatures]) >= 0.9
    assert np.median(temperatures) == pytest.approx(3.0, rel=0.25)


def test_a_member_perfect_on_validation_gets_temperature_one():
    y = np.arange(N_VAL) % 3
    p = np.tile([0.20, 0.35, 0.45], (N_VAL, 1))
    p[np.arange(N_VAL), y], p[np.arange(N_VAL), (y + 2) % 3] = 0.45, 0.20  # right, unsure
    p[np.arange(N_VAL), (y + 1) % 3] = 0.35
    assert fit_temperature(p, y) == 1.0
    assert choose_temperature(p, y)[0] == 1.0
    # Up to MIN_ERRORS - 1 mistakes do not pin a temperature down either.
    wrong = p.copy()
    wrong[: MIN_ERRORS - 1] = np.roll(p[: MIN_ERRORS - 1], 1, axis=1)
    assert (wrong.argmax(1) != y).sum() == MIN_ERRORS - 1
    assert fit_temperature(wrong, y) == 1.0


def _selected_equal(rng, skills):
    y = rng.integers(0, N_CLASSES, N_VAL)
    members = np.stack([model_probabilities(rng, y, s) for s in skills])
    weights, _, _ = bagged_greedy_selection(members, y)
    return weights


def test_selection_keeps_equal_weights_between_equal_members():
    rng = np.random.default_rng(6)
    draws = [_selected_equal(rng, (2.0, 2.0)) for _ in range(40)]
    assert np.mean([np.allclose(w, 0.5) for w in draws]) >= 0.9


def test_selection_weights_the_clearly_better_member():
    rng = np.random.default_rng(7)
    draws = [_selected_equal(rng, (1.0, 3.0)) for _ in range(40)]
    assert np.mean([w[1] > 0.6 for w in draws]) >= 0.9


def _views(rng, n, dim, centres, y, mirrored_label):
    """``(8, n, dim)`` features per orientation: a class centre plus noise; with
    ``mirrored_label`` a view of class k looks like class k+1 (an arrow turned round)."""
    out = np.empty((8, n, dim))
    for v in range(8):
        shown = (y + (v % 2 if mirrored_label else 0)) % len(centres)
        out[v] = centres[shown] + rng.normal(0, 1.5, (n, dim))
    return out


def _flips_choice(rng, duplicates=False, mirrored_label=False):
    dim, classes = 16, 4
    centres = rng.normal(0, 1, (classes, dim))
    y_train, y_val = rng.integers(0, classes, 120), rng.integers(0, classes, 100)
    views = _views(rng, 120, dim, centres, y_train, mirrored_label)
    if duplicates:
        views[:] = views[0]  # the views add nothing: every candidate is the same probe
    val = centres[y_val] + rng.normal(0, 1.5, (100, dim))
    return flips.choose(flips.score_candidates(views, y_train, val, y_val)).chosen


def test_flips_duplicated_views_keep_the_default():
    """Exact duplicates in place of the views: equal footing gives every candidate the
    same probe, so the default stays (it moved on 0.001 of log loss before)."""
    rng = np.random.default_rng(8)
    assert share([_flips_choice(rng, duplicates=True) for _ in range(20)], flips.DEFAULT) == 1


def test_flips_that_change_the_label_are_dropped():
    rng = np.random.default_rng(9)
    chosen = [_flips_choice(rng, mirrored_label=True) for _ in range(20)]
    assert np.mean([c != "all" for c in chosen]) >= 0.9


def _start_choice(rng, skill_head, skill_probe):
    y = rng.integers(0, N_CLASSES, N_VAL)
    head = model_probabilities(rng, y, skill_head)
    return choose_start(head, model_probabilities(rng, y, skill_probe), y).chosen


def test_the_full_phase_starts_from_the_head_unless_the_probe_is_clearly_better():
    rng = np.random.default_rng(10)
    assert share([_start_choice(rng, 2.5, 2.5) for _ in range(DRAWS)], "head") >= 0.9
    assert share([_start_choice(rng, 2.0, 3.5) for _ in range(DRAWS)], "probe") >= 0.9
