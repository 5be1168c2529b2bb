"""A logistic-regression probe on the cached backbone features: the honest baseline.

A linear classifier on frozen ImageNet features, its C chosen by stratified
cross-validation on the training split alone. Every trained head should match it.
"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # inverse L2 strength, on standardised features


def fit_probe(features, labels, seed=0, folds=5, scoring="f1_macro"):
    """The probe fitted on ``features`` (N, D), C by ``folds``-fold CV (``scoring``:
    macro-F1 to classify; ``neg_log_loss`` when the probabilities themselves matter).

    Returns:
        a fitted scikit-learn estimator with ``predict_proba`` and ``best_params_``.
    """
    folds = int(min(folds, np.bincount(labels).min()))
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        {"logisticregression__C": list(C_GRID)},
        scoring=scoring,
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
    )
    return search.fit(features, labels)
