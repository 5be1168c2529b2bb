"""``augment.flips: auto``: which mirror images the copies may be, chosen on the data.

Whether a flipped image is still an image of its class depends on the data: a flipped
shirt is a shirt, a flipped arrow pointing left points right, an upside-down 6 is a 9.
Before any copy is written, a linear probe on frozen backbone features is trained on the
training images seen in each candidate's orientations (the views a copy can take) and
judged on the validation images as they are, per image, by log loss (a proper scoring
rule that, unlike accuracy, moves with every image).

The candidates are compared on equal terms: each training image weighs 1 in every probe,
its V views 1/V each, so a candidate's extra rows do not weaken the probe's
regularisation (exact duplicates in place of the views give exactly the probe of `none`).
The default is the design's recipe, ``all``; a candidate with fewer orientations replaces
it only when its paired per-image gain is beyond noise (:mod:`ripik_clf.evidence`): when
the orientation carries the label (a mirrored arrow points the other way), not when a
few validation images happen to favour it.

The measurement costs one forward pass per training image and orientation (8) and one
per validation image: at most ``MAX_TRAIN_IMAGES`` and ``MAX_VAL_IMAGES`` of them, drawn
per class with the split's seed (about 50 s with Lite0 at 224 px on a 2-core CPU).
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ripik_clf.config import FLIP_CHOICES

# Candidate -> its orientations, as indices into predict.tta.tta_views(..., "d4"):
# 0-3 the four rotations of the image, 4-7 those of its mirror (4 = the horizontal flip).
CANDIDATE_VIEWS = {"none": (0,), "horizontal": (0, 4), "all": tuple(range(8))}
assert tuple(CANDIDATE_VIEWS) == FLIP_CHOICES
MAX_TRAIN_IMAGES = 160  # x 8 orientations: the probe's training rows
MAX_VAL_IMAGES = 400  # the evidence: paired per-image log losses
PROBE_C = 0.1  # fixed (no inner CV): the same regularisation for every candidate
DEFAULT = "all"  # the design's recipe: kept unless a candidate is better beyond noise


def score_candidates(train_views, train_y, val_x, val_y, seed=0):
    """Validation scores of a probe trained on each candidate's views (pure).

    Args:
        train_views: ``(8, N, D)`` features of the N training images in each orientation.
        train_y: ``(N,)`` class indices; ``val_x`` ``(M, D)``, ``val_y`` ``(M,)``.

    Returns:
        ``{candidate: {"log_loss", "macro_f1", "accuracy", "per_image": (M,) log losses}}``
        in CANDIDATE_VIEWS order.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ripik_clf.evidence import per_image_log_loss

    labels = np.unique(np.concatenate([train_y, val_y]))
    scores = {}
    for candidate, views in CANDIDATE_VIEWS.items():
        x = np.concatenate([train_views[v] for v in views])
        y = np.tile(train_y, len(views))
        probe = make_pipeline(
            StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=2000, random_state=seed)
        )
        # Each image weighs 1 whatever its number of views: equal regularisation.
        probe.fit(x, y, logisticregression__sample_weight=np.full(len(y), 1 / len(views)))
        p = np.zeros((len(val_y), int(labels.max()) + 1))
        p[:, probe.classes_] = probe.predict_proba(val_x)
        predicted = p.argmax(1)
        losses = per_image_log_loss(p, val_y)
        scores[candidate] = {
            "log_loss": float(losses.mean()),
            "macro_f1": float(f1_score(val_y, predicted, labels=labels, average="macro")),
            "accuracy": float(accuracy_score(val_y, predicted)),
            "per_image": losses,
        }
    return scores


def choose(scores):
    """The :class:`~ripik_clf.evidence.Choice` of flips: ``DEFAULT`` unless another
    candidate's per-image validation log loss is lower beyond noise; horizontal is the
    nearer step, none is taken over it only when it beats horizontal beyond noise too."""
    from ripik_clf.evidence import choose_with_margin

    base = scores[DEFAULT]["per_image"]
    nearest_first = [c for c in reversed(CANDIDATE_VIEWS) if c != DEFAULT and c in scores]
    gains = {c: base - scores[c]["per_image"] for c in nearest_first}  # horizontal, then none
    return choose_with_margin("flips", DEFAULT, gains, "probe validation log loss")


def measure_flips(config, dataset, splits):
    """Score every candidate on this split with the configured frozen backbone.

    Returns:
        ``{"chosen": candidate, "scores": {...}, "train_images": N, "val_images": M}``.
    """
    from ripik_clf.train.head import frozen_backbone

    started = time.perf_counter()
    train, val = _probe_sets(dataset, splits, config.split.seed)
    _, extractor, size, _ = frozen_backbone(config)
    index = {c: i for i, c in enumerate(sorted(dataset["label"].unique()))}
    train_views = _features(extractor, list(train["path"]), size, views=True)
    val_x = _features(extractor, list(val["path"]), size, views=False)[0]
    train_y = np.array([index[c] for c in train["label"]])
    val_y = np.array([index[c] for c in val["label"]])
    keep_t, keep_v = ~np.isnan(train_views[0, :, 0]), ~np.isnan(val_x[:, 0])
    scores = score_candidates(
        train_views[:, keep_t], train_y[keep_t], val_x[keep_v], val_y[keep_v], config.train.seed
    )
    choice = choose(scores)
    for s in scores.values():
        del s["per_image"]  # the record keeps the summary and the choice's evidence
    return {
        "chosen": choice.chosen,
        "choice": choice.to_record(),
        "scores": scores,
        "train_images": int(keep_t.sum()),
        "val_images": int(keep_v.sum()),
        "backbone": config.train.backbone,
        "image_size": size,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _probe_sets(dataset, splits, seed):
    """Training and validation images of the split (k folds: fold 0 validates), each
    capped by a per-class sample."""
    table = splits  # the split records each image's path
    in_val = table["split"] == "val" if (table["split"] == "val").any() else table["fold"] == 0
    return _sample(table[~in_val], MAX_TRAIN_IMAGES, seed), _sample(
        table[in_val], MAX_VAL_IMAGES, seed
    )


def _sample(table, limit, seed):
    if len(table) <= limit:
        return table
    share = limit / len(table)
    picked = [
        group.sample(max(1, int(round(len(group) * share))), random_state=seed).index
        for _, group in table.groupby("label")
    ]
    return table.loc[[i for index in picked for i in index]]


def _features(extractor, paths, size, views, batch_size=32):
    """``(V, N, D)`` pooled features (V = 8 orientations, or 1); NaN rows for unreadable."""
    from ripik_clf.data.images import decoded_batches
    from ripik_clf.predict.tta import tta_views
    from ripik_clf.progress import progress

    count = 8 if views else 1
    out = np.full((count, len(paths), extractor.output_shape[-1]), np.nan, "float32")
    bar = progress(len(paths) * count, f"flips: features of {count} orientation(s)")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for positions, images, _ in decoded_batches(paths, size, batch_size, pool):
            if not len(positions):
                continue
            batch = images.astype("float32")
            for v, view in enumerate(tta_views(batch, "d4" if views else "none")):
                padded = np.zeros((batch_size, size, size, 3), "float32")
                padded[: len(batch)] = np.asarray(view)
                # A full batch every time: one traced graph.
                features = np.asarray(extractor.predict_on_batch(padded))[: len(batch)]
                out[v, positions] = features
                bar.update(len(positions))
    bar.close()
    return out
