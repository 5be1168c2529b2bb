"""Two CPU workers on localhost ports (TF_CONFIG) train one model together: both exit 0,
end with the same weights, only worker 0 writes the run, and the model is the one a
single worker trains with the same global batch."""

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

pytestmark = pytest.mark.slow  # three training processes (CI runs them: make test-slow)

FULL = ["--phase", "full", "--set", "train.image_size=32", "--set", "train.dropout=0",
        "--set", "train.full_epochs=2", "--set", "train.full_lr=3e-3", "--set",
        "train.full_warmup_epochs=0", "--set", "train.full_min_steps=0", "--set",
        "train.full_start=head", "--set", "train.ema=false", "--model", "original"]  # fmt: skip


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


def _train(work, batch, env=None):
    argv = [sys.executable, "train.py", "--workdir", str(work), *FULL,
            "--set", f"train.batch_size={batch}"]  # fmt: skip
    environ = dict(os.environ, PYTHONPATH=str(kc.REPO), TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.Popen(argv, cwd=kc.REPO, env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def test_two_workers_train_the_model_one_worker_trains_at_the_same_global_batch(
    after_head, tmp_path
):
    two, one = tmp_path / "two", tmp_path / "one"
    shutil.copytree(after_head, two)
    shutil.copytree(after_head, one)
    ports = [f"localhost:{_free_port()}" for _ in range(2)]
    workers = [
        _train(two, 4, {"TF_CONFIG": json.dumps({"cluster": {"worker": ports},
                                                 "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]  # fmt: skip
    outputs = [w.communicate(timeout=400)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[-2000:] for o in outputs]
    digests = [next(line for line in o.splitlines() if "final weights" in line).split()[-1]
               for o in outputs]  # fmt: skip
    assert digests[0] == digests[1]  # one model, trained together
    run = wd.run_dir(two, "original")
    assert wd.read_run_record(run).workers == 2
    single = _train(one, 8)
    output = single.communicate(timeout=400)[0]
    assert single.returncode == 0, output[-2000:]
    a = kc.fingerprint_of_model(run / "full.keras")
    b = kc.fingerprint_of_model(wd.run_dir(one, "original") / "full.keras")
    # Same data, same global batch of 8: only the order of float sums differs.
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True)) < 1e-3
