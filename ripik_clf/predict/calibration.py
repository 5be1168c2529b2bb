"""Temperature scaling (Guo et al., 2017): one number per model that makes its softmax
honest about its confidence, fitted on validation probabilities.

``softmax(logits / T)`` = ``p ** (1 / T)`` renormalised, so it applies to probabilities as
saved: T > 1 softens an over-confident model, T < 1 sharpens an under-confident one. The
arg-max (and so accuracy and F1) never changes.
"""

import numpy as np
from scipy.optimize import minimize_scalar

T_RANGE = (0.25, 8.0)  # searched on a log scale: T = 0.25 already raises p to the 4th power
MIN_ERRORS = 5  # fewer validation mistakes do not pin a temperature down: T = 1


def apply_temperature(probabilities, temperature):
    """``probabilities`` (..., C) with temperature ``T`` applied (pure)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if temperature == 1.0:
        return p
    logits = np.log(np.clip(p, 1e-300, None)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=-1, keepdims=True)


def negative_log_likelihood(labels, probabilities):
    """Mean ``-log p(true class)`` (argument order as scikit-learn's metrics: truth first)."""
    labels = np.asarray(labels)
    p = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(p, 1e-300, None))))


def fit_temperature(probabilities, labels):
    """The T in T_RANGE minimising the validation negative log-likelihood; 1.0 when the
    images hold fewer than MIN_ERRORS mistakes (nothing to fit on)."""
    labels = np.asarray(labels, dtype=int)
    if len(labels) == 0:
        return 1.0
    if (np.asarray(probabilities).argmax(axis=-1) != labels).sum() < MIN_ERRORS:
        return 1.0
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(
            labels, apply_temperature(probabilities, float(np.exp(log_t)))
        ),
        bounds=tuple(np.log(T_RANGE)),
        method="bounded",
    )
    return float(np.exp(result.x))


def choose_temperature(probabilities, labels, seed=0):
    """The ensemble's temperature with its evidence: T = 1 (the default) unless a
    temperature fitted on one half of the images lowers the other half's log loss beyond
    noise (two-fold cross-fit, paired per image; :mod:`ripik_clf.evidence`). Then the fit
    on every image. Returns ``(T, Choice)``."""
    from ripik_clf.evidence import choose_with_margin, per_image_log_loss

    p, labels = np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=int)
    halves = np.random.default_rng(seed).permutation(len(labels)) % 2
    gain = np.zeros(len(labels))
    for half in (0, 1):
        fit_on, score_on = halves != half, halves == half
        t = fit_temperature(p[fit_on], labels[fit_on])
        gain[score_on] = per_image_log_loss(p[score_on], labels[score_on]) - per_image_log_loss(
            apply_temperature(p[score_on], t), labels[score_on]
        )
    choice = choose_with_margin(
        "temperature", "1", {"fitted": gain}, "held-out log loss (two-fold cross-fit)"
    )
    temperature = fit_temperature(p, labels) if choice.chosen == "fitted" else 1.0
    choice.chosen = f"{temperature:.3g}"
    return temperature, choice


def temperature_in_graph(probabilities, temperature):
    """:func:`apply_temperature` on a Keras tensor (for exported graphs)."""
    import keras

    if temperature == 1.0:
        return probabilities
    p = keras.ops.maximum(probabilities, 1e-30)  # 0 ** (1 / T) is 0 or, at T < 0, inf
    sharpened = keras.ops.power(p, 1.0 / float(temperature))
    return sharpened / keras.ops.sum(sharpened, axis=-1, keepdims=True)


def scaled_model(model, temperature):
    """A Keras model whose softmax output has ``temperature`` applied (for exports: the
    file then carries its calibration). ``model`` itself when T is 1."""
    import keras

    if temperature == 1.0:
        return model
    inputs = keras.Input(model.input_shape[1:], name="image")
    outputs = temperature_in_graph(model(inputs), temperature)
    return keras.Model(inputs, outputs, name=f"{model.name}_calibrated")
