"""``export --ensemble``: the submitted ensemble as one exported model.

One input, the largest member's input size (``S x S``, prepared as every model here sees
images: see the preprocessing spec); inside, each member gets it resized to its own size
(bilinear: portable to TFLite and ONNX; with one input size for all members, as by
default, nothing is resized), its TTA views (mean softmax), its temperature, then the
family means, the weighted soft vote and the ensemble's temperature: the probabilities
``ensemble.py`` wrote to ``<out>_probabilities.csv``. Two-stage TTA is in the graph too: both
passes run, and each image keeps the TTA one only when its plain confidence is below the
recorded threshold.
"""

from types import SimpleNamespace

import numpy as np

from ripik_clf.errors import UserError
from ripik_clf.predict.calibration import temperature_in_graph

STEM = "ensemble"


def ensemble_model(ensemble):
    """A Keras model from ``(N, S, S, 3)`` float32 0-255 images to the ensemble's
    calibrated probabilities ``(N, C)``."""
    import keras

    definition = ensemble.definition
    size = input_size(ensemble)
    image = keras.Input((size, size, 3), name="image")
    resized = {
        s: image if s == size else keras.ops.image.resize(image, (s, s), interpolation="bilinear")
        for s in {m.image_size for m in ensemble.members}
    }

    # Members' models share names (every head is "classifier_model"): each goes into a
    # uniquely named wrapper, as a model's operations must have unique names.
    models = [
        keras.Sequential([m.model], name=f"member_{i}") for i, m in enumerate(ensemble.members)
    ]

    def members_under(stage):
        """Each member's calibrated probabilities with the views of ``stage`` (the
        recorded TTA, or none: the first pass of two-stage TTA)."""
        out = []
        for member, spec, model in zip(ensemble.members, definition.members, models):
            views = spec.tta if stage != "none" else "none"
            p = _mean_over_views(model, resized[member.image_size], views)
            out.append(temperature_in_graph(p, member.temperature_for(stage)))
        return out

    def families(members):
        return [
            keras.ops.mean(
                keras.ops.stack([p for p, m in zip(members, ensemble.members) if m.family == n]),
                axis=0,
            )
            for n in definition.families
        ]

    chosen = members_under(definition.tta)
    if definition.tta_threshold is not None:
        plain = members_under("none")
        voted = ensemble.combiner.to_keras(families(plain), calibrated=False)
        confidence = keras.ops.max(voted, axis=-1, keepdims=True)
        redo = (
            keras.ops.ones_like(confidence) > 0
            if definition.tta_threshold >= 1
            else confidence < definition.tta_threshold
        )  # the rule of voting.needs_tta
        chosen = [keras.ops.where(redo, t, p) for t, p in zip(chosen, plain)]
    outputs = ensemble.combiner.to_keras(families(chosen))
    return keras.Model(image, outputs, name="ensemble")


def input_size(ensemble):
    return max(m.image_size for m in ensemble.members)


def _mean_over_views(model, images, views):
    import keras

    if views == "none":
        return model(images)
    mirrored = keras.ops.flip(images, axis=2)
    stack = [images, mirrored]
    if views == "d4":  # predict.tta.tta_views: four rotations of the image and its mirror
        stack = [keras.ops.rot90(v, k, axes=(1, 2)) for v in stack for k in range(4)]
    return keras.ops.mean(keras.ops.stack([model(v) for v in stack]), axis=0)


def export_ensemble_checked(config, fmt, out_dir, quantize="none", check_images=256):
    """Export the last submitted ensemble and compare it, on up to ``check_images``
    images every member held out, with the Keras ensemble (each member reading the files
    at its own size, as ``ensemble.py`` did).

    Returns:
        (exported path, images checked, max |p - p_keras|, arg-max agreement).
    """
    from ripik_clf.predict.ensemble import Ensemble
    from ripik_clf.predict.export import (
        MIN_AGREEMENT,
        check_formats,
        run_export,
        write_export,
    )
    from ripik_clf.progress import say

    check_formats(fmt, quantize)
    say("export: loading the submitted ensemble...")
    ensemble = Ensemble.load(config.workdir)
    model = ensemble_model(ensemble)
    say(f"export: converting {len(ensemble.members)} member(s) into one {fmt} model...")
    record = SimpleNamespace(
        image_size=input_size(ensemble), classes=ensemble.classes, temperature=True
    )
    target = write_export(model, fmt, out_dir, STEM, quantize, record)
    paths = _held_out_paths(config, ensemble)[:check_images]
    if not paths:
        raise UserError("no image held out by every member was found to check the export on")
    say(f"export: checking it against the Keras ensemble on {len(paths)} held-out images...")
    expected, failures, _ = ensemble.predict_files(paths)
    keep = [i for i, p in enumerate(paths) if p not in {f for f, _ in failures}]
    expected = ensemble.vote(ensemble.families(expected))[keep]
    from ripik_clf.data.images import load_for_model

    images = np.stack([load_for_model(paths[i], record.image_size) for i in keep])
    got = np.concatenate(
        [
            run_export(target, fmt, images[i : i + 32].astype("float32"))
            for i in range(0, len(keep), 32)
        ]
    )
    difference = float(np.abs(expected - got).max())
    agreement = float((expected.argmax(1) == got.argmax(1)).mean())
    if agreement < MIN_AGREEMENT:
        raise UserError(
            f"the exported ensemble disagrees with the Keras one on {1 - agreement:.2%} of "
            f"the check images (allowed: {1 - MIN_AGREEMENT:.1%})"
        )
    return target, len(keep), difference, agreement


def _held_out_paths(config, ensemble):
    """Files of the images every member held out (its validation images), sorted."""
    from ripik_clf.data.splits import recorded_split

    held = None
    for member in ensemble.members:
        images = set(member.record.held_out or [])
        held = images if held is None else held & images
    table, _ = recorded_split(config, check=False)  # any of them will do
    return sorted(table[table["image"].isin(held or set())]["path"].astype(str))
