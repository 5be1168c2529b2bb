import keras
import numpy as np
import pytest
from sklearn.datasets import load_sample_image

from ripik_clf.data.images import resize_square
from ripik_clf.errors import UserError
from ripik_clf.models.registry import BACKBONES, create_backbone, resolve_image_size


def _center_crop(image, size):
    """ImageNet's evaluation view: the central square, resized to ``size``."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize_square(image[top : top + side, left : left + side], size)


def test_lite0_imagenet_weights_are_right():
    model = create_backbone("efficientnet_lite0", include_top=True)
    images = np.stack(
        [_center_crop(load_sample_image(n), 224) for n in ("flower.jpg", "china.jpg")]
    )
    probabilities = model.predict(images.astype("float32"), verbose=0)
    assert probabilities.argmax(axis=1).tolist() == [985, 698]  # daisy, palace
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "name",
    [
        "efficientnet_lite0",
        pytest.param("efficientnetb0", marks=pytest.mark.slow),
        pytest.param("efficientnetv2-b0", marks=pytest.mark.slow),
    ],
)
def test_save_load_round_trip(name, tmp_path):
    weights = "imagenet" if name.startswith("efficientnet_lite") else None
    model = create_backbone(name, weights=weights, image_size=32)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(
        again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )


def test_registry_names_and_sizes():
    assert {
        "efficientnet_lite0",
        "efficientnet_lite2",
        "efficientnetb7",
        "efficientnetv2-s",
    } <= set(BACKBONES)
    assert resolve_image_size("efficientnetb3") == 300
    assert resolve_image_size("efficientnet_lite0", 64) == 64


def test_bad_names_and_sizes():
    with pytest.raises(UserError, match="unknown backbone 'resnet'; known: efficientnet_lite0"):
        create_backbone("resnet")
    with pytest.raises(UserError, match="image size 16 is too small"):
        create_backbone("efficientnet_lite0", image_size=16)
    with pytest.raises(UserError, match="weights file not found"):
        create_backbone("efficientnetb0", weights="/nowhere/w.h5")


def test_unreachable_keras_weights_say_where_to_put_them(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.applications.efficientnet.file_utils.get_file", offline)
    with pytest.raises(UserError, match=r"place efficientnetb0_notop.h5 in .*models/"):
        create_backbone("efficientnetb0", image_size=32)


def test_stochastic_depth_is_set_on_a_built_model_and_zero_turns_it_off():
    """train.stochastic_depth reaches the Lite blocks of a saved classifier (the full
    phase sets it after loading the head): 0 makes training passes deterministic."""
    from ripik_clf.models.classifier import build_classifier
    from ripik_clf.models.efficientnet_lite import set_stochastic_depth

    model = build_classifier(
        create_backbone("efficientnet_lite0", weights=None, image_size=32), 3, 0
    )
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")

    def spread():
        a, b = (np.asarray(model(images, training=True)) for _ in range(2))
        return float(np.abs(a - b).max())

    assert set_stochastic_depth(model, 0.0) > 0 and spread() == 0.0
    assert set_stochastic_depth(model, 0.5) > 0 and spread() > 0
    rates = [layer.rate for layer in model._flatten_layers() if layer.name.endswith("_drop")]
    assert 0 < min(rates) < max(rates) < 0.5  # rising over the blocks, below the last's 0.5
