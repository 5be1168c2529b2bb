"""Generated faults of a work directory's state, each tried on a copy of a trained one
(after augmentation, the head phase and ensemble.py): outputs aimed at what the tool owns
or reads, its own folders replaced by links to elsewhere, records edited by value, and
caches poisoned by value.

Every case is judged on five counts (``benchmarks/faults.py --state`` prints the table):
a **traceback**; a **hang** (no answer within the case's time limit); a **silent** wrong
result (exit 0 with a prediction other than the clean work directory's, or an edited
record obeyed); a **lost** state (a file the tool owns or reads changed by a refused
command); a write **outside** (a file changed or added beyond a link that leads out of
the work directory). A refusal must be exit 2 naming the file or folder at fault.
"""

import hashlib
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fuzz_cases import call

COUNTS = ("traceback", "hang", "silent", "lost", "outside")


@dataclass
class StateOutcome:
    case: str
    exit_code: object  # int, "traceback" or "hang"
    message: str
    names_it: bool = True  # a refusal names the file or folder at fault
    silent: bool = False
    lost: bool = False
    outside: bool = False

    def count(self, name):
        return self.exit_code == name if name in ("traceback", "hang") else getattr(self, name)

    @property
    def holds(self):
        if any(self.count(name) for name in COUNTS):
            return False
        return self.exit_code == 0 or (self.exit_code == 2 and self.names_it)


def build_trained(root):
    """``root``: data (3 classes of 5), test (3 images) and a work directory after
    augmentation, the head phase and ensemble.py (the submission ``root/s.csv``)."""
    import augment_offline
    import ensemble
    import train
    from conftest import make_folder_dataset, write_image

    data = make_folder_dataset(root / "data", {"a": 5, "b": 5, "c": 5})
    for i in range(3):
        write_image(root / "test" / f"t{i}.png", seed=60 + i)
    work = str(root / "work")
    augment_offline.main(["--data", str(data), "--workdir", work, "--copies", "1", "--size",
                          "32", "--workers", "1", "--set", "augment.flips=none"])  # fmt: skip
    train.main(["--phase", "head", "--workdir", work, "--set", "train.image_size=32", "--set",
                "train.weights=none", "--set", "train.head_epochs=1",
                "--model", "original"])  # fmt: skip
    ensemble.main(ensemble_argv(root))
    return root


def copy_trained(trained, tmp):
    """A copy of the trained folder (data, test, work) in ``tmp``: each case damages
    its own."""
    root = Path(tmp) / "case"
    shutil.copytree(trained, root, symlinks=True)
    return root


def snapshot(folder):
    """``{relative path: sha1}`` of every file below ``folder`` but lock files."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file() and not p.is_symlink() and "lock" not in p.name
    }


def ensemble_argv(root, out=None):
    return ["--workdir", str(root / "work"), "--test", str(root / "test"), "--out",
            str(out or root / "s.csv"), "--members", "original:head", "--tta", "none",
            "--select", "none"]  # fmt: skip


def ensemble_again(root):
    """``ensemble.py`` run again on the case's copy: (exit code, message, whether the
    submission's probabilities differ from the clean ones the copy started with)."""
    import ensemble

    probabilities = root / "s_probabilities.csv"
    clean = probabilities.read_text()
    code, message = call(ensemble.main, ensemble_argv(root))
    return code, message, probabilities.read_text() != clean


# --- outputs aimed at what the tool owns or reads ----------------------------------------

SPELLINGS = ("as is", "through ..", "a link to it", "through a linked folder")


def output_cases(n, seed=0):
    for k in range(n):
        yield f"output #{k}", _output_case(random.Random(f"output-{seed}-{k}"))


def _targets(root, trained):
    """Everything an output must never be or be inside: the work directory's files and
    folders, the test images and the data the split was made from (the fixture's: the
    copy's records name it), and their folders."""
    places = [trained / "data", root / "test"]
    for folder in (root / "work", trained / "data", root / "test"):
        places += [p for p in sorted(folder.rglob("*")) if not p.name.startswith(".")]
    return places


def _spelled(root, target, spelling, rng):
    if spelling == "through ..":
        return target.parent / "x" / ".." / target.name
    if spelling == "a link to it":
        link = root / "links" / f"to_{target.name}"
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(target)
        return link
    if spelling == "through a linked folder":
        link = root / "links" / f"dir_{rng.randrange(10**6)}"
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(target.parent, target_is_directory=True)
        return link / target.name
    return target


