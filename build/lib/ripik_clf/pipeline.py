"""The tf.data input pipelines live in :mod:`ripik_clf.train.datasets`; this name is kept
for code written against the flat layout (``from ripik_clf.pipeline import image_dataset``)."""

from ripik_clf.train.datasets import *  # noqa: F403
from ripik_clf.train.datasets import image_dataset, versioned_dataset  # noqa: F401
