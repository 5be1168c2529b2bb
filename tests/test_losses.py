"""The loss and imbalance options each change what is optimised."""

import numpy as np
import pytest

from ripik_clf.config import TrainConfig
from ripik_clf.train.common import class_weights, make_loss
from ripik_clf.train.recipe import full_phase_optimizer

Y = np.array([[1.0, 0, 0], [0, 1, 0]], dtype="float32")
P = np.array([[0.9, 0.05, 0.05], [0.3, 0.6, 0.1]], dtype="float32")


def _loss(**settings):
    return float(make_loss(TrainConfig(**settings))(Y, P))


def test_focal_loss_down_weights_easy_examples():
    ce = -np.log([0.9, 0.6])
    focal = ((1 - np.array([0.9, 0.6])) ** 2 * ce).mean()
    assert _loss() == pytest.approx(ce.mean(), rel=1e-5)
    # Keras' focal loss also carries alpha = 0.25 (the RetinaNet default)
    assert _loss(loss="focal", focal_gamma=2.0) == pytest.approx(0.25 * focal, rel=1e-4)


def test_label_smoothing_moves_the_targets():
    smooth = Y * 0.9 + 0.1 / 3
    expected = -(smooth * np.log(P)).sum(1).mean()
    assert _loss(label_smoothing=0.1) == pytest.approx(expected, rel=1e-5)


def test_balanced_class_weights():
    labels = np.array([0] * 6 + [1] * 2)
    assert class_weights(labels, 3, False) is None
    weights = class_weights(labels, 3, True)
    assert weights[0] == pytest.approx(8 / (2 * 6)) and weights[1] == pytest.approx(8 / (2 * 2))
    assert weights[2] == 1.0  # absent from training: neutral


def test_full_phase_warm_up_then_cosine_decay():
    optimizer = full_phase_optimizer(
        TrainConfig(full_lr=1e-4, full_epochs=4, full_warmup_epochs=1), steps_per_epoch=10
    )
    rate = optimizer._learning_rate  # the schedule itself (.learning_rate is its value now)
    lrs = [float(rate(step)) for step in (0, 5, 10, 25, 40)]
    assert lrs[0] == 0 and lrs[1] == pytest.approx(5e-5) and lrs[2] == pytest.approx(1e-4)
    assert lrs[2] > lrs[3] > lrs[4] and lrs[4] == pytest.approx(0, abs=1e-9)
    adamw = full_phase_optimizer(TrainConfig(optimizer="adamw"), steps_per_epoch=10)
    # The default decay acts: Keras multiplies it by the learning rate (~5e-6 a step here).
    assert type(adamw).__name__ == "AdamW" and adamw.weight_decay == pytest.approx(0.05)
    assert adamw.use_ema and adamw.ema_momentum == pytest.approx(0.97)
    assert not full_phase_optimizer(TrainConfig(ema=False), steps_per_epoch=10).use_ema


def test_the_full_phase_runs_at_least_its_minimum_steps():
    from ripik_clf.train.recipe import full_phase_epochs

    assert full_phase_epochs(TrainConfig(full_epochs=10, full_min_steps=200), 14) == 15
    assert full_phase_epochs(TrainConfig(full_epochs=10, full_min_steps=200), 20) == 10
    assert full_phase_epochs(TrainConfig(full_epochs=3, full_min_steps=0), 5) == 3