def _output_case(rng):
    def run(trained, tmp):
        import ensemble
        from ripik_clf.cli.main import main as cli

        root = copy_trained(trained, tmp)
        target = rng.choice(_targets(root, trained))
        spelling = rng.choice(SPELLINGS)
        out = _spelled(root, target, spelling, rng)
        read_or_owned = (root / "work", root / "test", trained / "data")
        before = {folder: snapshot(folder) for folder in read_or_owned}
        if rng.random() < 0.6:
            code, message = call(ensemble.main, ensemble_argv(root, out))
        else:
            export = ["export", "original:head", "--format", "savedmodel"]
            code, message = call(cli, [*export, "--workdir", str(root / "work"), "--out", str(out)])
        lost = any(snapshot(folder) != files for folder, files in before.items())
        name = f"output {target.relative_to(target.parents[2])} ({spelling})"
        return StateOutcome(name, code, message, "is inside" in message, silent=code == 0,
                            lost=lost)  # fmt: skip

    return run


# --- the work directory's own folders as links to elsewhere --------------------------------

LINKABLE = ("runs", "report", "predictions", "augmented", "features", "runs/original")


def linked_cases(n, seed=0):
    for k in range(n):
        yield f"linked folder #{k}", _linked_case(random.Random(f"linked-{seed}-{k}"))


def _linked_case(rng):
    def run(trained, tmp):
        import ensemble
        from ripik_clf.cli.main import main as cli

        root = copy_trained(trained, tmp)
        rel = rng.choice(LINKABLE)
        elsewhere = root / "elsewhere"
        shutil.move(root / "work" / rel, elsewhere)
        (root / "work" / rel).symlink_to(elsewhere, target_is_directory=True)
        before = snapshot(elsewhere)
        command = rng.choice(["ensemble", "predict", "export"])
        if command == "ensemble":
            code, message = call(ensemble.main, ensemble_argv(root))
        elif command == "predict":
            code, message = call(cli, ["predict", str(root / "test"), "--workdir",
                                       str(root / "work")])  # fmt: skip
        else:
            code, message = call(cli, ["export", "original:head", "--format", "savedmodel",
                                       "--workdir", str(root / "work"), "--out",
                                       str(root / "exported")])  # fmt: skip
        outside = snapshot(elsewhere) != before
        return StateOutcome(f"linked {rel} ({command})", code, message, rel in message,
                            silent=code == 0, outside=outside)  # fmt: skip

    return run


# --- records edited by value ---------------------------------------------------------------

ENSEMBLE_EDITS = {
    "classes reversed": lambda d: d.update(classes=d["classes"][::-1]),
    "classes cut to two": lambda d: d.update(classes=d["classes"][:2]),
    "a class renamed": lambda d: d.update(classes=["zz"] + d["classes"][1:]),
    "a class twice": lambda d: d.update(classes=[d["classes"][0]] * len(d["classes"])),
    "temperature -1": lambda d: d.update(temperature=-1),
    "temperature 0": lambda d: d.update(temperature=0),
    "temperature NaN": lambda d: d.update(temperature=float("nan")),
    "temperature 1e400": lambda d: d.update(temperature=float("inf")),
    "temperature a string": lambda d: d.update(temperature="hot"),
    "weights for two families": lambda d: d.update(weights=[1.0, 1.0]),
    "weight negative": lambda d: d.update(weights=[-1.0]),
    "weight zero": lambda d: d.update(weights=[0.0]),
    "weight NaN": lambda d: d.update(weights=[float("nan")]),
    "no weights": lambda d: d.update(weights=[]),
    "tta unknown": lambda d: d.update(tta="sideways"),
    "threshold -1": lambda d: d.update(tta_threshold=-1),
    "threshold a string": lambda d: d.update(tta_threshold="x"),
    "family renamed": lambda d: d.update(families=["other"]),
    "two families": lambda d: d.update(families=d["families"] * 2),
    "member image size 0": lambda d: d["members"][0].update(image_size=0),
    "member image size huge": lambda d: d["members"][0].update(image_size=10**6),
    "member image size a string": lambda d: d["members"][0].update(image_size="big"),
    "member image size another": lambda d: d["members"][0].update(image_size=64),
    "member path elsewhere": lambda d: d["members"][0].update(path="../data/a/img_000.png"),
    "member family renamed": lambda d: d["members"][0].update(family="other"),
    "member views unknown": lambda d: d["members"][0].update(tta="sideways"),
    "member temperature -2": lambda d: d["members"][0].update(temperatures={"none": -2}),
    "no members": lambda d: d.update(members=[]),
    "members twice": lambda d: d.update(members=d["members"] * 2),
}


