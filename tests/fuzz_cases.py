"""A seeded generator of bad inputs, by class, run in process over the commands a user
types: image bytes corrupted at random offsets (every readable format), random CSV
cells, random YAML documents, work-directory records cut or garbled at random points.

Used by ``tests/test_fuzz.py`` (every case must hold; CI runs it) and
``benchmarks/faults.py --fuzz`` (the table). A case holds when the command ends with
exit 0 or 2 and no traceback, a refusal (exit 2) names the file at fault, nothing was
read from outside the data root (a planted image beside it never reaches the split), and
the work directory is usable afterwards: the same command on repaired input (the bad
file removed, the CSV rewritten clean, the config emptied) exits 0, following the way out
a refusal names (``--overwrite``, ``--resplit``) when it gives one.
"""

import contextlib
import io
import random
import shutil
import signal
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from conftest import write_image

FORMATS = ("png", "jpeg", "bmp", "gif", "webp", "tiff")
CALL_LIMIT_S = 300  # one command of a case: longer is a hang (the cases take seconds)


@dataclass
class Outcome:
    case: str
    exit_code: object  # int, or "traceback"
    message: str
    names_file: bool
    outside_read: bool = False
    usable_after_rerun: bool = True

    @property
    def holds(self):
        if self.exit_code == "traceback" or self.outside_read or not self.usable_after_rerun:
            return False
        return self.exit_code == 0 or (self.exit_code == 2 and self.names_file)


class _Hang(BaseException):  # not an Exception: the code under test cannot swallow it
    pass


def _time_up(signum, frame):
    raise _Hang()


def call(main, argv, limit_s=CALL_LIMIT_S):
    """``main(argv)`` as the script runs it: (exit code, "traceback" or "hang", last
    stderr line). ``limit_s``: a call still running then is a hang (SIGALRM: the main
    thread, where pytest runs tests)."""
    err = io.StringIO()
    previous = signal.signal(signal.SIGALRM, _time_up)
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                code = main(argv) or 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 2
            except Exception as exc:  # noqa: BLE001 - what the harness is here to find
                return "traceback", f"{type(exc).__name__}: {exc}"[:300]
    except _Hang:
        return "hang", f"no answer in {limit_s} s"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    lines = [line for line in err.getvalue().splitlines() if line.startswith("error:")]
    return code, (lines[-1] if lines else "")


# --- images: bytes corrupted at random offsets ------------------------------------------


def corrupted_image(path, fmt, rng):
    """A valid image of ``fmt`` with 1-8 bytes overwritten, or cut, at random offsets."""
    write_image(path, seed=int(rng.integers(1000)), fmt=fmt.upper())
    data = bytearray(path.read_bytes())
    if rng.random() < 0.3:
        data = data[: int(rng.integers(1, len(data)))]
    else:
        for _ in range(int(rng.integers(1, 9))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
    path.write_bytes(bytes(data))


def image_cases(n_per_format, seed=0):
    for fmt in FORMATS:
        for k in range(n_per_format):
            yield f"image {fmt} #{k}", _image_case(fmt, seed * 1000 + k)


def _image_case(fmt, seed):
    def build(root):
        rng = np.random.default_rng(seed)
        data = _folder_data(root, rng)
        bad = data / "a" / f"bad.{fmt}"
        corrupted_image(bad, fmt, rng)
        return _augment_argv(data, root), [bad.name], bad.unlink

    return build


def _folder_data(root, rng):
    data = root / "data"
    for label in "ab":
        for i in range(3):
            write_image(data / label / f"{i}.png", seed=int(rng.integers(1000)))
    _plant_secret(root)
    return data


def _plant_secret(root):
    """An image beside the data root: any case that reads it reads outside the root."""
    write_image(root / "secret" / "secret.png", seed=999)


def _augment_argv(data, root, *extra):
    import augment_offline

    # flips none: the auto choice (a probe on backbone features) is tested elsewhere
    argv = ["--data", str(data), "--workdir", str(root / "work"), "--copies", "1",
            "--size", "32", "--workers", "1", *extra, "--set", "augment.flips=none"]  # fmt: skip
    return augment_offline.main, argv


# --- CSV cells --------------------------------------------------------------------------

NASTY = ["", " ", "..", ".", "/", "\\", "../secret/secret.png", "/etc/passwd", "a\x00b",
         "\x1b[31m", "\u202e", "a,b", '"', "'", "\n", "\r", "\t", "~", "$HOME", "%s",
         "CON", "a/../../secret/secret.png", "é", "\udcff", "x" * 300, "0.png", "./0.png",
         "secret", "-", "nan", "NULL", "#"]  # fmt: skip


def csv_cases(n, seed=0):
    for k in range(n):
        yield f"csv cells #{k}", _csv_case(seed * 1000 + k)


def _csv_case(seed):
    def build(root):
        rng = random.Random(seed)
        images = root / "data"
        for i in range(6):
            write_image(images / f"{i}.png", seed=i)
        _plant_secret(root)
        clean = [[f"{i}.png", "ab"[i % 2]] for i in range(6)]
        rows = [list(row) for row in clean]
        for _ in range(rng.randint(1, 3)):  # garble a few cells, or add rows
            cell = rng.choice(NASTY) if rng.random() < 0.7 else _random_text(rng)
            if rng.random() < 0.5:
                rows[rng.randrange(len(rows))][rng.randrange(2)] = cell
            else:
                rows.append([cell, rng.choice(["a", "b", cell])])
        _write_csv(root / "train.csv", rows)
        main, argv = _augment_argv(root / "train.csv", root, "--image-root", str(images))
        return (
            (main, argv),
            ["train.csv", "data row"],
            lambda: _write_csv(root / "train.csv", clean),
        )

    return build


def _write_csv(path, rows):
    lines = ["image,label"] + [",".join(_quote(c) for c in row) for row in rows]
    text = "\n".join(lines) + "\n"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))


