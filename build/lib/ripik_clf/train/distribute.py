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
(train/loop.py). ``train.batch_size`` is the batch of one replica: the global batch is
``batch_size x replicas`` and the learning rate is not scaled with it (scale
``train.full_lr`` yourself, linearly, if you grow the global batch).
"""

import json
import os
from dataclasses import dataclass

from ripik_clf.errors import UserError


@dataclass(frozen=True)
class Cluster:
    """The workers training together (1 = this process alone) and this one's index."""

    workers: int = 1
    index: int = 0

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
    return Cluster(len(workers), index)


_STRATEGY = {}  # one per process: MultiWorkerMirroredStrategy must precede any TF op


def training_strategy(mode="auto"):
    """(strategy, cluster) for ``train.distribute`` ``mode`` (see the module docstring).
    Call it before TensorFlow runs anything: a multi-worker strategy configures the
    runtime's collectives, which TensorFlow allows only at startup."""
    if mode in _STRATEGY:
        return _STRATEGY[mode]
    import tensorflow as tf

    cluster = cluster_from_env() if mode != "off" else Cluster()
    gpus = tf.config.list_physical_devices("GPU")
    if cluster.workers > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
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
