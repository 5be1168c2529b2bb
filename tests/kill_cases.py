"""``kill -9`` at chosen or random moments of every command, then the same command again.

A child process runs a script's ``main(argv)`` with one kill armed: at the n-th commit of
a write (``os.replace``, or a rename of a file or folder) onto a given name or any name,
or after a random delay. Every write of ours is a temporary file and one rename, so the
states a kill can leave are those before or after a commit: a kill at the k-th commit of
k = 1..n (n counted in an uninterrupted run) reaches every one of them, and a kill after a
random delay adds moments between writes (decoding, training, exporting).

Used by ``tests/test_kill.py`` (seeded cases of every stage; CI runs them) and
``benchmarks/faults.py --kills`` (the table: case, exit codes, traceback?, state usable
and the same as an uninterrupted run?).
"""

import hashlib
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# The child: arm one kill (or count the commits), then run a script's main() with the
# given arguments. ``name`` "*" matches any file.
KILLER = r"""
import atexit, os, pathlib, signal, sys
kind, name, nth, script, *argv = sys.argv[1:]
calls = [0]
if kind == "count":
    atexit.register(lambda: pathlib.Path(nth).write_text(str(calls[0])))
def hit(target):
    if name != "*" and os.path.basename(str(target)) != name:
        return
    calls[0] += 1
    if kind != "count" and calls[0] == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)
real_replace = os.replace
def replace(src, dst, *a, **k):
    hit(dst)
    return real_replace(src, dst, *a, **k)
real_rename = pathlib.Path.rename
def rename(self, target):  # the backup's next/ -> current/ names the folder itself
    hit(self if kind == "rename" else target)
    return real_rename(self, target)
if kind != "rename":
    os.replace = replace
pathlib.Path.rename = rename
sys.argv = [script, *argv]
import importlib
sys.exit(importlib.import_module(script.removesuffix(".py")).main(argv))
"""

CLI = "ripik_clf.cli.main"  # python -m ripik_clf

# ImageNet weights (the offline Lite0 ones), a head that learns next to nothing (a tiny
# learning rate) and a full phase that learns the colours: every full epoch beats the
# start, so the best checkpoint is written each time.
SMALL = ["--set", "train.image_size=32", "--set",
         "train.head_epochs=1", "--set", "train.head_lr=1e-7", "--set", "train.batch_size=8",
         "--set", "train.full_epochs=3", "--set", "train.full_lr=3e-3", "--set",
         "train.full_warmup_epochs=0", "--set", "train.full_min_steps=0", "--set",
         "train.full_patience=5", "--model", "original"]  # fmt: skip


def run_script(argv, kill=None, timeout=300):
    """``argv`` (a script or module, then its arguments) in a child, with ``kill``
    armed: ``(kind, name, n)`` (kind replace | rename | count; for count, n is the file
    the count is written to)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    if kill is None:
        command = [sys.executable, *argv] if argv[0].endswith(".py") else [
            sys.executable, "-m", argv[0].removesuffix(".cli.main"), *argv[1:]]  # fmt: skip
    else:
        command = [sys.executable, "-c", KILLER, *map(str, kill), *argv]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def run_killed_after(argv, seconds, timeout=300):
    """``argv`` in a child, sent SIGKILL after ``seconds`` (if it is still running)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-c", KILLER, "none", "*", "0", *argv]
    child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        child.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        child.kill()
    out, err = child.communicate(timeout=timeout)
    return subprocess.CompletedProcess(command, child.returncode, out, err)


# --- the data and the stages -------------------------------------------------------------


def colour_classes(root, per_class):
    """Three classes told apart by colour (red, green, blue), with noise: learnable."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, label in enumerate("abc"):
        for i in range(per_class):
            pixels = rng.integers(0, 90, size=(32, 32, 3))
            pixels[..., c] += 150
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.astype(np.uint8)).save(root / label / f"{i}.png")
    return root


def test_images(folder, n=3):
    from PIL import Image

    rng = np.random.default_rng(7)
    for i in range(n):
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, size=(32, 32, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"t{i}.png")
    return folder


def augment_argv(data, work, *extra):
    """augment_offline.py's arguments: one 32 px copy per image, one process."""
    return ["--data", str(data), "--workdir", str(work), "--copies", "1", "--size", "32",
            "--workers", "1", *extra]  # fmt: skip


def augmented_colour_classes(root, *extra):
    """``root/work`` after augment_offline.py on colour classes of 8 images each."""
    import augment_offline

    data = colour_classes(root / "data", per_class=8)
    augment_offline.main(augment_argv(data, root / "work", *extra))
    return root / "work"


def stage_commands(inputs, root):
    """``[(stage, argv)]`` of every command, in pipeline order, on ``inputs/data`` and
    ``inputs/test``, writing under ``root`` (the work directory ``root/work``)."""
    data, test, work = inputs / "data", inputs / "test", root / "work"
    w = ["--workdir", str(work)]
    return [
        ("augment", ["augment_offline.py",
                     *augment_argv(data, work, "--set", "augment.flips=none")]),
        ("head", ["train.py", "--phase", "head", *w, *SMALL]),
        ("probe", ["train.py", "--phase", "probe", *w, *SMALL]),
        ("full", ["train.py", "--phase", "full", *w, *SMALL]),
        ("ensemble", ["ensemble.py", *w, "--test", str(test), "--out",
                      str(root / "submission.csv"), "--members", "original", "--tta", "none"]),
        ("export", [CLI, "export", "original", "--format", "savedmodel", "--out",
                    str(root / "export"), "--check-images", "8", *w]),
        ("predict", [CLI, "predict", str(test), "--json", *w]),
        ("audit", [CLI, "audit", "--data", str(data), "--test", str(test), *w]),
    ]  # fmt: skip


