"""The work directory: the contract between the stages. Where every artefact lives, and
the one function that reads and the one that writes each record handed between stages.

    WORKDIR/
      splits.csv, splits.json     the split and its record (data/splits.py makes them,
                                  with the dataset settings later stages start from)
      augmented/                  <class>/<stem>__aug<k>.jpg, manifest.csv, settings.json,
                                  skipped.csv (augment/runner.py)
      features/<tag>/             pooled backbone features, cached (train/features.py)
      predictions/<model>-<tta>/  member predictions, cached (predict/cache.py)
      runs/<run>/                 run.json (RunRecord), metrics.json, config.yaml,
                                  <phase>.keras, history_<phase>.csv,
                                  val_probabilities_<phase>.csv, skipped.csv
      report/                     report.md, metrics.json, ensemble.json, figures
      audit/                      audit.md, audit.csv, contact sheets

A run is a data variant (``original`` / ``augmented``) trained on the split, or on one
fold of it (``augmented_fold3``); its phases (head, probe, full) are its model files.
"""

import glob
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd

from ripik_clf.atomic import atomic_write_csv, atomic_write_text, finish_publication
from ripik_clf.errors import UserError

SPLITS_CSV = "splits.csv"
SPLITS_JSON = "splits.json"
AUGMENTED = "augmented"
MANIFEST_CSV = "manifest.csv"
RUNS = "runs"
RUN_JSON = "run.json"
METRICS_JSON = "metrics.json"
REPORT = "report"
MEMBER_PHASES = ("full", "head", "probe")  # a member RUN:PHASE; no phase = full
# A run's name is one folder under runs/: no separators, no leading dot (never '.', '..'
# or a hidden folder), so no name reaches outside WORKDIR/runs/.
RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
RUN_NAME_RULE = "letters, digits, '.', '_', '-' (not starting with '.'), up to 64 characters"

# --- reading records that may be damaged ----------------------------------------------
# Every record is read here, and none is trusted: a kill under an older version, a full
# disk or a hand edit can leave any of them empty, cut short or of the wrong shape. Each
# reader turns that into one line naming the file and the repair.

RESPLIT = "restore it, or make a new split with train.py --phase head --resplit --overwrite"
REAUGMENT = "run augment_offline.py --overwrite to make the copies again"
RETRAIN = "train the run again (train.py --phase head --run NAME --overwrite)"
RESUBMIT = "run ensemble.py again"


def damaged(path, why, repair):
    return UserError(f"{path} is damaged ({why}): {repair}")


def load_json(path, repair, kind=dict):
    """The JSON document at ``path``, which must be a ``kind``; a UserError otherwise."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise damaged(path, "not text", repair) from None
    except ValueError as err:
        raise damaged(path, f"not JSON: {err}", repair) from None
    if not isinstance(value, kind):
        raise damaged(path, f"a {type(value).__name__}, not a {kind.__name__}", repair)
    return value


def load_csv(path, columns, repair, dtype=str):
    """The CSV table at ``path`` with at least ``columns``; a UserError otherwise."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=dtype, keep_default_na=False)
    except (UnicodeDecodeError, ValueError) as err:  # pandas' parser errors are ValueErrors
        raise damaged(path, f"not a CSV table: {str(err).splitlines()[0]}", repair) from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise damaged(path, f"no column {', '.join(missing)}", repair)
    return table


# --- the split ------------------------------------------------------------------------


def split_paths(workdir):
    """``(splits.csv, splits.json)`` of a work directory."""
    return Path(workdir) / SPLITS_CSV, Path(workdir) / SPLITS_JSON


def has_split(workdir):
    return all(path.exists() for path in split_paths(workdir))


SPLIT_COLUMNS = ("image", "label", "split", "fold")
# Where each image is and what it held when the split was made: later stages find the
# images here and check them (size and mtime, the sha1 when those moved), never walking
# the dataset again. Absent from splits made by older versions.
CHECK_COLUMNS = ("path", "bytes", "mtime_ns", "sha1")


