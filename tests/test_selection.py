"""Ensemble selection on a small validation set: bagged greedy against plain greedy."""

import numpy as np
from sklearn.metrics import f1_score

from ripik_clf.predict.voting import bagged_greedy_selection, greedy_selection, macro_f1


def _members(signals, y, rng, classes=8, shared=0.0):
    """Softmaxes of class signal + noise; ``shared`` of the noise variance is common to
    every member (correlated members, as models of one dataset are)."""
    common = rng.normal(0, 1, (len(y), classes))
    out = []
    for signal in signals:
        own = rng.normal(0, 1, (len(y), classes))
        logits = np.sqrt(shared) * common + np.sqrt(1 - shared) * own
        logits[np.arange(len(y)), y] += signal
        e = np.exp(logits)
        out.append(e / e.sum(1, keepdims=True))
    return np.stack(out)


def test_macro_f1_equals_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, c = int(rng.integers(1, 60)), int(rng.integers(2, 7))
        y, p = rng.integers(0, c, n), rng.integers(0, c, n)
        expected = f1_score(y, p, labels=range(c), average="macro", zero_division=0)
        assert abs(macro_f1(y, p, c) - expected) < 1e-12


def test_bagged_selection_keeps_two_equal_members_where_greedy_picks_one():
    """Two equally good, correlated members on 111 validation images: plain greedy often
    gives one of them over 2/3 of the weight; bagged selection sees no out-of-bag gain
    and keeps equal weights."""
    rng = np.random.default_rng(1)
    lopsided, kept_equal = {"greedy": 0, "bagged": 0}, 0
    for trial in range(20):
        y = rng.integers(0, 8, 111)
        val = _members((1.6, 1.6), y, rng, shared=0.8)
        counts, _ = greedy_selection(val, y)
        weights, _, _ = bagged_greedy_selection(val, y, seed=trial)
        assert abs(weights.sum() - 1) < 1e-9
        lopsided["greedy"] += counts.max() / counts.sum() > 2 / 3
        lopsided["bagged"] += weights.max() > 2 / 3
        kept_equal += np.allclose(weights, 0.5)  # no out-of-bag gain: equal weights
    assert lopsided["greedy"] >= 4 and lopsided["bagged"] == 0, lopsided
    assert kept_equal >= 15


def test_bagged_selection_still_moves_weight_to_a_clearly_better_member():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 8, 111)
    val = _members((3.0, 0.5), y, rng)
    weights, score, _ = bagged_greedy_selection(val, y)
    assert weights[0] > 0.8 and score > 0.8