def fingerprint(root, stage):
    """What ``stage`` leaves behind, read back by its readers: equal fingerprints mean
    the same result (models compared by weights, files by bytes)."""
    work = root / "work"
    run = work / "runs" / "original"
    if stage == "augment":
        return _digests(work / "augmented", "*.jpg") + _digests(work / "augmented", "manifest.csv")
    if stage in ("head", "probe", "full"):
        from ripik_clf import workdir as wd

        assert set(wd.read_run_metrics(run)) >= {stage}
        return fingerprint_of_model(run / f"{stage}.keras")
    if stage == "ensemble":
        from ripik_clf import workdir as wd

        assert wd.read_ensemble_definition(work).members
        return _digests(root, "submission.csv")
    if stage == "export":
        import json

        spec = next((root / "export").glob("*_preprocessing.json"))
        return json.loads(spec.read_text())["classes"]
    if stage == "audit":
        return sorted(p.name for p in (work / "audit").iterdir() if not p.name.startswith("."))
    return None  # predict writes nothing


def same(a, b):
    if isinstance(a, list) and a and isinstance(a[0], np.ndarray):
        return len(a) == len(b) and all(
            np.allclose(x, y, atol=1e-5) for x, y in zip(a, b, strict=True)
        )
    return a == b


def _digests(folder, pattern):
    return sorted(
        (p.relative_to(folder).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in folder.rglob(pattern)
    )


def fingerprint_of_model(path):
    import keras

    return keras.models.load_model(path).get_weights()


@dataclass
class Reference:
    """The uninterrupted pipeline on ``inputs`` (data/, test/): the state before each
    stage (a copy of what the stages write), each stage's fingerprint, commit count and
    wall time."""

    inputs: Path
    states: dict  # stage -> a folder holding the outputs as they were before the stage
    fingerprints: dict
    commits: dict
    seconds: dict


def reference_pipeline(base, per_class=8):
    """Run every stage once, uninterrupted, counting its commits; keep the state before
    each stage to start killed runs from."""
    inputs, root = base / "inputs", base / "pipeline"
    colour_classes(inputs / "data", per_class)
    test_images(inputs / "test")
    root.mkdir()
    states, fingerprints, commits, seconds = {}, {}, {}, {}
    for stage, argv in stage_commands(inputs, root):
        states[stage] = base / f"before_{stage}"
        shutil.copytree(root, states[stage], symlinks=True)
        count = base / f"commits_{stage}"
        started = time.perf_counter()
        done = run_script(argv, ("count", "*", count))
        seconds[stage] = time.perf_counter() - started
        assert done.returncode == 0, (stage, done.stderr[-3000:])
        commits[stage] = int(count.read_text())
        fingerprints[stage] = fingerprint(root, stage)
    return Reference(inputs, states, fingerprints, commits, seconds)


@dataclass
class KillOutcome:
    case: str
    killed_exit: int
    rerun_exit: object
    traceback: bool
    usable: bool
    same_as_uninterrupted: bool
    message: str = ""

    @property
    def holds(self):
        return self.rerun_exit == 0 and not self.traceback and self.usable and (
            self.same_as_uninterrupted)  # fmt: skip


def kill_cases(reference, per_stage, seed=0):
    """``per_stage`` seeded moments of each stage: the k-th commit (any file), or a
    delay within the uninterrupted run's wall time, alternating."""
    rng = random.Random(seed)
    for stage in reference.states:
        for k in range(per_stage):
            n = reference.commits[stage]
            if (k + seed) % 2 == 0 and n:
                yield f"{stage} at commit {(c := rng.randint(1, n))} of {n}", stage, ("commit", c)
            else:
                t = round(rng.uniform(0.2, 0.95) * reference.seconds[stage], 1)
                yield f"{stage} after {t} s", stage, ("time", t)


def run_kill_case(name, stage, moment, reference, tmp):
    """Start from the state before ``stage``, kill it at ``moment``, run it again, and
    judge: the rerun exits 0 without a traceback, and leaves what the uninterrupted run
    left."""
    root = Path(tmp) / "root"
    shutil.copytree(reference.states[stage], root, symlinks=True)
    argv = dict(stage_commands(reference.inputs, root))[stage]
    if moment[0] == "commit":
        killed = run_script(argv, ("replace", "*", moment[1]))
    else:
        killed = run_killed_after(argv, moment[1])
    again = run_script(argv)
    traceback = "Traceback (most recent call last)" in (killed.stderr + again.stderr)
    usable, same_result = again.returncode == 0, False
    message = again.stderr.strip().splitlines()[-1] if again.stderr.strip() else ""
    if usable:
        try:
            same_result = same(fingerprint(root, stage), reference.fingerprints[stage])
        except Exception as exc:  # noqa: BLE001 - a record that does not read back
            usable, message = False, f"{type(exc).__name__}: {exc}"[:300]
    return KillOutcome(name, killed.returncode, again.returncode, traceback, usable, same_result,
                       message)  # fmt: skip