SPLIT_EDITS = ("relabel", "delete", "unknown label", "unknown image", "all val",
               "train to val", "duplicate", "header only", "other image", "sha1")  # fmt: skip


def _edit_splits(rng, rows):
    """One edit by value of the split's rows (a list of dicts): what it did."""
    labels = sorted({r["label"] for r in rows})
    k = rng.randrange(len(rows))
    kind = rng.choice(SPLIT_EDITS)
    if kind == "relabel":
        rows[k]["label"] = rng.choice([c for c in labels if c != rows[k]["label"]])
    elif kind == "delete":
        del rows[k]
    elif kind == "unknown label":
        rows[k]["label"] = "zebra"
    elif kind == "unknown image":
        rows[k]["image"] = "a/ghost.png"
    elif kind == "all val":
        for row in rows:
            row["split"] = "val"
    elif kind == "train to val":
        row = next(r for r in rows[k:] + rows if r["split"] == "train")
        row["split"] = "val"
    elif kind == "duplicate":
        rows.insert(k, dict(rows[k]))
    elif kind == "header only":
        rows.clear()
    elif kind == "other image":
        rows[k]["image"] = rows[(k + 1) % len(rows)]["image"]
    else:
        rows[k]["sha1"] = "0" * 40
    return kind


def drawn_cases(label, n, seed, kinds):
    """``n`` cases of ``label``, each of a kind drawn from ``kinds`` (``{kind: (weight,
    case(root, rng) -> StateOutcome)}``) and run on its own copy of the trained folder."""
    names = [kind for kind, (weight, _) in kinds.items() for _ in range(weight)]
    for k in range(n):
        rng = random.Random(f"{label}-{seed}-{k}")
        kind = rng.choice(names)
        yield f"{label} {kind} #{k}", _on_a_copy(kinds[kind][1], rng)


def _on_a_copy(case, rng):
    def run(trained, tmp):
        return case(copy_trained(trained, tmp), rng)

    return run


def record_value_cases(n, seed=0):
    kinds = {"ensemble.json": (5, _ensemble_record_case), "splits.csv": (4, _split_case),
             "metrics.json": (1, _metrics_case)}  # fmt: skip
    return drawn_cases("record value", n, seed, kinds)


def clean_prediction(root):
    """The submitted ensemble's probabilities for the test images (the API), or None."""
    from ripik_clf.predict.ensemble import Ensemble

    files = sorted(str(p) for p in (root / "test").iterdir())
    return Ensemble.load(root / "work").predict(files).probabilities


def _ensemble_record_case(root, rng):
    from ripik_clf.cli.main import main as cli

    expected = clean_prediction(root)
    path = root / "work" / "report" / "ensemble.json"
    record = json.loads(path.read_text())
    edit = rng.choice(sorted(ENSEMBLE_EDITS))
    ENSEMBLE_EDITS[edit](record)
    path.write_text(json.dumps(record))
    code, message = call(cli, ["predict", str(root / "test"), "--workdir", str(root / "work")])
    silent = False
    if code == 0:  # accepted: the API must predict what the clean record predicts
        got = []
        code, message = call(lambda _: got.append(clean_prediction(root)), [])
        silent = code == 0 and not np.allclose(got[0], expected, equal_nan=True)
    names = "ensemble.json" in message
    return StateOutcome(f"ensemble.json: {edit}", code, message, names, silent=silent)


def _split_case(root, rng):
    import pandas as pd

    path = root / "work" / "splits.csv"
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    rows = table.to_dict("records")
    kind = _edit_splits(rng, rows)
    pd.DataFrame(rows, columns=table.columns).to_csv(path, index=False)
    code, message, changed = ensemble_again(root)
    # Every edit but the check column's changes which image is what: obeyed (exit 0) is
    # silently wrong. A wrong sha1 is caught when the image's size or time moves; until
    # then the result must be the clean one.
    silent = code == 0 and (kind != "sha1" or changed)
    return StateOutcome(f"splits.csv: {kind}", code, message, "splits" in message, silent=silent)


METRIC_VALUES = ("many", 1e400, -3, None, [1], {"a": 1}, float("nan"), "")


def _metrics_case(root, rng):
    from ripik_clf.cli.main import main as cli

    path = root / "work" / "runs" / "original" / "metrics.json"
    record = json.loads(path.read_text())
    phase = rng.choice(sorted(record))
    field = rng.choice(sorted(record[phase]))
    value = rng.choice(METRIC_VALUES)
    record[phase][field] = value
    path.write_text(json.dumps(record))
    code, message = call(cli, ["runs", "--workdir", str(root / "work")])
    return StateOutcome(f"metrics.json: {phase}.{field} = {value!r}", code, message,
                        "metrics.json" in message)  # fmt: skip