def read_split_table(workdir):
    """``splits.csv``, checked: values of the right kinds, and (splits.json holding its
    digest) the assignment as written: a row relabelled, moved, added or deleted by hand
    is refused, never obeyed."""
    path = split_paths(workdir)[0]
    table = load_csv(path, SPLIT_COLUMNS, RESPLIT)
    bad = ~table["split"].isin(["train", "val", "fold"])
    fold = pd.to_numeric(table["fold"], errors="coerce")
    if bad.any() or fold.isna().any():
        row = int((bad | fold.isna()).to_numpy().argmax()) + 1
        why = f"data row {row}: split must be train, val or fold, and fold a number"
        raise damaged(path, why, RESPLIT)
    table = table.assign(fold=fold.astype(int))
    if all(c in table.columns for c in CHECK_COLUMNS):
        numbers = {c: pd.to_numeric(table[c], errors="coerce") for c in ("bytes", "mtime_ns")}
        if any(n.isna().any() for n in numbers.values()) or (table["path"] == "").any():
            raise damaged(path, "an image path, size or mtime is missing", RESPLIT)
        table = table.assign(**{c: n.astype("int64") for c, n in numbers.items()})
    record = read_split_record(workdir)
    if record is not None and record.assignment and assignment_digest(table) != record.assignment:
        raise damaged(path, "its rows differ from the split that was made (edited by hand: "
                      "a row relabelled, moved between train and val, added or deleted)",
                      RESPLIT)  # fmt: skip
    return table


@dataclass
class SplitRecord:
    """``splits.json``: how the split was made, and of which data (every discovered image
    and its label, so a later split-making stage can say what changed)."""

    val_fraction: float
    folds: int
    seed: int
    fingerprint: str  # of the discovered (image, label) pairs (data/splits.py)
    images: list
    labels: list
    n_images: int | None = None
    curation: dict | None = None
    data: dict | None = None  # the data.* settings later stages start from
    unreadable: list = field(default_factory=list)  # [{"image", "reason"}], left out
    # assignment_digest of splits.csv as written: rows edited by hand since are refused
    assignment: str | None = None

    @property
    def classes(self):
        """Every model's outputs, in order: the discovered data's classes."""
        return sorted(set(self.labels))

    @property
    def settings(self):
        return {"val_fraction": self.val_fraction, "folds": self.folds, "seed": self.seed}


SPLIT_RECORD_TYPES = {"val_fraction": (int, float), "folds": int, "seed": int,
                      "fingerprint": str, "images": list, "labels": list}  # fmt: skip


def read_split_record(workdir):
    """The split's record (``splits.json``); None when absent (a damaged one is an error:
    falling back to defaults would train on other data)."""
    path = split_paths(workdir)[1]
    if not path.exists():
        return None
    meta = load_json(path, RESPLIT)
    for key, kind in SPLIT_RECORD_TYPES.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise damaged(path, f"{key} missing or not a {kind}", RESPLIT)
    if len(meta["images"]) != len(meta["labels"]):
        raise damaged(path, "images and labels differ in length", RESPLIT)
    for key, kind in (("data", dict), ("curation", dict), ("unreadable", list)):
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            raise damaged(path, f"{key} is not a {kind.__name__}", RESPLIT)
    unreadable = meta.get("unreadable") or []
    if not all(isinstance(u, dict) and {"image", "reason"} <= u.keys() for u in unreadable):
        raise damaged(path, "unreadable holds an entry without image and reason", RESPLIT)
    known = {f.name for f in fields(SplitRecord)}
    return SplitRecord(**{k: v for k, v in meta.items() if k in known} | {"unreadable": unreadable})


def assignment_digest(table):
    """The sha256 of the split's assignment (image -> label, split, fold), in any row
    order: what a model agrees with, and what splits.json holds against hand edits."""
    digest = hashlib.sha256()
    rows = zip(table["image"], table["label"], table["split"], table["fold"])
    for image, label, split, fold in sorted(rows):
        digest.update(f"{image}\t{label}\t{split}\t{int(fold)}\n".encode())
    return digest.hexdigest()


