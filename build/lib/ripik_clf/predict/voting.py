"""Voting: how member probabilities become one prediction. Pure functions (no I/O):
soft and hard voting, greedy member selection, and the two-stage (adaptive) TTA merge,
which the submission uses and the tests check (one copy of each)."""

import numpy as np


def soft_vote(probabilities, weights=None):
    """Weighted mean of the members' softmaxes: ``(M, N, C) -> (N, C)``."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    weights = np.ones(len(probabilities)) if weights is None else np.asarray(weights, float)
    return np.tensordot(weights / weights.sum(), probabilities, axes=1)


def hard_vote(probabilities, weights=None):
    """(Weighted) majority of the members' arg-maxes; a tie goes to the tied class with
    the highest mean probability. Returns class indices ``(N,)``."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    weights = np.ones(len(probabilities)) if weights is None else np.asarray(weights, float)
    weights = weights / weights.sum()
    votes = np.zeros(probabilities.shape[1:])
    for weight, member in zip(weights, probabilities.argmax(axis=2)):
        votes[np.arange(len(member)), member] += weight
    # Votes decide; the mean probability, scaled below the smallest vote, only breaks ties.
    tie_break = probabilities.mean(axis=0) * 1e-3 * weights[weights > 0].min()
    return (votes + tie_break).argmax(axis=1)


def greedy_selection(probabilities, y_true, rounds=20):
    """Forward selection with replacement (Caruana et al., 2004), maximising macro-F1.

    Each round adds the member whose inclusion gives the best macro-F1 of the averaged
    softmaxes (a member may be added again: that raises its weight). The best prefix wins.

    Returns:
        (weights per member as selection counts, best macro-F1).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n_classes = probabilities.shape[2]

    def score(total, count):
        return macro_f1(y_true, (total / count).argmax(1), n_classes)

    counts = np.zeros(len(probabilities), dtype=int)
    total = np.zeros(probabilities.shape[1:])
    best_counts, best_score = counts.copy(), -1.0
    for step in range(1, rounds + 1):
        scores = [score(total + p, step) for p in probabilities]
        choice = int(np.argmax(scores))  # ties: the lowest member index
        counts[choice] += 1
        total += probabilities[choice]
        if scores[choice] > best_score:
            best_counts, best_score = counts.copy(), scores[choice]
    return best_counts, float(best_score)


def macro_f1(y_true, y_pred, n_classes):
    """Macro-F1 over classes ``0..n_classes-1`` (a class with no true and no predicted
    image scores 0), equal to scikit-learn's ``f1_score(average="macro",
    zero_division=0)`` with those labels (tested) and ~50x faster: selection calls it
    thousands of times."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    tp = np.bincount(y_true[y_true == y_pred], minlength=n_classes)[:n_classes]
    true = np.bincount(y_true, minlength=n_classes)[:n_classes]
    predicted = np.bincount(y_pred, minlength=n_classes)[:n_classes]
    denominator = true + predicted
    f1 = np.divide(2 * tp, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return float(f1.mean())


def bagged_greedy_selection(probabilities, y_true, bags=30, rounds=20, seed=0):
    """Greedy selection on bootstrap resamples of the validation images, weights averaged
    (Caruana et al., 2004, "bagged ensemble selection"), kept only where they beat equal
    weights out of the bag beyond noise.

    Plain greedy takes any strict gain, and on a hundred validation images one image is a
    gain: it fits the noise and often gives one of two equally good members all the
    weight. Each bag's weights are fitted on its resample and compared with equal weights
    on the images the resample left out (about a third): per image, the log loss of the
    equal vote minus that of the bag's vote, averaged over the bags that left it out. The
    averaged weights replace equal ones only when that per-image out-of-bag gain is beyond
    noise (:func:`ripik_clf.evidence.choose_with_margin`: equal weights are the default).

    Returns:
        (weights per member summing to 1, validation macro-F1 of the weighted vote,
        :class:`~ripik_clf.evidence.Choice` with the out-of-bag evidence).
    """
    from ripik_clf.evidence import choose_with_margin, per_image_log_loss

    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true)
    n_members, n_images, n_classes = probabilities.shape
    rng = np.random.default_rng(seed)
    total, gain, times_out = np.zeros(n_members), np.zeros(n_images), np.zeros(n_images)
    equal = np.full(n_members, 1.0 / n_members)
    for _ in range(bags):
        rows = rng.integers(0, n_images, n_images)
        counts, _ = greedy_selection(probabilities[:, rows], y_true[rows], rounds)
        weights = counts / counts.sum()
        total += weights
        out = np.setdiff1d(np.arange(n_images), rows)
        held, y_out = probabilities[:, out], y_true[out]
        gain[out] += per_image_log_loss(soft_vote(held, equal), y_out) - per_image_log_loss(
            soft_vote(held, weights), y_out
        )
        times_out[out] += 1
    seen = times_out > 0
    choice = choose_with_margin("weights", "equal", {"selected": gain[seen] / times_out[seen]},
                                "out-of-bag validation log loss")  # fmt: skip
    weights = total / bags if choice.chosen == "selected" else equal
    score = macro_f1(y_true, soft_vote(probabilities, weights).argmax(1), n_classes)
    return weights, score, choice


