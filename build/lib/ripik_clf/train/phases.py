"""The training phases, in the order they run: ``head`` (backbone frozen, cached
features), ``probe`` (a logistic regression on the same features) and ``full`` (every
layer but BatchNorm, low learning rate). What the stages and tests import."""

from ripik_clf.train.common import model_data, run_dir, trained_with_flips
from ripik_clf.train.full import train_full
from ripik_clf.train.head import frozen_backbone, train_head, train_probe

PHASES = {"head": train_head, "probe": train_probe, "full": train_full}

__all__ = [
    "PHASES", "frozen_backbone", "model_data", "run_dir", "train_full", "train_head",
    "train_probe", "trained_with_flips",
]  # fmt: skip