def write_split(workdir, table, record):
    """Save the split table and its :class:`SplitRecord` (each atomically), the record
    holding the table's assignment digest."""
    csv_path, meta_path = split_paths(workdir)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    record.assignment = assignment_digest(table)
    atomic_write_text(csv_path, table.to_csv(index=False))
    atomic_write_text(meta_path, json.dumps(asdict(record)))


def write_split_table(workdir, table):
    """Save the split table alone (its image checks refreshed; the split unchanged)."""
    atomic_write_text(split_paths(workdir)[0], table.to_csv(index=False))


# --- augmented copies -------------------------------------------------------------------


def augmented_dir(workdir):
    return Path(workdir) / AUGMENTED


def manifest_path(workdir):
    return augmented_dir(workdir) / MANIFEST_CSV


AUGMENT_SETTINGS_JSON = "settings.json"


@dataclass
class AugmentSettings:
    """``augmented/settings.json``: what the copies on disk were made with."""

    recipe_version: int | None = None
    size: int | None = None
    flips: str | None = None  # none | horizontal | all (true / false: the old names)
    jpeg_quality: int | None = None
    seed: int | None = None
    albumentations: str | None = None
    flips_auto: dict | None = None  # how flips: auto chose (scores, choice, backbone, split)

    @property
    def made_with(self):
        """The settings that decide the copies (compared with the config's
        ``copy_settings`` and the recipe's version): every field but the two that only
        describe how they were made."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("albumentations", "flips_auto")}  # fmt: skip


OLD_FLIPS = {True: "all", False: "none"}  # flips was a boolean before flips: auto


def read_augment_settings(workdir):
    """The :class:`AugmentSettings` of the copies; None when there are none."""
    path = augmented_dir(workdir) / AUGMENT_SETTINGS_JSON
    if not path.exists():
        return None
    made = load_json(path, REAUGMENT)
    known = {f.name for f in fields(AugmentSettings)}
    settings = AugmentSettings(**{k: v for k, v in made.items() if k in known})
    if isinstance(settings.flips, bool):
        settings.flips = OLD_FLIPS[settings.flips]
    if settings.flips_auto is not None and not isinstance(settings.flips_auto, dict):
        raise damaged(path, "flips_auto is not a mapping", REAUGMENT)
    return settings


def write_augment_settings(workdir, settings):
    path = augmented_dir(workdir) / AUGMENT_SETTINGS_JSON
    record = {k: v for k, v in asdict(settings).items() if v is not None}
    atomic_write_text(path, json.dumps(record, indent=2))


def read_manifest(workdir):
    """The copies on disk (``source, path, label, copy``; paths relative to augmented/)."""
    table = load_csv(manifest_path(workdir), MANIFEST_COLUMNS, REAUGMENT)
    copy = pd.to_numeric(table["copy"], errors="coerce")
    if copy.isna().any():
        raise damaged(manifest_path(workdir), "a copy index is not a number", REAUGMENT)
    return table.assign(copy=copy.astype(int))


MANIFEST_COLUMNS = ("source", "path", "label", "copy")


def write_manifest(workdir, manifest):
    atomic_write_csv(manifest, manifest_path(workdir))


# --- runs -----------------------------------------------------------------------------


FOLD_SUFFIX = "_fold"  # a fold run's name: its k-fold run's name, this, the fold number


def run_name(variant, fold=None):
    """``augmented`` for a single split, ``augmented_fold3`` for fold 3 of a k-fold split."""
    return variant if fold is None else f"{variant}{FOLD_SUFFIX}{fold}"


def family_of(run, fold):
    """The run a fold run belongs to: ``lite1`` for ``lite1_fold3`` (fold 3), the run
    itself for a single split's run."""
    suffix = run_name("", fold) if fold is not None else None
    return run[: -len(suffix)] if suffix and run.endswith(suffix) else run


