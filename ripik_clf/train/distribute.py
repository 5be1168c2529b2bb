"""Which devices and machines the full phase trains on: a tf.distribute strategy chosen
from the environment, and this process's place in the cluster.

- ``TF_CONFIG`` naming several workers -> ``MultiWorkerMirroredStrategy``: every worker
  runs the same ``train.py --phase full`` command on the same work directory (a shared
  file system, as the data are); worker 0 is the chief and the only one that writes the
  run folder (the others work in a private temporary folder and hold no lock);
- several GPUs (or ``train.distribute: mirrored``) -> ``MirroredStrategy``;
- otherwise the default strategy (one device).

Keras 3's ``fit`` cannot run under ``MultiWorkerMirroredStrategy`` (keras-team/keras
#20585), so every case trains with the same step run by ``strategy.run``
(train/loop.py). ``train.batch_size`` is the global batch at any number of replicas,
each taking an equal share (train/recipe.py ``recipe_batch``): one recipe on 1 or N.
"""

import json
import os
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from ripik_clf.errors import UserError


@dataclass(frozen=True)
class Cluster:
    """The workers training together (1 = this process alone) and this one's index."""

    workers: int = 1
    index: int = 0
    addresses: tuple = ()  # host:port of every worker, by index

    @property
    def is_chief(self):
        return self.index == 0


def cluster_from_env(environ=None):
    """The cluster ``TF_CONFIG`` describes (one worker when it is unset).

    Raises:
        UserError: TF_CONFIG is not what tf.distribute expects, or names roles (chief,
            ps, evaluator) this tool does not use: worker 0 is the chief.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not raw:
        return Cluster()
    example = (
        '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", '
        '"index": 0}}'
    )
    try:
        spec = json.loads(raw)
        workers = spec["cluster"]["worker"]
        task = spec["task"]
        kind, index = task["type"], task["index"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"TF_CONFIG is not a cluster description like {example}") from None
    other = sorted(set(spec["cluster"]) - {"worker"})
    if other or kind != "worker":
        raise UserError(
            f"TF_CONFIG: only workers are used (worker 0 is the chief), found "
            f"{', '.join(other) or kind!r}; describe the cluster as {example}"
        )
    if not isinstance(workers, list) or not all(isinstance(w, str) and w for w in workers):
        raise UserError(f"TF_CONFIG: cluster.worker must be a list of host:port, got {workers!r}")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(workers):
        raise UserError(
            f"TF_CONFIG: task.index must be 0..{len(workers) - 1} (one per worker), got {index!r}"
        )
    for address in workers:
        _host_port(address)
    return Cluster(len(workers), index, tuple(workers))


def _host_port(address):
    """``(host, port)`` of a worker address ``host:port`` (a bad one: one line)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"TF_CONFIG: worker address {address!r} is not host:port "
                        "(a port 1-65535)")  # fmt: skip
    return host.strip("[]"), int(port)


def rendezvous(cluster, timeout):
    """Wait, in Python, until every other worker answers on its port, or stop after
    ``timeout`` seconds with one line. TensorFlow's own wait (in the multi-worker
    strategy) holds the interpreter and takes SIGTERM over, so a peer that never came
    kept it waiting forever; this wait honours SIGTERM and has a bound. Meanwhile this
    worker answers on its own port (refused at once when another process holds it),
    then frees it for TensorFlow; a peer that sees TensorFlow's server instead is
    answered just the same."""
    _, port = _host_port(cluster.addresses[cluster.index])
    others = [a for k, a in enumerate(cluster.addresses) if k != cluster.index]
    _honour_stop_signals()
    with _answering(cluster.index, port):
        print(f"worker {cluster.index} of {cluster.workers}: waiting up to {timeout:.0f} s "
              f"(train.peer_timeout) for {', '.join(others)}", flush=True)  # fmt: skip
        waiting, deadline = set(others), time.monotonic() + timeout
        while waiting:
            waiting = {a for a in waiting if not _answers(a)}
            if waiting and time.monotonic() > deadline:
                raise UserError(
                    f"worker {cluster.index} of {cluster.workers}: {', '.join(sorted(waiting))} "
                    f"did not join within {timeout:.0f} s (train.peer_timeout): start the same "
                    "command on every worker TF_CONFIG names, and check their addresses"
                )
            time.sleep(0.5 if waiting else 0)


@contextmanager
def _answering(index, port):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", port))
    except OSError as err:
        listener.close()
        raise UserError(
            f"worker {index} cannot listen on port {port} ({err.strerror}): another "
            "process holds it; stop it or name another port in TF_CONFIG"
        ) from None
    listener.listen()
    listener.settimeout(0.2)
    done = threading.Event()

    def answer():
        while not done.is_set():
            try:
                listener.accept()[0].close()
            except OSError:  # the timeout, or the socket closed
                continue

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        listener.close()


def _answers(address):
    try:
        socket.create_connection(_host_port(address), timeout=1).close()
        return True
    except OSError:  # refused, unreachable, or a name that does not resolve
        return False


def _honour_stop_signals():
    """SIGTERM ends the phase with one line (TensorFlow's preemption notifier would
    otherwise take it over and keep waiting)."""

    def stop(signum, frame):
        name = signal.Signals(signum).name
        _stop(128 + signum, f"stopped by {name}: run the same command again to resume "
                            "from the last finished epoch")  # fmt: skip

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def _stop(code, message):
    print(message, file=sys.stderr, flush=True)
    os._exit(code)  # at once: the work of the epoch under way is redone on resume


_STRATEGY = {}  # one per process: MultiWorkerMirroredStrategy must precede any TF op


def training_strategy(mode="auto", peer_timeout=300.0):
    """(strategy, cluster) for ``train.distribute`` ``mode`` (see the module docstring).
    Call it before TensorFlow runs anything: a multi-worker strategy configures the
    runtime's collectives, which TensorFlow allows only at startup. Workers that do not
    all join within ``peer_timeout`` seconds stop with one line."""
    if mode in _STRATEGY:
        return _STRATEGY[mode]
    import tensorflow as tf

    cluster = cluster_from_env() if mode != "off" else Cluster()
    gpus = tf.config.list_physical_devices("GPU")
    if cluster.workers > 1:
        rendezvous(cluster, peer_timeout)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _honour_stop_signals()  # again: the strategy's notifier took SIGTERM
    elif mode == "mirrored":
        kind = "GPU" if gpus else "CPU"
        strategy = tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices(kind)]
        )
    elif mode == "auto" and len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    _STRATEGY[mode] = strategy, cluster
    return strategy, cluster


def describe(strategy, cluster):
    """One line for the phase's plan: how many workers and replicas."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return "one device"
    where = f"{cluster.workers} workers" if cluster.workers > 1 else "one machine"
    return f"{replicas} replicas on {where} ({type(strategy).__name__})"


def barrier(strategy):
    """Every worker waits here until all have arrived (an all-reduce of one number)."""
    import tensorflow as tf

    if strategy.num_replicas_in_sync > 1:
        one = strategy.run(lambda: tf.constant(1.0))
        strategy.reduce(tf.distribute.ReduceOp.SUM, one, axis=None)


def use_xla(mode="auto"):
    """``train.xla``: on, off, or (auto) on when a GPU is present."""
    if mode != "auto":
        return mode == "on"
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))
