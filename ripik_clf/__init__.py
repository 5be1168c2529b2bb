"""ripik_clf: transfer-learning image classification with Keras 3 on TensorFlow."""

import os

# Albumentations checks PyPI for a newer version on import; we never reach the
# network at run time, so switch that off before anything imports it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from ripik_clf.version import __version__  # noqa: E402, F401 - the package's version

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) hides our own messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def fit(photos, test, out, *, workdir="work", settings=None, image_size=None, config=None):
    """The recommended pipeline, as ``ripik fit``: photos (one folder per class) to a
    submission and a report. ``settings``: ``{"section.key": value}`` as ``--set`` takes
    them. Resumes what a run before left. Returns ``{"submission", "report", "workdir"}``.

    Raises:
        ripik_clf.errors.UserError: a bad input, in one line.
    """
    from ripik_clf.cli.fit import fit as run_fit
    from ripik_clf.cli.ripik import parse

    argv = ["fit", str(photos), "--test", str(test), "--out", str(out), "--workdir", str(workdir)]
    argv += [f"--set={key}={value}" for key, value in (settings or {}).items()]
    argv += ["--image-size", str(image_size)] if image_size else []
    argv += ["--config", str(config)] if config else []
    return run_fit(parse(argv))


def __getattr__(name):
    """``from ripik_clf import Ensemble``: the submitted ensemble for notebooks and
    services (imported on first use: TensorFlow is slow to import)."""
    if name in ("Ensemble", "Predictions"):
        from ripik_clf.predict import ensemble

        return getattr(ensemble, name)
    raise AttributeError(f"module 'ripik_clf' has no attribute {name!r}")