def fold_runs(workdir, run):
    """The fold runs of a k-fold run named without its fold (``lite1`` ->
    ``lite1_fold0`` ...), in fold order; [] when ``run`` is not one."""
    prefix = check_run_name(run) + FOLD_SUFFIX
    found = {}
    for folder in (Path(workdir) / RUNS).glob(f"{glob.escape(prefix)}*"):
        tail = folder.name[len(prefix) :]
        if tail.isdigit() and folder.is_dir():
            found[int(tail)] = folder.name
    return [found[k] for k in sorted(found)]


def check_run_name(run):
    """``run``, refused unless it is a run name (every name that becomes a folder under
    runs/ passes here: train.py's --run, ensemble and predict members, export's RUN).

    Raises:
        UserError: anything else (a path, an empty name, a name with a ':').
    """
    if not isinstance(run, str) or RUN_NAME.fullmatch(run) is None:
        raise UserError(
            f"run name {run!r}: expected {RUN_NAME_RULE}; a model file is named by a path "
            "ending in .keras"
        )
    return run


def run_dir(workdir, run):
    return Path(workdir) / RUNS / check_run_name(run)


# --overwrite of a run with other settings trains it beside the old one and swaps it in
# (train/replace.py): the run in training, and the old one during the swap.
OVERWRITE_PREFIX, REPLACED_SUFFIX = "overwrite.", ".replaced"


def finish_swaps(workdir):
    """Finish a swap a kill cut between its two renames: the new run into the old one's
    place, then the old one deleted (every stage starts with this)."""
    import shutil

    root = Path(workdir) / RUNS
    for aside in sorted(root.glob(f"*{REPLACED_SUFFIX}")) if root.is_dir() else []:
        old = aside.with_name(aside.name.removesuffix(REPLACED_SUFFIX))
        new = old.with_name(OVERWRITE_PREFIX + old.name)
        if not old.exists() and new.is_dir():
            os.replace(new, old)
        if old.exists():
            shutil.rmtree(aside, ignore_errors=True)


def is_run_in_progress(name):
    """A folder of runs/ that is not a run yet, or no longer one (an --overwrite swap)."""
    return name.startswith(OVERWRITE_PREFIX) or name.endswith(REPLACED_SUFFIX)


def model_file(workdir, member):
    """The model file of a member name: ``RUN`` (its full phase) or ``RUN:PHASE``."""
    run, colon, phase = member.partition(":")
    if colon and phase not in MEMBER_PHASES:
        raise UserError(
            f"member {member!r}: a run's model is RUN:PHASE, PHASE one of "
            f"{', '.join(MEMBER_PHASES)} (default full)"
        )
    return phase_model(run_dir(workdir, run), phase or "full")


def latest_model_file(workdir, run):
    """A run's most trained model: ``full.keras``, else ``head.keras``."""
    folder = run_dir(workdir, run)
    for phase in ("full", "head"):
        if phase_model(folder, phase).exists():
            return phase_model(folder, phase)
    raise UserError(f"no trained model for run {run!r} in {folder} (train it first)")


def phase_model(folder, phase):
    """A run folder's model file of one phase (``head``, ``probe``, ``full``)."""
    return Path(folder) / f"{phase}.keras"


def full_backup_dir(folder):
    """Where the full phase keeps its resume state (train/callbacks.py)."""
    return Path(folder) / "backup_full"


def history_path(folder, phase):
    """The per-epoch log of a phase (train/callbacks.py: WholeFileCSVLogger)."""
    return Path(folder) / f"history_{phase}.csv"


