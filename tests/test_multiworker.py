"""Training on more than one device (CI runs these: make test-slow).

Two CPU workers on localhost ports (TF_CONFIG) train one model together: both exit 0,
end with the same weights, only worker 0 writes the run, and the model is the one a
single worker trains with the same global batch. A worker killed mid-run stops the other
with one line; both started again resume from the last finished epoch and end with the
weights of an uninterrupted run. ``MirroredStrategy`` over two logical CPU devices in one
process trains the same model too."""

import json
import os
import shutil
import socket
import subprocess
import sys

import kill_cases as kc
import numpy as np
import pytest

from ripik_clf import workdir as wd

pytestmark = pytest.mark.slow  # several training processes

# 3 epochs at a rate that learns the colours: the best checkpoint is a trained model (not
# the head it started from), so comparing models compares training. Stochastic depth off:
# its random block drops differ between one batch of 8 and two replicas of 4.
FULL = ["--phase", "full", "--set", "train.image_size=32", "--set", "train.dropout=0",
        "--set", "train.full_epochs=3", "--set", "train.full_lr=3e-4", "--set",
        "train.full_warmup_epochs=0", "--set", "train.full_min_steps=0", "--set",
        "train.full_start=head", "--set", "train.ema=false", "--set",
        "train.stochastic_depth=0", "--model", "original"]  # fmt: skip
# One process, its CPU split into two logical devices before TensorFlow starts.
TWO_CPUS = r"""
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import train
train.main(sys.argv[2:])  # sys.argv[1] is "train.py"
"""
TOLERANCE = 1e-3  # same data and global batch: only the order of float sums differs


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def after_head(tmp_path_factory):
    work = kc.augmented_colour_classes(tmp_path_factory.mktemp("mw"), "--set", "augment.flips=none")
    done = kc.run_script(["train.py", "--phase", "head", "--workdir", str(work), *kc.SMALL])
    assert done.returncode == 0, done.stderr[-2000:]
    return work


