"""The Keras EfficientNet-Lite network and the mapping of the PyTorch tensors onto it."""

import keras
import numpy as np

from ripik_clf.errors import UserError
from ripik_clf.models.lite_weights import (
    BN_EPSILON,
    HEAD_FILTERS,
    LITE_VARIANTS,
    STEM_FILTERS,
    lite_blocks,
    read_legacy_torch,
    weights_file,
)

DROP_CONNECT_RATE = 0.2  # stochastic depth, scaled linearly over the blocks (training only)


def build_lite(name, *, image_size=None, include_top=False, weights="imagenet"):
    """EfficientNet-Lite ``name`` taking raw 0-255 RGB of ``image_size`` pixels.

    Args:
        name: ``efficientnet_lite0``, ``efficientnet_lite1`` or ``efficientnet_lite2``.
        image_size: input side in pixels (default: the variant's native resolution).
        include_top: end in the 1000-way ImageNet softmax instead of the feature map.
        weights: ``"imagenet"`` (the offline package), ``None`` (random) or a ``.pth`` path.
    """
    width, depth, native_size, dropout = LITE_VARIANTS[name]
    size = image_size or native_size
    blocks = lite_blocks(width, depth)

    # === Layers and functional model ===
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 128, offset=-127 / 128, name="normalize")(inputs)
    x = _conv_bn(x, STEM_FILTERS, 3, 2, "stem")
    for index, (kernel, f_in, f_out, expand, stride) in enumerate(blocks):
        # A layer in every block but the first, even at rate 0: the full phase sets its
        # train.stochastic_depth (set_stochastic_depth) on the model it loads.
        drop = DROP_CONNECT_RATE * index / len(blocks) if index else None
        x = _mbconv(x, kernel, f_in, f_out, expand, stride, drop, f"block{index}")
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "top")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(dropout, name="top_dropout")(x)
        x = keras.layers.Dense(1000, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, x, name=name)

    if weights == "imagenet":
        weights = weights_file(name)
    if weights is not None:
        load_torch_weights(model, read_legacy_torch(weights), len(blocks), include_top)
    return model


def _conv_bn(x, filters, kernel, stride, prefix):
    x = keras.layers.Conv2D(
        filters, kernel, stride, padding="same", use_bias=False, name=f"{prefix}_conv"
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{prefix}_relu6")(x)


def _mbconv(inputs, kernel, f_in, f_out, expand, stride, drop, prefix):
    """Inverted residual block without squeeze-excitation (the Lite simplification)."""
    x = inputs
    if expand != 1:
        x = keras.layers.Conv2D(
            f_in * expand, 1, padding="same", use_bias=False, name=f"{prefix}_expand_conv"
        )(x)
        x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_expand_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"{prefix}_expand_relu6")(x)
    x = keras.layers.DepthwiseConv2D(
        kernel, stride, padding="same", use_bias=False, name=f"{prefix}_dwconv"
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}_relu6")(x)
    x = keras.layers.Conv2D(
        f_out, 1, padding="same", use_bias=False, name=f"{prefix}_project_conv"
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_project_bn")(x)
    if stride == 1 and f_in == f_out:
        if drop is not None:  # rate 0 keeps the layer: set_stochastic_depth may raise it
            x = keras.layers.Dropout(drop, noise_shape=(None, 1, 1, 1), name=f"{prefix}_drop")(x)
        x = keras.layers.Add(name=f"{prefix}_add")([x, inputs])
    return x


def _torch_to_keras_names(num_blocks, include_top):
    """(torch prefix, keras layer name, kind) for every weighted layer."""
    pairs = [("_conv_stem", "stem_conv", "conv"), ("_bn0", "stem_bn", "bn")]
    for i in range(num_blocks):
        t, k = f"_blocks.{i}.", f"block{i}_"
        pairs += [
            (t + "_expand_conv", k + "expand_conv", "conv"),
            (t + "_bn0", k + "expand_bn", "bn"),
            (t + "_depthwise_conv", k + "dwconv", "depthwise"),
            (t + "_bn1", k + "bn", "bn"),
            (t + "_project_conv", k + "project_conv", "conv"),
            (t + "_bn2", k + "project_bn", "bn"),
        ]
    pairs += [("_conv_head", "top_conv", "conv"), ("_bn1", "top_bn", "bn")]
    if include_top:
        pairs.append(("_fc", "predictions", "dense"))
    return pairs


def _convert(kind, tensors):
    if kind == "conv":  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
        return [tensors["weight"].transpose(2, 3, 1, 0)]
    if kind == "depthwise":  # torch (channels, 1, kh, kw) -> keras (kh, kw, channels, 1)
        return [tensors["weight"].transpose(2, 3, 0, 1)]
    if kind == "dense":
        return [tensors["weight"].T, tensors["bias"]]
    return [tensors[k] for k in ("weight", "bias", "running_mean", "running_var")]


def load_torch_weights(model, state, num_blocks, include_top):
    """Assign every tensor of ``state`` to its layer; each used once, every shape checked.

    ``num_batches_tracked`` counters have no Keras counterpart: they are consumed and
    dropped. Without the top, the ImageNet classifier (``_fc``) is knowingly unused.
    """
    unused = set(state)
    for torch_name, layer_name, kind in _torch_to_keras_names(num_blocks, include_top):
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            continue  # e.g. blocks with expansion 1 have no expand conv
        fields = (
            ("weight",)
            if kind in ("conv", "depthwise")
            else (
                ("weight", "bias")
                if kind == "dense"
                else ("weight", "bias", "running_mean", "running_var")
            )
        )
        keys = {f: f"{torch_name}.{f}" for f in fields}
        missing = [k for k in keys.values() if k not in state]
        if missing:
            raise UserError(f"weights file has no tensor {missing[0]} for layer {layer_name}")
        values = _convert(kind, {f: state[k] for f, k in keys.items()})
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise UserError(f"shape mismatch for {layer_name}: model {expected}, file {got}")
        layer.set_weights([v.astype(np.float32) for v in values])
        unused -= set(keys.values())
        unused.discard(f"{torch_name}.num_batches_tracked")
    if not include_top:
        unused -= {"_fc.weight", "_fc.bias"}
    if unused:
        raise UserError(f"weights file has tensors the model does not use: {sorted(unused)[:5]}")


def set_stochastic_depth(model, rate):
    """Set the drop-connect rates of the Lite blocks anywhere inside ``model`` to rise
    linearly to ``rate``, as :func:`build_lite` does; 0 turns stochastic depth off. Takes
    effect in training traced after it. Returns the number of layers set (0: no Lite
    backbone, or one built without these layers)."""
    import re

    layers = list(model._flatten_layers(include_self=False, recursive=True))
    blocks = {m.group(1) for layer in layers if (m := re.match(r"block(\d+)_", layer.name))}
    drops = [(layer, re.fullmatch(r"block(\d+)_drop", layer.name)) for layer in layers]
    for layer, match in drops:
        if match:
            layer.rate = float(rate) * int(match.group(1)) / len(blocks)
    return sum(1 for _, match in drops if match)