def read_history(path):
    """A phase's per-epoch rows (``epoch``, losses, metrics); empty when there are none.

    An empty or damaged file (left by a kill under an older version, which wrote it in
    place, or edited by hand) is set aside with a warning, so the phase can resume.
    """
    path = Path(path)
    if not path.exists():
        return pd.DataFrame()
    try:
        # Empty cells kept as "": a row a kill cut short has them ("nan" is a logged NaN).
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "epoch" not in table.columns:
            raise ValueError("no epoch column")
        table = table[(table != "").all(axis=1)]
        table = table.apply(pd.to_numeric, errors="coerce")
        table["epoch"] = pd.to_numeric(table["epoch"], errors="raise").astype(int)
        return table.reset_index(drop=True)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        set_aside(path, f"it is not a per-epoch log ({str(err).splitlines()[0] or 'empty'})")
        return pd.DataFrame()


def set_aside(path, why):
    """Rename a damaged record to ``<name>.damaged-<n>`` and say so on stderr: the next
    writer starts it anew, and nothing the user might want is deleted."""
    import sys

    path = Path(path)
    n = 1
    while path.with_name(f"{path.name}.damaged-{n}").exists():
        n += 1
    aside = path.with_name(f"{path.name}.damaged-{n}")
    path.rename(aside)
    print(f"warning: {path} set aside as {aside.name}: {why}", file=sys.stderr)
    return aside


def config_path(folder):
    """The resolved config saved with a stage's output (a run, the copies)."""
    return Path(folder) / "config.yaml"


SKIPPED_CSV = "skipped.csv"


def beside_submission(out_path, kind):
    """A side file of a submission, named after it (``S_probabilities.csv``,
    ``S_skipped.csv`` for ``S.csv``): two submissions in one folder keep their own."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}_{kind}.csv")


def write_skipped(folder, skipped, name=SKIPPED_CSV):
    """``path, reason`` of every file a stage could not use (never dropped silently)."""
    atomic_write_csv(pd.DataFrame(skipped, columns=["path", "reason"]), Path(folder) / name)


def read_skipped(folder):
    """The paths a run's head phase left out as unreadable."""
    return set(load_csv(Path(folder) / SKIPPED_CSV, ("path",), RETRAIN)["path"])


# RunRecord's fields that the full phase writes (a later probe phase keeps them).
FULL_PHASE_RECIPE = ("workers", "replicas", "global_batch", "peak_lr", "warmup_steps",
                     "schedule_steps", "optimizer_steps")  # fmt: skip


@dataclass
class RunRecord:
    """``runs/<run>/run.json``: what predicting with, validating or fine-tuning a run's
    models needs to know. Written by training, read by every later stage."""

    classes: list
    image_size: int
    backbone: str = ""
    weights: str = ""
    variant: str = ""  # the data variant (original / augmented); "model" in the file
    fold: int | None = None
    split: dict | None = None  # the split record it was trained on (data/splits.py)
    held_out: list | None = None  # images it never trained on (its validation images)
    trained_with_flips: bool = False
    flips: str = ""  # the mirror images training showed: none | horizontal | all ("" = older run)
    seed: int | None = None  # train.seed it was trained with (None = older run)
    temperature: dict = field(default_factory=dict)  # per phase's model file
    workers: int = 1  # machines that trained its last phase together (train/distribute.py)
    # The full phase's recipe, the same on 1 or N replicas: its global batch (train.
    # batch_size, shared among the replicas), its learning-rate rule (train/recipe.py
    # learning_rate_rule: peak, warm-up and planned steps) and the optimizer steps it took
    replicas: int = 1
    global_batch: int | None = None
    peak_lr: float | None = None
    warmup_steps: int | None = None
    schedule_steps: int | None = None
    optimizer_steps: int | None = None

    def temperature_of(self, model_path):
        """The temperature fitted for one of its model files (by phase); 1 when none."""
        return float(self.temperature.get(Path(model_path).stem, 1.0))

    def to_json(self):
        record = asdict(self)
        record["model"] = record.pop("variant")
        return record

    @classmethod
    def from_json(cls, record):
        known = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        return cls(**known, variant=record.get("model", ""))


