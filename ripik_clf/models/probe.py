"""A logistic-regression probe on the cached backbone features: the honest baseline.

A linear classifier on frozen ImageNet features, its C chosen by stratified
cross-validation on the training split alone. Every trained head should match it.
"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # inverse L2 strength, on standardised features
FIXED_C = 0.1  # when a class has one training image and C cannot be cross-validated


def fit_probe(features, labels, seed=0, folds=5, scoring="f1_macro", groups=None):
    """The probe fitted on ``features`` (N, D), C by ``folds``-fold CV (``scoring``:
    macro-F1 to classify; ``neg_log_loss`` when the probabilities themselves matter).
    Classes are weighted by inverse frequency (a no-op when balanced). With ``groups``
    (e.g. the source image of each augmented copy) a group never straddles two folds.
    A class with a single training image leaves nothing to cross-validate: C is then
    FIXED_C (``best_params_`` says so).

    Returns:
        a fitted scikit-learn estimator with ``predict_proba`` and ``best_params_``.
    """
    folds = int(min(folds, np.bincount(labels).min()))
    if folds < 2:  # a class with one training image: no cross-validation can hold it out
        cv = [(np.arange(len(labels)), np.arange(len(labels)))]  # one "split": the fit
        grid = [FIXED_C]
    elif groups is None:
        cv, grid = StratifiedKFold(folds, shuffle=True, random_state=seed), C_GRID
    else:
        cv, grid = StratifiedGroupKFold(folds, shuffle=True, random_state=seed), C_GRID
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced")),
        {"logisticregression__C": list(grid)},
        scoring=scoring,
        cv=cv,
    )
    return search.fit(features, labels, groups=groups)


def probe_as_dense(probe):
    """The fitted probe's standardise-then-linear map as one Dense layer's weights.

    ``softmax(((x - mu) / sigma) @ W.T + b)`` = ``softmax(x @ (W / sigma).T + b')`` with
    ``b' = b - W @ (mu / sigma)``: the scaler folds into the kernel, so the member is an
    ordinary classifier model (backbone -> pool -> Dense) for predict, export and ensemble.

    Returns:
        (kernel ``(D, C)``, bias ``(C,)``) as float32.
    """
    scaler, linear = probe.best_estimator_[0], probe.best_estimator_[-1]
    sigma = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    weights, bias = linear.coef_, linear.intercept_
    if weights.shape[0] == 1:  # binary: scikit-learn keeps one row (class 1 vs class 0)
        weights, bias = np.vstack([-weights / 2, weights / 2]), np.array([-bias[0], bias[0]]) / 2
    kernel = (weights / sigma).T
    return kernel.astype("float32"), (bias - weights @ (scaler.mean_ / sigma)).astype("float32")
