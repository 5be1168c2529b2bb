"""The classifier every phase trains: backbone -> pooling -> the head (dropout, a float32
softmax Dense layer). The head is defined once (:func:`head_layers`): the head phase fits
it on cached features, then its weights go into the full model by layer name."""

import keras


def head_layers(num_classes, dropout):
    """The head: dropout, then a float32 softmax (float32 also under mixed precision)."""
    return [
        keras.layers.Dropout(dropout, name="head_dropout"),
        keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier"),
    ]


def set_head_dropout(model, rate):
    """The head's dropout rate in a built (or loaded) classifier: the full phase applies
    its own ``train.dropout``, not the one the head phase was built with."""
    model.get_layer("head_dropout").rate = float(rate)


def head_on_features(width, num_classes, dropout):
    """The head alone, on pooled features of ``width``: what the head phase trains."""
    return keras.Sequential(
        [keras.Input((width,), name="features"), *head_layers(num_classes, dropout)]
    )


def build_classifier(backbone, num_classes, dropout):
    """Backbone (inference mode) -> pooling -> head, raw pixels in."""
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    # training=False keeps BatchNorm in inference mode even after unfreezing (phase 2):
    # updating its statistics on a small dataset destroys what the head learned.
    x = backbone(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    for layer in head_layers(num_classes, dropout):
        x = layer(x)
    return keras.Model(inputs, x, name="classifier_model")


def for_prediction(model):
    """A copy of ``model`` with its weights and no training state: no optimizer moments or
    weight averages, no compile settings. What a phase ships (``full.keras`` kept its
    AdamW and EMA variables: 54 MB against the 14 MB of its weights); a resumed phase
    reads its training state from its backup, never from the shipped file."""
    copy = type(model).from_config(model.get_config())  # clone_model shares the optimizer
    copy.set_weights(model.get_weights())
    return copy


def feature_extractor(backbone):
    """The backbone with the classifier's pooling: the features the head phase caches."""
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(backbone.output)
    return keras.Model(backbone.input, pooled, name="feature_extractor")


def unfreeze(model):
    """Every layer trainable except BatchNormalization (kept frozen, see build_classifier)."""
    for layer in _walk(model):  # parents before children, so the BN override sticks
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    return model


def _walk(layer):
    yield layer
    for child in layer.layers if isinstance(layer, keras.Model) else []:
        yield from _walk(child)