def read_run_record(folder, *, for_model=None):
    """The RunRecord of a run folder; None when it has none (a file outside a run), or
    an error naming ``for_model`` when that model needs one."""
    path = Path(folder) / RUN_JSON
    if not path.exists():
        if for_model is not None:
            raise UserError(f"no {RUN_JSON} beside {for_model}: its class list is unknown")
        return None
    try:
        return RunRecord.from_json(load_json(path, RETRAIN))
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"{path} is not a run record: {err}") from None


def write_run_record(folder, record):
    atomic_write_text(Path(folder) / RUN_JSON, json.dumps(record.to_json(), indent=2))


def read_run_metrics(folder):
    """``metrics.json`` of a run: ``{phase: metrics}`` ({} when none yet)."""
    path = Path(folder) / METRICS_JSON
    if not path.exists():
        return {}
    metrics = load_json(path, RETRAIN)
    if not all(isinstance(m, dict) for m in metrics.values()):
        raise damaged(path, "not {phase: metrics}", RETRAIN)
    return metrics


def write_run_metrics(folder, metrics):
    atomic_write_text(Path(folder) / METRICS_JSON, json.dumps(metrics, indent=2))


def val_probabilities_path(folder, phase):
    return Path(folder) / f"val_probabilities_{phase}.csv"


def read_val_probabilities(folder, phase, classes):
    """``{image: probabilities}`` a phase saved for its validation images; None if absent."""
    path = val_probabilities_path(folder, phase)
    if not path.exists():
        return None
    try:  # derived data: a damaged file is set aside and the model predicts again
        table = load_csv(path, ["image", *classes], RETRAIN, dtype={"image": str})
        values = table[classes].to_numpy(dtype="float64")
    except (UserError, ValueError) as err:
        set_aside(path, str(err))
        return None
    return dict(zip(table["image"], values))


def write_val_probabilities(folder, phase, images, classes, probabilities):
    table = pd.DataFrame(probabilities, columns=classes, dtype="float64")
    table.insert(0, "image", images)
    atomic_write_csv(table, val_probabilities_path(folder, phase))


LEADERBOARD_CSV = "leaderboard.csv"


def leaderboard_path(workdir):
    return Path(workdir) / RUNS / LEADERBOARD_CSV


def write_leaderboard(workdir, table):
    """``runs/leaderboard.csv``: one row per run and phase (report/leaderboard.py)."""
    atomic_write_csv(table, leaderboard_path(workdir))


# --- other folders --------------------------------------------------------------------


def features_dir(workdir, tag):
    """The feature cache of one backbone setting (see train/features.py: cache_tag)."""
    return Path(workdir) / "features" / tag


def predictions_dir(workdir):
    """Member predictions cached by ensemble.py (predict/cache.py)."""
    return Path(workdir) / "predictions"


def export_dir(workdir):
    return Path(workdir) / "export"


REEXPORT = "export the model again (python -m ripik_clf export)"


def read_export_spec(path):
    """An export's ``<stem>_preprocessing.json`` (what a consumer does to an image, the
    classes, the exported files it describes), as a mapping."""
    return load_json(path, REEXPORT)


def write_export_spec(folder, stem, spec):
    """The preprocessing spec and the class list that travel with an export."""
    folder = Path(folder)
    atomic_write_text(folder / f"{stem}_classes.json", json.dumps(spec["classes"]))
    atomic_write_text(folder / f"{stem}_preprocessing.json", json.dumps(spec, indent=2))


def audit_dir(workdir):
    return Path(workdir) / "audit"


def owned_paths(workdir):
    """What the work directory holds for its stages (records, copies, runs, caches, the
    report): no output the user names may land on or inside one of them."""
    w = Path(workdir)
    return [*split_paths(w), augmented_dir(w), w / RUNS, report_dir(w), w / "features",
            predictions_dir(w), audit_dir(w)]  # fmt: skip