# --- caches poisoned by value ----------------------------------------------------------------

POISONS = {
    "[5, -3, 0]": lambda c: np.array([5.0, -3.0] + [0.0] * (c - 2)),
    "NaN": lambda c: np.full(c, np.nan),
    "infinite": lambda c: np.full(c, np.inf),
    "sums to 0.5": lambda c: np.full(c, 0.5 / c),
    "one class too many": lambda c: np.full(c + 1, 1.0 / (c + 1)),
    "float32": lambda c: np.full(c, 1.0 / c, dtype=np.float32),
    "a matrix": lambda c: np.full((c, c), 1.0 / c),
}
FEATURE_POISONS = ("NaN", "infinite", "wrong length", "huge header", "not an array", "empty")


def cache_cases(n, seed=0):
    kinds = {"predictions": (3, _prediction_cache_case), "features": (2, _feature_cache_case),
             "unwritable": (1, _unwritable_cache_case)}  # fmt: skip
    return drawn_cases("cache", n, seed, kinds)


def _unwritable_cache_case(root, rng):
    """A cache that cannot be written (a file where a folder of it should be: what a
    read-only or full disk does to the writes, planted as root can): the stage goes on
    without it, with the clean result."""
    import train

    work = root / "work"
    cache = rng.choice(["predictions", "features"])
    folders = [work / cache, *sorted(p for p in (work / cache).rglob("*") if p.is_dir())]
    blocked = rng.choice(folders)
    shutil.rmtree(blocked)
    blocked.write_text("a file where the cache's folder was")
    if cache == "predictions":
        code, message, changed = ensemble_again(root)
        silent = code == 0 and changed
    else:
        code, message = call(train.main, HEAD_AGAIN + ["--workdir", str(work)])
        silent = False
    name = f"unwritable {blocked.relative_to(work)}"
    return StateOutcome(name, code, message, False, silent=silent)  # a refusal is the fault


def _prediction_cache_case(root, rng):
    entries = sorted((root / "work" / "predictions").rglob("*.npz"))
    poison = rng.choice(sorted(POISONS))
    classes = len(json.loads((root / "work" / "report" / "ensemble.json").read_text())["classes"])
    for entry in rng.sample(entries, rng.randint(1, len(entries))):
        with open(entry, "wb") as out:
            np.savez(out, p=POISONS[poison](classes))
    code, message, changed = ensemble_again(root)
    silent = code == 0 and changed
    return StateOutcome(f"prediction cache: {poison}", code, message, "predictions" in message,
                        silent=silent)  # fmt: skip


def _poison_features(path, kind):
    vector = np.load(path)
    if kind == "NaN":
        np.save(path, np.full_like(vector, np.nan))
    elif kind == "infinite":
        np.save(path, np.full_like(vector, np.inf))
    elif kind == "wrong length":
        np.save(path, vector[: len(vector) // 2])
    elif kind == "huge header":  # an .npy header that asks for 10**12 values
        header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }"
        path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                         + header.encode() + b"\x00" * 16)  # fmt: skip
    elif kind == "not an array":
        path.write_bytes(b"not numpy at all")
    else:
        path.write_bytes(b"")


HEAD_AGAIN = ["--phase", "head", "--set", "train.image_size=32", "--set", "train.weights=none",
              "--set", "train.head_epochs=1", "--model", "original", "--overwrite"]  # fmt: skip


def _feature_cache_case(root, rng):
    import train

    work = root / "work"
    head = HEAD_AGAIN + ["--workdir", str(work)]
    entries = sorted((work / "features").rglob("*.npy"))
    kind = rng.choice(FEATURE_POISONS)
    for entry in rng.sample(entries, rng.randint(1, len(entries))):
        _poison_features(entry, kind)
    code, message = call(train.main, head)
    silent = False
    if code == 0:  # the head must have trained on features like the clean ones
        after = [np.load(p) for p in sorted((work / "features").rglob("*.npy"))]
        silent = not all(a.ndim == 1 and np.isfinite(a).all() for a in after)
    return StateOutcome(f"feature cache: {kind}", code, message, "features" in message,
                        silent=silent)  # fmt: skip


def all_state_cases(scale=1):
    """(name, run(trained, tmp) -> StateOutcome) of every generated state case."""
    yield from output_cases(50 * scale)
    yield from linked_cases(20 * scale)
    yield from record_value_cases(60 * scale)
    yield from cache_cases(30 * scale)
