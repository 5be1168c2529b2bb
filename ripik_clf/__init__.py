"""ripik_clf: transfer-learning image classification with Keras 3 on TensorFlow."""

import os

# Albumentations checks PyPI for a newer version on import; we never reach the
# network at run time, so switch that off before anything imports it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
