"""The cluster a run trains on (TF_CONFIG, checked at one boundary) and the loop's
metrics (train/loop.py) against scikit-learn's."""

import json

import numpy as np
import pytest

from ripik_clf.errors import UserError
from ripik_clf.train.distribute import Cluster, cluster_from_env
from ripik_clf.train.loop import macro_f1


def _config(workers, kind="worker", index=0, **extra):
    return {"TF_CONFIG": json.dumps({"cluster": {"worker": workers, **extra},
                                     "task": {"type": kind, "index": index}})}  # fmt: skip


def test_no_tf_config_is_one_worker_the_chief():
    assert cluster_from_env({}) == Cluster(1, 0) and Cluster().is_chief


def test_a_two_worker_tf_config_names_this_worker():
    cluster = cluster_from_env(_config(["localhost:1", "localhost:2"], index=1))
    assert cluster == Cluster(2, 1) and not cluster.is_chief


BAD = [
    {"TF_CONFIG": "{not json"},
    {"TF_CONFIG": "[]"},
    {"TF_CONFIG": json.dumps({"cluster": {}})},
    _config(["a:1", "b:2"], index=2),
    _config(["a:1", "b:2"], index=-1),
    _config(["a:1", "b:2"], index="0"),
    _config(["a:1", "b:2"], index=True),
    _config(["a:1"], kind="chief"),
    _config(["a:1"], ps=["c:3"]),
    _config("a:1"),
    _config(["a:1", ""]),
]


@pytest.mark.parametrize("environ", BAD, ids=range(len(BAD)))
def test_a_bad_tf_config_is_one_line_naming_it(environ):
    with pytest.raises(UserError, match="TF_CONFIG"):
        cluster_from_env(environ)


def test_macro_f1_of_a_confusion_matrix_is_scikit_learns():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 6))
        truth, guess = rng.integers(0, n, 40), rng.integers(0, n, 40)
        confusion = np.zeros((n, n))
        np.add.at(confusion, (truth, guess), 1)
        expected = f1_score(truth, guess, labels=range(n), average="macro", zero_division=0)
        assert macro_f1(confusion) == pytest.approx(expected)


def _tiny_model(seed):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    model.compile(keras.optimizers.Adam(0.05), keras.losses.CategoricalCrossentropy())
    return model


def test_the_loop_trains_the_same_model_with_and_without_xla():
    """train.xla: the step's forward and backward pass compiled by XLA gives the weights
    the plain step gives (CPU XLA: float sums in another order only)."""
    import numpy as np
    import tensorflow as tf

    from ripik_clf.train.loop import fit_distributed

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype("float32")
    y = np.eye(3, dtype="float32")[(x[:, 0] > 0).astype(int) + (x[:, 1] > 1)]
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    weights, histories, one_device = [], [], tf.distribute.get_strategy()
    for jit in (False, True):
        model = _tiny_model(1)
        history = fit_distributed(model, train, train.take(2), strategy=one_device, epochs=3,
                                  steps_per_epoch=5, verbose=0, jit_compile=jit)  # fmt: skip
        weights.append(model.get_weights())
        histories.append(history.history)
    assert histories[0]["loss"][-1] < histories[0]["loss"][0]  # it trained
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-4)