def check_own_folders(workdir):
    """Refuse a work directory whose own folders (runs, a run, the report, the caches,
    the copies) are links leading out of it: every stage would write there, elsewhere."""
    root = Path(workdir)
    if not root.is_dir():
        return
    inside = root.resolve()
    folders = [p for p in owned_paths(root) if p.suffix == ""] + [root / "export"]
    runs = root / RUNS
    if runs.is_dir() and not runs.is_symlink():
        folders += sorted(runs.iterdir())
    for folder in folders:
        if folder.is_symlink() and not folder.resolve().is_relative_to(inside):
            raise UserError(f"{folder} is a link to {folder.resolve()}, outside the work "
                            f"directory {root}: its folders must be its own (the stages "
                            "write there); replace the link by a folder")  # fmt: skip


def check_output(path, config, what):
    """Refuse ``path`` (an output: ``what`` names its flag) when it is, or is inside, a
    path the work directory owns (:func:`owned_paths`) or the data and test folders the
    run reads: ``--out W/splits.csv`` replaced the split every later stage reads."""
    target = Path(path).resolve()
    data = config.data
    read = [p for p in (data.path, data.image_root, data.test) if p]
    guarded = [(p, "the work directory's own") for p in owned_paths(config.workdir)]
    guarded += [(Path(p), "read by this run") for p in read]
    for place, why in guarded:
        place = place.resolve()
        if target == place or place in target.parents:
            raise UserError(f"{what} {path} is inside {place} ({why}): name an output "
                            "outside the data, the test folder and the work directory's "
                            "records")  # fmt: skip


# --- the report ---------------------------------------------------------------------------


def report_dir(workdir):
    return Path(workdir) / REPORT


ENSEMBLE_JSON = "ensemble.json"


def write_report_metrics(workdir, metrics):
    """``report/metrics.json``: every validation and test row of the last ensemble."""
    atomic_write_text(report_dir(workdir) / METRICS_JSON, json.dumps(metrics, indent=2))


def read_report_metrics(workdir):
    return load_json(report_dir(workdir) / METRICS_JSON, RESUBMIT)


@dataclass
class EnsembleMember:
    """One member of a recorded ensemble: a model file and how it votes."""

    name: str  # as named to ensemble.py: a run, RUN:PHASE, or a .keras path
    path: str  # its model file; relative to the work directory when inside it
    family: str  # fold runs of one model form one family and share its weight
    image_size: int
    tta: str  # the views it votes with: none | flip | d4 (auto resolved)
    temperatures: dict  # {views: T} fitted on validation (two-stage TTA uses none too)
    size_bytes: int = 0  # of the model file when the ensemble was made: a retrained
    mtime_ns: int = 0  # member is no longer the member that was submitted (0: size only,
    # in a packaged ensemble whose files a model store copied)


@dataclass
class EnsembleDefinition:
    """``report/ensemble.json``: the ensemble behind the last submission, as ensemble.py
    predicted with it. ``predict``, ``export --ensemble`` and the Python API
    (:class:`ripik_clf.predict.ensemble.Ensemble`) rebuild exactly this."""

    members: list  # [EnsembleMember]
    families: list  # family names, in weight order
    weights: list  # one per family, for the weighted soft vote of family means
    tta: str  # the ensemble.tta used: auto may fall back to none (members hold the views)
    temperature: float  # on top of the weighted soft vote
    classes: list
    tta_threshold: float | None = None  # two-stage TTA: below this confidence only
    split: dict | None = None  # the split record the members were validated on
    validation_macro_f1: float | None = None
    # tta auto's check: validation log loss of the vote per TTA considered (None: no check)
    tta_log_loss: dict | None = None
    # every automatic choice with its evidence (evidence.Choice.to_record: the default,
    # the chosen, each candidate's estimate and interval, n)
    choices: list | None = None

    def to_json(self):
        return asdict(self)

    @classmethod
    def from_json(cls, record):
        known = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        known["members"] = [EnsembleMember(**m) for m in known.get("members", [])]
        return cls(**known)


