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
    assert cluster == Cluster(2, 1, ("localhost:1", "localhost:2")) and not cluster.is_chief


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
    _config(["localhost:abc", "b:2"]),  # a port that is no number
    _config(["a:1", "b:0"]),
    _config(["a:1", "b:70000"]),
    _config(["a:1", "b"]),
    _config(["a:1", ":2"]),
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
                                  steps_per_epoch=5, global_batch=8, examples=(40, 16),
                                  verbose=0, jit_compile=jit)  # fmt: skip
        weights.append(model.get_weights())
        histories.append(history.history)
    assert histories[0]["loss"][-1] < histories[0]["loss"][0]  # it trained
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-4)


def test_a_port_in_use_is_one_line_before_tensorflow_is_asked():
    import socket

    from ripik_clf.train.distribute import rendezvous

    with socket.socket() as holder:
        holder.bind(("", 0))
        holder.listen()
        port = holder.getsockname()[1]
        cluster = cluster_from_env(_config([f"localhost:{port}", "localhost:2"], index=0))
        with pytest.raises(UserError, match=f"cannot listen on port {port}"):
            rendezvous(cluster, timeout=1)


def test_workers_that_all_answer_meet_and_one_that_does_not_is_named(capsys):
    import socket
    import threading

    from ripik_clf.train.distribute import rendezvous

    ports = _free_ports(3)
    addresses = [f"localhost:{p}" for p in ports]
    clusters = [cluster_from_env(_config(addresses[:2], index=k)) for k in (0, 1)]
    errors = []

    def worker(cluster):
        try:
            rendezvous(cluster, timeout=30)
        except UserError as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(c,)) for c in clusters[1:]]
    for t in threads:
        t.start()
    rendezvous(clusters[0], timeout=30)  # the other one answers: both go on
    with socket.socket() as server:  # what TensorFlow's server then listens with
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("", ports[0]))
        server.listen()
        for t in threads:
            t.join(timeout=30)
    assert not errors and not any(t.is_alive() for t in threads)
    lonely = cluster_from_env(_config([addresses[0], addresses[2]], index=0))
    with pytest.raises(UserError, match=f"{addresses[2]} did not join within 1 s"):
        rendezvous(lonely, timeout=1)


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _lonely_worker(tmp_path, timeout):
    """A full phase as worker 1 of 2 whose worker 0 never starts (a child process)."""
    import os
    import subprocess
    import sys

    from conftest import REPO, make_folder_dataset

    data = make_folder_dataset(tmp_path / "data", {"a": 4, "b": 4}, size=16)
    ports = _free_ports(2)
    environ = os.environ | _config([f"localhost:{p}" for p in ports], index=1)
    argv = [sys.executable, str(REPO / "train.py"), "--phase", "full", "--data", str(data),
            "--workdir", str(tmp_path / "w"), "--set", f"train.peer_timeout={timeout}"]  # fmt: skip
    return subprocess.Popen(argv, env=environ, cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


@pytest.mark.slow
def test_a_peer_that_never_comes_is_one_line_after_the_timeout(tmp_path):
    import time

    started = time.monotonic()
    worker = _lonely_worker(tmp_path, timeout=5)
    out, err = worker.communicate(timeout=180)
    assert worker.returncode == 2, err[-2000:]
    assert "waiting up to 5 s (train.peer_timeout)" in out
    assert err.strip().splitlines()[-1].endswith("check their addresses")
    assert "did not join within 5 s" in err and "Traceback" not in err
    assert time.monotonic() - started < 120


@pytest.mark.slow
def test_sigterm_stops_a_worker_waiting_for_its_peers(tmp_path):
    import signal
    import time

    worker = _lonely_worker(tmp_path, timeout=600)
    deadline = time.monotonic() + 120
    line = ""
    while "waiting up to" not in line and time.monotonic() < deadline:
        line = worker.stdout.readline()
    assert "waiting up to 600 s" in line
    time.sleep(2)  # inside TensorFlow's wait, which once ignored SIGTERM
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in err and "Traceback" not in err


@pytest.mark.parametrize("replicas", [1, 2, 4, 8])
def test_the_global_batch_is_the_recipes_at_any_number_of_replicas(replicas):
    from ripik_clf.train.recipe import recipe_batch

    assert recipe_batch(32, replicas) == 32  # the same steps and learning rate at any N
    with pytest.raises(UserError, match=f"does not divide among {replicas * 3} replicas"):
        recipe_batch(32, replicas * 3)


def _stated_rate(step, peak, warmup, total):
    """The rule as its docstring states it, written out independently of Keras."""
    if step < warmup:
        return peak * step / warmup
    done = min(step - warmup, total - warmup) / max(total - warmup, 1)
    return peak * 0.5 * (1 + np.cos(np.pi * done))


@pytest.mark.parametrize("warmup_epochs", [0, 1.5])
def test_at_twice_the_global_batch_every_step_has_the_rules_learning_rate(warmup_epochs):
    from ripik_clf.config import TrainConfig
    from ripik_clf.train.recipe import learning_rate_rule, learning_rate_schedule

    images, tc = 640, TrainConfig(full_lr=2e-4, full_epochs=5, full_warmup_epochs=warmup_epochs)
    rules = {}
    for batch in (32, 64):
        steps_per_epoch = -(-images // batch)
        rule = rules[batch] = learning_rate_rule(tc, steps_per_epoch)
        assert rule["schedule_steps"] == steps_per_epoch * 5
        assert rule["warmup_steps"] == round(steps_per_epoch * warmup_epochs)
        schedule = learning_rate_schedule(rule)
        steps = range(rule["schedule_steps"] + 1)
        rates = [float(schedule(step)) for step in steps]
        expected = [
            _stated_rate(s, 2e-4, rule["warmup_steps"], rule["schedule_steps"]) for s in steps
        ]
        np.testing.assert_allclose(rates, expected, rtol=1e-5, atol=1e-9)  # float32
    # Twice the global batch: the same peak (no scaling rule), half the steps, the same
    # warm-up in images seen.
    assert rules[64]["peak_lr"] == rules[32]["peak_lr"] == 2e-4
    assert rules[64]["schedule_steps"] * 2 == rules[32]["schedule_steps"]
    assert rules[64]["warmup_steps"] * 2 == rules[32]["warmup_steps"]
