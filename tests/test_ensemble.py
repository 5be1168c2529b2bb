import numpy as np
import pytest

from ripik_clf.predict.tta import tta_views
from ripik_clf.predict.voting import hard_vote, soft_vote
from ripik_clf.report.metrics import brier_score, calibration_bins, expected_calibration_error

P = np.array(
    [
        [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]],  # member 0
        [[0.2, 0.5, 0.3], [0.2, 0.5, 0.3]],  # member 1
        [[0.6, 0.3, 0.1], [0.3, 0.4, 0.3]],  # member 2
    ]
)


def test_soft_vote_is_the_weighted_mean():
    np.testing.assert_allclose(soft_vote(P), P.mean(axis=0))
    np.testing.assert_allclose(soft_vote(P, [1, 0, 0]), P[0])
    np.testing.assert_allclose(soft_vote(P, [2, 1, 1])[0], [0.55, 0.3, 0.15])


def test_hard_vote_majority_and_ties():
    assert hard_vote(P).tolist() == [0, 1]  # image 0: votes 0,1,0; image 1: votes 2,1,1
    tie = np.array([[[0.6, 0.4]], [[0.1, 0.9]]])  # one vote each: class 1 has the higher mean
    assert hard_vote(tie).tolist() == [1]
    tie = np.array([[[0.9, 0.1]], [[0.45, 0.55]]])
    assert hard_vote(tie).tolist() == [0]


def test_d4_views_are_the_eight_distinct_dihedral_transforms():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    views = [np.asarray(v)[0, :, :, 0] for v in tta_views(image, "d4")]
    assert len(views) == 8
    assert len({v.tobytes() for v in views}) == 8
    expected = [
        np.rot90(m, k) for m in (image[0, :, :, 0], np.fliplr(image[0, :, :, 0])) for k in range(4)
    ]
    assert {v.tobytes() for v in views} == {e.astype(np.float32).tobytes() for e in expected}


def test_flip_tta_is_invariant_to_flipping_the_input():
    import keras

    from ripik_clf.predict.tta import predict_tta

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    x = np.random.default_rng(0).uniform(0, 255, (5, 8, 8, 3)).astype("float32")
    flipped = x[:, :, ::-1, :]
    np.testing.assert_allclose(
        predict_tta(model, x, "flip"), predict_tta(model, flipped, "flip"), atol=1e-6
    )
    assert not np.allclose(predict_tta(model, x, "none"), predict_tta(model, flipped, "none"))


def test_brier_by_hand():
    probabilities = np.array([[0.8, 0.2], [0.4, 0.6]])
    # image 0 true 0: 0.2^2 + 0.2^2 = 0.08; image 1 true 0: 0.6^2 + 0.6^2 = 0.72
    assert brier_score([0, 0], probabilities) == pytest.approx(0.40)


def test_ece_by_hand():
    # Two images at confidence 0.95 (one right), two at 0.65 (both right).
    probabilities = np.array([[0.95, 0.05], [0.95, 0.05], [0.35, 0.65], [0.35, 0.65]])
    y = [0, 1, 1, 1]
    # bin of 0.95: |0.5 - 0.95| = 0.45, weight 1/2; bin of 0.65: |1 - 0.65| = 0.35, weight 1/2
    assert expected_calibration_error(y, probabilities) == pytest.approx(0.40)
    counts = [n for _, _, n in calibration_bins(y, probabilities)]
    assert sum(counts) == 4 and counts.count(2) == 2


def test_perfect_confident_predictions_are_calibrated():
    probabilities = np.eye(3)[[0, 1, 2, 1]]
    assert expected_calibration_error([0, 1, 2, 1], probabilities) == 0.0
    assert brier_score([0, 1, 2, 1], probabilities) == 0.0


def test_greedy_selection_picks_the_complementary_pair():
    from ripik_clf.predict.voting import greedy_selection

    y = np.array([0, 0, 1, 1, 2, 2])
    onehot = np.eye(3)[y]
    a = onehot.copy()
    a[4:] = [0.4, 0.35, 0.25]  # A: right on 0-3, mildly wrong on 4-5
    b = onehot.copy()
    b[:2] = [0.3, 0.45, 0.25]  # B: right on 2-5, mildly wrong on 0-1
    c = np.tile([0.2, 0.2, 0.6], (6, 1))  # C: always says class 2
    weights, score = greedy_selection(np.stack([a, b, c]), y)
    assert score == 1.0
    assert weights[0] > 0 and weights[1] > 0 and weights[2] == 0


def test_adaptive_tta_limits():
    from ripik_clf.predict.voting import adaptive_merge, choose_threshold

    rng = np.random.default_rng(0)
    plain = rng.dirichlet(np.ones(4), size=50)
    full = rng.dirichlet(np.ones(4), size=50)
    merged, redo = adaptive_merge(plain, full, 1.0)
    assert redo.all() and np.array_equal(merged, full)
    merged, redo = adaptive_merge(plain, full, 0.0)
    assert not redo.any() and np.array_equal(merged, plain)
    merged, redo = adaptive_merge(plain, full, 0.5)
    assert np.array_equal(redo, plain.max(1) < 0.5)
    y = full.argmax(1)  # full TTA is perfect here, so the threshold must re-predict enough
    threshold = choose_threshold(plain, full, y)
    assert (adaptive_merge(plain, full, threshold)[0].argmax(1) == y).all()
    assert choose_threshold(full, full, y) == 0.0  # nothing to gain: re-predict nothing