def ensemble_definition_path(workdir):
    return report_dir(workdir) / ENSEMBLE_JSON


def publication_journal(workdir):
    """The journal of ensemble.py's publication (atomic.publication): while it exists, the
    submission, its report and ensemble.json are being renamed into place together."""
    return report_dir(workdir) / ".publish.json"


def write_ensemble_definition(workdir, definition):
    """``report/ensemble.json``, written by ensemble.py after the submission."""
    atomic_write_text(ensemble_definition_path(workdir), json.dumps(definition.to_json(), indent=2))


def read_ensemble_definition(workdir):
    """The last submitted ensemble; None when ensemble.py has not run here (or its record
    is of an older version, without members' files)."""
    journal = publication_journal(workdir)
    try:
        finish_publication(journal)  # a kill mid-publication: finish it, never read a mix
    except OSError as err:
        raise UserError(
            f"ensemble.py was interrupted while publishing ({journal}) and it cannot be "
            f"finished here ({err.strerror}): {RESUBMIT}"
        ) from None
    path = ensemble_definition_path(workdir)
    if not path.exists():
        return None
    record = load_json(path, RESUBMIT)
    members = record.get("members")
    if isinstance(members, list) and members and all(isinstance(m, str) for m in members):
        return None  # an older ensemble.json (member names only): not rebuildable
    if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
        raise damaged(path, "members is not a list of members", RESUBMIT)
    try:
        definition = EnsembleDefinition.from_json(record)
        problem = _definition_problem(definition)
    except (ValueError, TypeError, KeyError) as err:
        raise damaged(path, f"not an ensemble record: {err}", RESUBMIT) from None
    if problem:
        raise damaged(path, problem, RESUBMIT)
    return definition


# ensemble.tta's words (config.py checks the setting, the ensemble's record the same words)
TTA_MODES = ("auto", "none", "flip", "d4")
MAX_IMAGE_SIZE = 65536  # a model input side, pixels: far above any backbone's


def _positive_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1e6


def _definition_problem(d):
    """Why a recorded ensemble cannot be the one ensemble.py wrote (values, not only
    types: each would predict wrong labels with exit 0), or None."""
    if not (isinstance(d.classes, list) and len(d.classes) >= 2
            and len(set(map(str, d.classes))) == len(d.classes)):  # fmt: skip
        return "classes is not a list of two or more distinct names"
    if not (isinstance(d.families, list) and d.families and len(d.weights) == len(d.families)):
        return f"{len(d.weights)} weights for {len(d.families)} families"
    weights_ok = all(isinstance(w, (int, float)) and 0 <= w < 1e6 for w in d.weights)
    if not weights_ok or not sum(d.weights) > 0:
        return f"weights {d.weights} are not non-negative numbers with a positive sum"
    if not _positive_number(d.temperature):
        return f"temperature {d.temperature!r} is not a positive number"
    if d.tta_threshold is not None and not 0 <= d.tta_threshold <= 1:
        return f"tta_threshold {d.tta_threshold!r} is outside 0..1"
    if d.tta not in TTA_MODES:
        return f"tta {d.tta!r} is not one of {', '.join(TTA_MODES)}"
    for m in d.members:
        if m.family not in d.families:
            return f"member {m.name}'s family {m.family!r} is not among the families"
        if m.tta not in TTA_MODES[1:]:  # a member's views are resolved: never auto
            return f"member {m.name}'s views {m.tta!r} are not one of {', '.join(TTA_MODES[1:])}"
        if not (isinstance(m.image_size, int) and not isinstance(m.image_size, bool)
                and 8 <= m.image_size <= MAX_IMAGE_SIZE):  # fmt: skip
            return f"member {m.name}'s image size {m.image_size!r} is not a whole number of pixels"
        if not all(_positive_number(t) for t in m.temperatures.values()):
            return f"member {m.name} has a temperature that is not a positive number"
    if {m.family for m in d.members} != set(d.families):
        return "a family has no member"
    return None
