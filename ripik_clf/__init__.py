"""ripik_clf: transfer-learning image classification with Keras 3 on TensorFlow."""

import os

# Albumentations checks PyPI for a newer version on import; we never reach the
# network at run time, so switch that off before anything imports it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.2.0"
# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) hides our own messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def __getattr__(name):
    """``from ripik_clf import Ensemble``: the submitted ensemble for notebooks and
    services (imported on first use: TensorFlow is slow to import)."""
    if name in ("Ensemble", "Predictions"):
        from ripik_clf.predict import ensemble

        return getattr(ensemble, name)
    raise AttributeError(f"module 'ripik_clf' has no attribute {name!r}")