def needs_tta(confidence, threshold):
    """Which images the two-stage TTA re-predicts: confidence (the ensemble's max
    probability) below ``threshold``; a threshold of 1 or more re-predicts every image.
    The one rule, used on validation (:func:`adaptive_merge`) and on the test set."""
    confidence = np.asarray(confidence)
    return np.ones(len(confidence), bool) if threshold >= 1 else confidence < threshold


def adaptive_merge(plain, augmented, threshold):
    """Two-stage TTA: keep ``plain`` where the ensemble is confident, else ``augmented``.

    An image is re-predicted when its confidence (max probability) is below
    ``threshold``; a threshold of 1 or more re-predicts every image.

    Returns:
        (merged probabilities, boolean mask of re-predicted images).
    """
    plain = np.asarray(plain)
    redo = needs_tta(plain.max(axis=1), threshold)
    merged = plain.copy()
    merged[redo] = np.asarray(augmented)[redo]
    return merged, redo


def choose_threshold(plain, augmented, y_true):
    """The smallest confidence threshold whose two-stage result loses no macro-F1 against
    full TTA on these (validation) predictions."""
    from sklearn.metrics import f1_score

    labels = list(range(np.asarray(plain).shape[1]))

    def f1(p):
        return f1_score(y_true, p.argmax(1), labels=labels, average="macro", zero_division=0)

    target = f1(np.asarray(augmented))
    candidates = np.unique(np.concatenate([[0.0], np.asarray(plain).max(axis=1), [1.0]]))
    for threshold in candidates:  # ascending: fewer images re-predicted first
        if f1(adaptive_merge(plain, augmented, threshold)[0]) >= target:
            return float(threshold)
    return 1.0


def choose_tta(candidates, y_true, weights=None):
    """The TTA of the soft vote (``weights``; None = equal): the first mode of
    ``candidates`` (the cheapest, the default) unless another lowers the validation log
    loss per image beyond noise (:func:`ripik_clf.evidence.choose_with_margin`).

    ``candidates``: mode -> per-member probabilities ``(M, N, C)``, the default first.
    Log loss rather than accuracy: on ~100 validation images accuracy moves in steps of
    one image. Returns (:class:`~ripik_clf.evidence.Choice`, {mode: log loss})."""
    from ripik_clf.evidence import choose_with_margin, per_image_log_loss

    losses = {
        mode: per_image_log_loss(soft_vote(probabilities, weights), y_true)
        for mode, probabilities in candidates.items()
    }
    default, *others = losses
    gains = {mode: losses[default] - losses[mode] for mode in others}
    choice = choose_with_margin("tta", default, gains, "validation log loss")
    return choice, {mode: float(loss.mean()) for mode, loss in losses.items()}
