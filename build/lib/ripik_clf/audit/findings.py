"""From signals and features to findings (pure functions: arrays in, tables out).

The image table the audit works on has one row per image: ``label`` (None for a test
image) and ``side`` (``train``, ``val``, ``fold 3`` or ``test``): two copies of one photo
on different sides are a leak.
"""

import numpy as np
import pandas as pd

from ripik_clf.audit.signals import hamming

# Near copies: at most 10 of 64 hash bits differ (a re-encoded or resized copy: 0-4; the
# same object photographed twice from one spot: ~8) and the backbone sees the same thing
# (cosine of pooled ImageNet features; on clothing8's training images, different items on
# one backdrop reach 0.90). Both must hold: either alone flags look-alikes.
NEAR_HAMMING = 10
NEAR_COSINE = 0.92
OUTLIER_Z = 8.0  # robust z-score of the distance to the nearest class centre (a blank: ~20)
PAIR_COLUMNS = ["i", "j", "match", "hamming", "cosine"]


def unit_rows(features):
    """Rows scaled to length 1 (NaN rows, unreadable images, become zeros)."""
    features = np.nan_to_num(np.asarray(features, dtype=np.float64))
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


def duplicate_pairs(file_sha1, pixel_sha1, phash, features, *, max_hamming=NEAR_HAMMING,
                    min_cosine=NEAR_COSINE, block=256):  # fmt: skip
    """Every pair ``i < j`` of exact duplicates (same bytes or same decoded pixels) or
    near duplicates (hash distance <= ``max_hamming`` and feature cosine >= ``min_cosine``).

    Returns:
        DataFrame with PAIR_COLUMNS; ``match`` is ``same bytes``, ``same pixels`` or ``near``.
    """
    phash = np.asarray(phash, dtype=np.uint8)
    unit = unit_rows(features)
    found = {}
    for start in range(0, len(phash), block):  # blocks: memory ~ block x N, not N x N
        rows, cols = np.nonzero(hamming(phash[start : start + block], phash) <= max_hamming)
        for i, j in zip(rows + start, cols):
            if i < j:
                found[(int(i), int(j))] = "near"
    for digests, match in ((pixel_sha1, "same pixels"), (file_sha1, "same bytes")):
        for i, j in _equal_pairs(digests):
            found[(i, j)] = match  # bytes beat pixels beat near
    table = []
    for (i, j), match in sorted(found.items()):
        distance = int(hamming(phash[[i]], phash[[j]])[0, 0])
        cosine = float(unit[i] @ unit[j])
        if match != "near" or cosine >= min_cosine:
            table.append((i, j, match, distance, cosine))
    return pd.DataFrame(table, columns=PAIR_COLUMNS)


def _equal_pairs(digests):
    groups = {}
    for index, digest in enumerate(digests):
        groups.setdefault(digest, []).append(index)
    return [
        (a, b) for group in groups.values() for k, a in enumerate(group) for b in group[k + 1 :]
    ]


def classify_pairs(pairs, labels, sides):
    """Each duplicate pair as one finding per kind it is:

    - ``label conflict``: both labelled, with different labels;
    - ``split leak``: on different sides (train/val, two folds, or labelled vs test);
    - ``redundant``: neither of those, both labelled (one photo weighs double).

    Returns:
        DataFrame: i, j, kind, match, hamming, cosine.
    """
    rows = []
    for pair in pairs.itertuples(index=False):
        label_i, label_j = labels[pair.i], labels[pair.j]
        both_labelled = label_i is not None and label_j is not None
        kinds = []
        if both_labelled and label_i != label_j:
            kinds.append("label conflict")
        if sides[pair.i] != sides[pair.j]:
            kinds.append("split leak")
        if not kinds and both_labelled:
            kinds.append("redundant")
        rows += [(pair.i, pair.j, kind, pair.match, pair.hamming, pair.cosine) for kind in kinds]
    return pd.DataFrame(rows, columns=["i", "j", "kind", "match", "hamming", "cosine"])


def confident_learning(labels, probabilities):
    """Suspected label errors by confident learning (Northcutt et al., 2021), written here.

    ``probabilities`` must be out-of-sample (out-of-fold) predictions. Each class ``j``
    gets a threshold ``t_j``: the mean predicted probability of ``j`` over the images
    labelled ``j``. An image's confident label is, among the classes whose probability
    reaches their threshold, the most probable one. An image is suspect when its
    confident label differs from its given label and the prediction's arg-max agrees with
    the confident label (cleanlab's "both" rule, which keeps false alarms down).

    Returns:
        (suspect mask, suggested class per image, per-class thresholds).
    """
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    classes = probabilities.shape[1]
    thresholds = np.array(
        [
            probabilities[labels == j, j].mean() if (labels == j).any() else 1.0
            for j in range(classes)
        ]
    )
    above = probabilities >= thresholds[None, :]
    masked = np.where(above, probabilities, -1.0)
    confident = masked.argmax(axis=1)
    has_confident = above.any(axis=1)
    suspect = has_confident & (confident != labels) & (probabilities.argmax(axis=1) == confident)
    return suspect, confident, thresholds


def outlier_scores(features, labels, labelled):
    """Distance of each image to its nearest class centre, as a robust z-score.

    Centres are the mean unit feature vectors of the labelled images (``labelled`` mask;
    ``labels`` holds class indices there). The distance is ``1 - cosine``; the z-score
    uses the median and MAD of the labelled images' distances.

    Returns:
        (distance, z) arrays over every image.
    """
    unit = unit_rows(features)
    labels = np.asarray(labels)
    centres = unit_rows(
        [unit[labelled & (labels == c)].mean(axis=0) for c in np.unique(labels[labelled])]
    )
    distance = 1.0 - (unit @ centres.T).max(axis=1)
    reference = distance[labelled]
    median = np.median(reference)
    mad = 1.4826 * np.median(np.abs(reference - median)) or 1e-9
    return distance, (distance - median) / mad