def _train(work, batch, env=None, prefix=None, extra=()):
    """train.py --phase full in a child (``prefix``: e.g. the kill harness's ``-c``)."""
    argv = [*(prefix or []), "train.py", "--workdir", str(work), *FULL,
            "--set", f"train.batch_size={batch}", *extra]  # fmt: skip
    environ = dict(os.environ, PYTHONPATH=str(kc.REPO), TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    out = subprocess.PIPE
    return subprocess.Popen([sys.executable, *argv], cwd=kc.REPO, env=environ, stdout=out,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _cluster_env(index, ports):
    return {"TF_CONFIG": json.dumps({"cluster": {"worker": ports},
                                     "task": {"type": "worker", "index": index}})}  # fmt: skip


def _two_workers(work, kill_worker_1=None):
    """Both workers of a fresh cluster; worker 1 with a kill armed (the kill harness's
    ``(kind, name, n)``). Returns their (return codes, outputs)."""
    ports = [f"localhost:{_free_port()}" for _ in range(2)]
    prefix = ["-c", kc.KILLER, *map(str, kill_worker_1)] if kill_worker_1 else None
    workers = [_train(work, 8, _cluster_env(0, ports)),
               _train(work, 8, _cluster_env(1, ports), prefix)]  # fmt: skip
    outputs = []
    for worker in workers:
        try:
            outputs.append(worker.communicate(timeout=400)[0])
        except subprocess.TimeoutExpired:  # never hang the suite on a stuck collective
            worker.kill()
            outputs.append(worker.communicate()[0] + "\n(killed by the test: timed out)")
    return [w.returncode for w in workers], outputs


def _final_digests(outputs):
    return [next(line for line in o.splitlines() if "final weights" in line).split()[-1]
            for o in outputs]  # fmt: skip


def _max_difference(model_a, model_b):
    a, b = kc.fingerprint_of_model(model_a), kc.fingerprint_of_model(model_b)
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def one_worker(after_head, tmp_path_factory):
    """The run folder of one process at a global batch of 8 (the reference)."""
    work = tmp_path_factory.mktemp("one") / "work"
    shutil.copytree(after_head, work)
    single = _train(work, 8)
    output = single.communicate(timeout=400)[0]
    assert single.returncode == 0, output[-2000:]
    run = wd.run_dir(work, "original")
    assert wd.read_run_metrics(run)["full"]["improved_on_start"], "the reference learned nothing"
    return run


def _assert_the_recipe_of(run, reference):
    """The same optimizer steps at the same learning rate each (the rule's record: peak,
    warm-up and planned steps; test_distribute checks the rate at every step of a rule)
    and weights equal within the tolerance of float sums taken in another order."""
    record, one = wd.read_run_record(run), wd.read_run_record(reference)
    recipe = ("global_batch", "peak_lr", "warmup_steps", "schedule_steps", "optimizer_steps")
    assert [getattr(record, k) for k in recipe] == [getattr(one, k) for k in recipe]
    assert one.optimizer_steps == one.schedule_steps > 3  # every planned step of 3 epochs
    assert _max_difference(run / "full.keras", reference / "full.keras") < TOLERANCE


@pytest.fixture(scope="module")
def two_workers(after_head, tmp_path_factory):
    work = tmp_path_factory.mktemp("two") / "work"
    shutil.copytree(after_head, work)
    codes, outputs = _two_workers(work)
    assert codes == [0, 0], [o[-2000:] for o in outputs]
    return work, outputs


def test_two_workers_train_the_model_one_worker_trains_at_the_same_global_batch(
    two_workers, one_worker
):
    work, outputs = two_workers
    digests = _final_digests(outputs)
    assert digests[0] == digests[1]  # one model, trained together
    run = wd.run_dir(work, "original")
    record = wd.read_run_record(run)
    # One recipe at any N: train.batch_size 8 is the global batch on 1 and on 2 workers
    # (4 each), the same steps and learning rate as the one-worker reference.
    assert (record.workers, record.replicas, record.global_batch) == (2, 2, 8)
    assert record.peak_lr == pytest.approx(3e-4)
    assert "trained with worker 0, which saved it" in outputs[1]
    _assert_the_recipe_of(run, one_worker)


def test_a_killed_worker_stops_the_other_in_one_line_and_both_resume(two_workers, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(two_workers[0], work)
    run = wd.run_dir(work, "original")
    for name in ("full.keras", "history_full.csv", "metrics.json"):  # before the full phase
        (run / name).unlink(missing_ok=True)
    # Worker 1 dies as it commits its second epoch's backup (its private copy).
    codes, outputs = _two_workers(work, kill_worker_1=("replace", "current", 2))
    assert codes[1] == -9, outputs[1][-2000:]
    assert codes[0] == 2, outputs[0][-2000:]  # the chief: one line, not gRPC's traceback
    assert "lost another worker" in outputs[0] and "Traceback" not in outputs[0]
    assert not (run / "full.keras").exists()
    codes, outputs = _two_workers(work)  # both started again, as a scheduler would
    assert codes == [0, 0], [o[-2000:] for o in outputs]
    assert "Epoch 1/3" not in outputs[0] and "Epoch 3/3" in outputs[0]  # resumed
    digests = _final_digests(outputs)
    assert digests[0] == digests[1] == _final_digests(two_workers[1])[0]  # = uninterrupted
    assert len(wd.read_history(wd.history_path(run, "full"))) == 3  # each epoch once


def test_mirrored_strategy_over_two_logical_cpus_trains_the_one_device_model(
    after_head, one_worker, tmp_path
):
    work = tmp_path / "work"
    shutil.copytree(after_head, work)
    child = _train(work, 8, prefix=["-c", TWO_CPUS], extra=["--set", "train.distribute=mirrored"])
    output = child.communicate(timeout=400)[0]
    assert child.returncode == 0, output[-2000:]
    assert "2 replicas on one machine (MirroredStrategy)" in output
    assert "steps of 8 images (peak learning rate" in output  # as one device's plan
    run = wd.run_dir(work, "original")
    assert wd.read_run_record(run).replicas == 2
    _assert_the_recipe_of(run, one_worker)