def _quote(cell):
    return '"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"\n\r') else cell


def _random_text(rng):
    alphabet = string.printable + "éü€\u0000\u202e/\\."
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


# --- YAML documents -----------------------------------------------------------------------

KEYS = ["augment", "train", "split", "data", "ensemble", "workdir", "copies", "size", "seed",
        "flips", "val_fraction", "image_size", "batch_size", "head_lr", "path", "x"]  # fmt: skip
SCALARS = [0, -1, 1, 2**40, 0.5, -0.0, 1e-7, float("inf"), True, None, "", "auto", "none",
           "all", "1e-3", "../..", [], {}, [1, 2], "~"]  # fmt: skip


def yaml_cases(n, seed=0):
    for k in range(n):
        yield f"yaml #{k}", _yaml_case(seed * 1000 + k)


def _random_value(rng, depth):
    if depth < 2 and rng.random() < 0.2:
        return {rng.choice(KEYS): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return rng.choice(SCALARS)


def _real_keys():
    """``{section: [its keys]}`` of the config: most random documents use real keys (a
    document of unknown keys only tests one message)."""
    import dataclasses

    from ripik_clf.config import Config

    return {
        f.name: [k.name for k in dataclasses.fields(f.default_factory())]
        for f in dataclasses.fields(Config)
        if dataclasses.is_dataclass(f.default_factory)
    }


def _random_document(rng):
    sections = _real_keys()
    document = {}
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.85:
            section = rng.choice(sorted(sections))
            keys = sections[section] + ["x"]
            body = {rng.choice(keys): _random_value(rng, 1) for _ in range(rng.randint(1, 4))}
            document[section] = body if rng.random() < 0.9 else rng.choice(SCALARS)
        else:
            document[rng.choice(KEYS)] = _random_value(rng, 0)
    return document


def _yaml_case(seed):
    def build(root):
        rng = random.Random(seed)
        data = _folder_data(root, np.random.default_rng(seed))
        document = _random_document(rng)
        text = yaml.safe_dump(document, allow_unicode=True)
        if rng.random() < 0.2:  # or a document cut short, or garbage
            text = text[: rng.randint(0, len(text))] + rng.choice(["", ":", "[", "{a", "&x *x"])
        (root / "c.yaml").write_text(text)
        main, argv = _augment_argv(data, root, "--config", str(root / "c.yaml"))
        return (main, argv), ["c.yaml", "config"], lambda: (root / "c.yaml").write_text("{}\n")

    return build


# --- records of a work directory, damaged ----------------------------------------------

RECORDS = [
    "splits.csv", "splits.json", "augmented/manifest.csv", "augmented/settings.json",
    "runs/original/run.json", "runs/original/metrics.json", "runs/original/head.keras",
    "runs/original/history_head.csv", "runs/original/val_probabilities_head.csv",
    "runs/original/skipped.csv", "report/ensemble.json", "report/metrics.json",
]  # fmt: skip


def damage(path, rng):
    """Cut at a random point, emptied, garbled bytes, or valid JSON of the wrong shape."""
    data = path.read_bytes()
    kind = rng.choice(["cut", "empty", "garble", "shape"])
    if kind == "cut":
        data = data[: rng.randrange(max(len(data), 1))]
    elif kind == "empty":
        data = b""
    elif kind == "garble":
        data = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
    else:
        data = rng.choice([b"[]", b"{}", b"5", b'"x"', b"null", b'{"members": 5}'])
    path.write_bytes(data)
    return kind


def record_commands(work, base):
    """The commands that read the records: each must refuse or cope, never traceback."""
    import ensemble
    import train
    from ripik_clf.cli.main import main as cli

    small = ["--set", "train.image_size=32", "--set", "train.weights=none", "--set",
             "train.head_epochs=1", "--set", "train.batch_size=8",
             "--model", "original"]  # fmt: skip
    return [
        (cli, ["runs", "--workdir", str(work)]),
        (train.main, ["--phase", "probe", "--workdir", str(work), *small]),
        (
            ensemble.main,
            [
                "--workdir",
                str(work),
                "--test",
                str(base / "test"),
                "--out",
                str(work / "s.csv"),
                "--members",
                "original:head",
                "--tta",
                "none",
                "--select",
                "none",
            ],
        ),  # fmt: skip
        (cli, ["predict", str(base / "test"), "--workdir", str(work)]),
    ]


def record_cases(n_per_record, seed=0):
    for record in RECORDS:
        for k in range(n_per_record):
            yield f"record {record} #{k}", record, random.Random(f"{seed}-{record}-{k}")


def run_record_case(name, record, rng, trained, tmp):
    """Damage one record of a copy of ``trained`` (a work directory after the head
    phase and ensemble.py) and run every command that reads it."""
    work = Path(tmp) / "work"
    shutil.copytree(trained / "work", work)
    kind = damage(work / record, rng)
    results = [call(main, argv) for main, argv in record_commands(work, trained)]
    bad = [(c, m) for c, m in results if c == "traceback" or (c == 2 and not _names(m, record))]
    code, message = bad[0] if bad else max(results, key=lambda r: str(r[0]))
    return Outcome(f"{name} ({kind})", code, message, not bad)


def _names(message, record):
    # Naming the damaged file, or a file of the run or model that reads it.
    return Path(record).name in message or "runs/original" in message or "work" in message


def run_case(name, build, tmp):
    """Build a case in ``tmp``, run it, and judge it (see the module docstring)."""
    root = Path(tmp)
    (main, argv), names, repair = build(root)
    code, message = call(main, argv)
    outside = _secret_was_read(root)
    named = any(n in message for n in names) or "config" in message or str(root) in message
    if code == 0 and name.startswith("image") and not _accounted_for(root, names[0]):
        code, message = "dropped silently", f"{names[0]}: neither in the split nor listed"
    repair()
    usable, rerun_message = rerun_is_usable(main, argv)
    if not usable and code in (0, 2):
        message = f"rerun on repaired input: {rerun_message}"
    return Outcome(name, code, message, named, outside, usable)


WAYS_OUT = ("--overwrite", "--resplit")


def rerun_is_usable(main, argv):
    """The command again exits 0, after following the ways out its refusals name (each
    at most once): (usable?, the last message)."""
    argv = list(argv)
    while True:
        code, message = call(main, argv)
        if code == 0:
            return True, message
        way_out = [flag for flag in WAYS_OUT if flag in message and flag not in argv]
        if code != 2 or not way_out:
            return False, f"exit {code}: {message}"
        argv.append(way_out[0])


def _accounted_for(root, file_name):
    """A file that ran without error is in the split, or listed as skipped."""
    work = root / "work"
    listed = [work / "splits.csv", work / "splits.json", work / "augmented" / "skipped.csv"]
    return any(p.exists() and file_name in p.read_text(errors="replace") for p in listed)


def _secret_was_read(root):
    """The planted image beside the data reached the split or the copies."""
    split = root / "work" / "splits.csv"
    if split.exists() and "secret" in split.read_text(errors="replace"):
        return True
    return any("secret" in p.name for p in (root / "work").rglob("*.jpg"))


def all_cases(scale=1):
    """(name, build) of every generated input case: about 300 at scale 1."""
    yield from image_cases(20 * scale)
    yield from csv_cases(90 * scale)
    yield from yaml_cases(60 * scale)
