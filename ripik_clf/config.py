"""Configuration: one dataclass per stage, loaded from YAML, overridden from the CLI.

Precedence, lowest first: dataclass defaults < the YAML file < command-line flags.
Every value is validated before any work starts; a bad value is reported as one line
that names the key and what is allowed.
"""

import dataclasses
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ripik_clf.atomic import atomic_write_text
from ripik_clf.errors import UserError
from ripik_clf.models.registry import DEFAULT_BACKBONE, get_spec, resolve_image_size
from ripik_clf.workdir import RUN_NAME, RUN_NAME_RULE, TTA_MODES

DEFAULT_MAX_PIXELS = 100_000_000  # larger images are refused (decompression bombs)


@dataclass
class DataConfig:
    # Training data: a folder with one sub-folder per class, or a CSV file.
    path: str | None = None
    # true (configs/demo.yaml): with no path, the built-in demo digits, made on first use;
    # false: no path is an error, never a silent demo
    demo: bool = False
    image_col: str = "image"  # CSV only: column holding the image path
    label_col: str = "label"  # CSV only: column holding the class name
    image_root: str | None = (
        None  # CSV only: folder image paths are relative to (default: the CSV's)
    )
    # CSV only: a row whose path (symlinks resolved) leaves image_root is refused unless true
    allow_outside_root: bool = False
    test: str | None = None  # folder of unlabelled test images (any depth); null = demo's
    max_pixels: int = DEFAULT_MAX_PIXELS  # refuse larger images (decompression bombs), in pixels
    # Curation, e.g. from `python -m ripik_clf audit`: a file with one image per line (id
    # relative to the data root, or a path) to leave out, and a CSV `image,label` of fixed
    # labels. Both apply before the split, so they change the dataset fingerprint.
    exclude: str | None = None
    relabel: str | None = None

    def validate(self):
        for key in ("exclude", "relabel"):
            path = getattr(self, key)
            _require(path is None or Path(path).is_file(), f"data.{key}", path, "an existing file")
        _require(self.max_pixels > 0, "data.max_pixels", self.max_pixels, "a positive integer")
        for key in ("image_col", "label_col"):
            _require_column_name(f"data.{key}", getattr(self, key))


@dataclass
class SplitConfig:
    val_fraction: float = 0.2  # share of each class held out for validation (single split)
    folds: int = 0  # 0 = one train/val split; K >= 2 = stratified K-fold
    seed: int = 42  # the split is made once with this seed and saved in the workdir

    def validate(self):
        _require(0 < self.val_fraction < 1, "split.val_fraction", self.val_fraction, "0 < x < 1")
        _require(self.folds == 0 or self.folds >= 2, "split.folds", self.folds, "0, or 2 or more")
        _require(0 <= self.seed < 2**32, "split.seed", self.seed, "0 <= seed < 2**32")


@dataclass
class AugmentConfig:
    copies: int = 14  # augmented copies per training image (originals + 14 copies = 15x)
    size: int = 512  # every copy is resized to size x size pixels before augmenting
    # Which mirror images the copies may be: none | horizontal | all (the recipe's
    # horizontal + vertical flips and transpose: every orientation) | auto (chosen on the
    # data before any copy is written, see augment/flips.py). true = all, false = none.
    flips: str | bool = "auto"
    jpeg_quality: int = 95  # quality of the written copies (1-100)
    workers: int = 0  # processes; 0 = one per CPU core
    seed: int = 42  # with the source path and copy index, fixes every copy's randomness

    # How many copies and how fast change nothing in a copy; every other setting does, so
    # copies made with another value are never mixed in (augment/runner.py).
    NOT_IN_COPIES: typing.ClassVar = ("copies", "workers")

    def copy_settings(self):
        """The settings that decide what a copy holds, by name (derived: a new setting
        reaches the record and the check without a list to update)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in self.NOT_IN_COPIES
        }

    def validate(self):
        _require(1 <= self.copies <= 1000, "augment.copies", self.copies, "1..1000")
        _require(16 <= self.size <= 4096, "augment.size", self.size, "16..4096 pixels")
        _require(1 <= self.jpeg_quality <= 100, "augment.jpeg_quality", self.jpeg_quality, "1..100")
        _require(self.workers >= 0, "augment.workers", self.workers, "0 (all cores) or more")
        _require(0 <= self.seed < 2**32, "augment.seed", self.seed, "0 <= seed < 2**32")
        self.flips = FLIP_ALIASES.get(str(self.flips).lower(), str(self.flips).lower())
        _require(self.flips in FLIP_MODES, "augment.flips", self.flips, " | ".join(FLIP_MODES))


FLIP_MODES = ("auto", "none", "horizontal", "all")
FLIP_CHOICES = FLIP_MODES[1:]  # what auto chooses between
DISTRIBUTE_MODES = ("auto", "off", "mirrored")
DECODED_IMAGES = ("auto", "memory", "files")
XLA_MODES = ("auto", "on", "off")
FLIP_ALIASES = {"true": "all", "false": "none"}  # the old boolean setting


MODEL_SOURCES = ("original", "augmented")
LOSSES = ("crossentropy", "focal")
ON_THE_FLY = ("none", "flip", "crop", "mixup", "cutmix")
EPOCH_MODES = ("sources", "all")
OPTIMIZERS = ("adam", "adamw")
FULL_STARTS = ("best", "head", "probe")
ON_BAD_IMAGE = ("fail", "skip")  # an unreadable test image: name it and stop | list it
TRAIN_PHASES = ("head", "full", "probe", "features")  # train.py --phase
EXPORT_FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "dynamic")  # tflite only
FULL_MONITORS = ("val_loss", "val_macro_f1")
SELECT_RULES = ("bagged", "greedy", "none")


@dataclass
class TrainConfig:
    # Models to train; each name is its training data: "original" (training split only)
    # or "augmented" (training split + its offline copies), as in the reference recipe.
    models: list[str] = field(default_factory=lambda: list(MODEL_SOURCES))
    backbone: str = DEFAULT_BACKBONE  # a name from ripik_clf.models.registry.BACKBONES
    weights: str = "imagenet"  # imagenet | none (from scratch) | path to a weights file
    image_size: int | None = None  # model input, pixels; null = the backbone's native size
    batch_size: int = 32
    dropout: float = 0.2  # before the classifier
    # EfficientNet-Lite's stochastic depth: blocks dropped at random in training, at a rate
    # rising linearly to this over the blocks (0 = off: the full phase is then
    # deterministic, and N replicas train exactly the one-device model)
    stochastic_depth: float = 0.2
    head_epochs: int = 100  # head phase: cheap (cached features), so many epochs
    head_lr: float = 1e-3  # Adam
    head_patience: int = 10  # epochs without val macro-F1 gain before stopping
    full_epochs: int = 10  # full phase: every layer but BatchNorm trainable
    # ... and at least this many optimizer steps: a small dataset gets more epochs
    # (epochs = max(full_epochs, ceil(full_min_steps / steps per epoch)))
    full_min_steps: int = 300
    full_lr: float = 1e-4  # peak learning rate, reached after the warm-up, cosine-decayed to 0
    full_warmup_epochs: float = 1.0  # linear warm-up from 0, in epochs (0 = none)
    full_patience: int = 4
    # What early stopping watches: val_loss (validation cross-entropy: it moves with every
    # image, where macro-F1 on ~100 images moves in steps of one image) | val_macro_f1
    full_monitor: str = "val_loss"
    # The model the full phase starts from: best (the better of head.keras and probe.keras
    # on validation macro-F1, where the probe was trained) | head | probe
    full_start: str = "best"
    optimizer: str = "adamw"  # full phase: adam | adamw (decoupled weight decay)
    # adamw only. Keras multiplies it by the learning rate (as PyTorch's AdamW does), so
    # 1e-4 would shrink weights by ~1e-8 a step: nothing; 0.01-0.05 is the usual range.
    weight_decay: float = 0.05
    # Exponential moving average of the weights (Polyak averaging): validation, the best
    # checkpoint and full.keras use the averaged weights
    ema: bool = True
    ema_momentum: float = 0.97
    # An epoch of the full phase: "sources" = one pass over the source images, each shown as
    # one of its versions (original or a copy), a different one each epoch; "all" = every
    # copy every epoch (the old recipe: 15x the cost of an epoch of the original images).
    epoch: str = "sources"
    loss: str = "crossentropy"  # crossentropy | focal
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0  # focal loss only
    class_weights: bool = False  # weight classes by inverse frequency ("balanced")
    on_the_fly: str = "none"  # full phase extra augmentation: none | flip | crop | mixup | cutmix
    precision: str = "auto"  # auto (mixed when a GPU is present) | mixed | float32
    # Full phase devices (train/distribute.py): auto = TF_CONFIG naming several workers ->
    # all of them, several GPUs -> all of them, else one device; off = one device; mirrored
    # = every local device (GPUs, else the logical CPUs set up before TensorFlow starts).
    distribute: str = "auto"
    # Where the full phase reads its images from (train/datasets.py): memory = decoded
    # once into RAM, files = decoded as each batch is read; auto = memory when this
    # worker's share of the versions its epochs show takes under a quarter of the RAM.
    decoded_images: str = "auto"
    # Several workers (TF_CONFIG): seconds to wait for every worker to join before the
    # full phase stops with one line (a peer that never comes, a wrong address)
    peer_timeout: float = 300.0
    # XLA for the full phase's training step: auto = on when a GPU is present (on a CPU
    # the compile time outweighs what it saves on runs this size).
    xla: str = "auto"  # auto | on | off
    seed: int = 42
    mlflow: bool = False  # log params, metrics and models to ./mlruns (local file store)
    # The run to train: runs/<run>/ (null = the variant's name, e.g. runs/original). A run
    # is one experiment: one variant, backbone, weights, input size and seed.
    run: str | None = None

    def validate(self):
        bad = [m for m in self.models if m not in MODEL_SOURCES]
        _require(
            self.models and not bad,
            "train.models",
            self.models,
            f"a list of {', '.join(MODEL_SOURCES)}",
        )
        _require(self.loss in LOSSES, "train.loss", self.loss, " or ".join(LOSSES))
        _require(self.epoch in EPOCH_MODES, "train.epoch", self.epoch, " | ".join(EPOCH_MODES))
        _require(
            self.optimizer in OPTIMIZERS, "train.optimizer", self.optimizer, " | ".join(OPTIMIZERS)
        )
        _require(0 <= self.weight_decay < 1, "train.weight_decay", self.weight_decay, "0 <= x < 1")
        _require(0 < self.ema_momentum < 1, "train.ema_momentum", self.ema_momentum, "0 < x < 1")
        _require(self.full_min_steps >= 0, "train.full_min_steps", self.full_min_steps, ">= 0")
        _require(
            self.full_monitor in FULL_MONITORS,
            "train.full_monitor",
            self.full_monitor,
            " | ".join(FULL_MONITORS),
        )
        _require(
            self.full_start in FULL_STARTS,
            "train.full_start",
            self.full_start,
            " | ".join(FULL_STARTS),
        )
        _require(
            0 <= self.full_warmup_epochs <= self.full_epochs,
            "train.full_warmup_epochs",
            self.full_warmup_epochs,
            "0 <= x <= train.full_epochs",
        )
        _require(
            self.on_the_fly in ON_THE_FLY,
            "train.on_the_fly",
            self.on_the_fly,
            " | ".join(ON_THE_FLY),
        )
        _require(
            self.precision in ("auto", "mixed", "float32"),
            "train.precision",
            self.precision,
            "auto | mixed | float32",
        )
        _require(
            self.distribute in DISTRIBUTE_MODES,
            "train.distribute",
            self.distribute,
            " | ".join(DISTRIBUTE_MODES),
        )
        _require(
            self.decoded_images in DECODED_IMAGES,
            "train.decoded_images",
            self.decoded_images,
            " | ".join(DECODED_IMAGES),
        )
        _require(self.xla in XLA_MODES, "train.xla", self.xla, " | ".join(XLA_MODES))
        _require(self.batch_size >= 1, "train.batch_size", self.batch_size, "1 or more")
        _require(0 <= self.seed < 2**32, "train.seed", self.seed, "0 <= seed < 2**32")
        _require(0 <= self.dropout < 1, "train.dropout", self.dropout, "0 <= x < 1")
        _require(
            0 <= self.stochastic_depth < 1,
            "train.stochastic_depth",
            self.stochastic_depth,
            "0 <= x < 1",
        )
        _require(
            0 <= self.label_smoothing < 1,
            "train.label_smoothing",
            self.label_smoothing,
            "0 <= x < 1",
        )
        for key in ("head_epochs", "full_epochs", "head_patience", "full_patience"):
            _require(getattr(self, key) >= 1, f"train.{key}", getattr(self, key), "1 or more")
        for key in ("head_lr", "full_lr"):
            _require(0 < getattr(self, key) < 1, f"train.{key}", getattr(self, key), "0 < x < 1")
        _require(0 < self.peer_timeout <= 86400, "train.peer_timeout", self.peer_timeout,
                 "seconds, 0 < x <= 86400")  # fmt: skip
        get_spec(self.backbone)
        resolve_image_size(self.backbone, self.image_size)
        if self.run is not None:
            _require(
                RUN_NAME.fullmatch(str(self.run)) is not None,
                "train.run",
                self.run,
                f"a name of {RUN_NAME_RULE}",
            )


@dataclass
class EnsembleConfig:
    members: list[str] = field(default_factory=list)  # run names or .keras files; [] = train.models
    # Soft-voting weight per member family (the fold runs of one k-fold run share one), in
    # `members` order; [] = chosen by `select`
    member_weights: list[float] = field(default_factory=list)
    # Test-time augmentation: auto (flip for members trained on mirrored images, none for
    # the others; the flip views kept only if they lower validation log loss) | none |
    # flip | d4 (the 8 dihedral views)
    tta: str = "auto"
    on_bad_image: str = "fail"  # an unreadable test image: fail (name it) | skip (list it)
    id_col: str = "image_id"  # submission column: path relative to the test folder
    label_col: str = "label"  # submission column: predicted class name
    batch_size: int = 32
    # bagged: greedy forward selection on bootstrap resamples of validation, weights
    # averaged (does not fit one lucky image: benchmarks/ensemble_selection.py) |
    # greedy: forward selection on validation macro-F1 (Caruana) | none: all, equal
    select: str = "bagged"
    # Two-stage TTA: off | auto (threshold chosen on validation) | a confidence in [0, 1];
    # images whose ensemble confidence is below it get the `tta` views, the rest none.
    tta_threshold: str = "off"
    allow_mixed: bool = False  # let fold models and plain models vote together

    def validate(self):
        _require(self.tta in TTA_MODES, "ensemble.tta", self.tta, " | ".join(TTA_MODES))
        _require(
            self.select in SELECT_RULES, "ensemble.select", self.select, " | ".join(SELECT_RULES)
        )
        _require(
            self.tta_threshold in ("off", "auto") or _is_fraction(self.tta_threshold),
            "ensemble.tta_threshold",
            self.tta_threshold,
            "off | auto | a number in [0, 1]",
        )
        _require(
            self.tta_threshold == "off" or self.tta != "none",
            "ensemble.tta_threshold",
            self.tta_threshold,
            "off when ensemble.tta is none (there is nothing to add)",
        )
        _require(
            self.on_bad_image in ON_BAD_IMAGE,
            "ensemble.on_bad_image",
            self.on_bad_image,
            "fail | skip",
        )
        _require(
            all(w >= 0 for w in self.member_weights)
            and (not self.member_weights or sum(self.member_weights) > 0),
            "ensemble.member_weights",
            self.member_weights,
            "non-negative numbers, not all zero",
        )
        _require(self.batch_size >= 1, "ensemble.batch_size", self.batch_size, "1 or more")
        for key in ("id_col", "label_col"):
            _require_column_name(f"ensemble.{key}", getattr(self, key))
        _require(
            self.id_col != self.label_col,
            "ensemble.label_col",
            self.label_col,
            "a name other than ensemble.id_col",
        )


@dataclass
class Config:
    workdir: str = "work"  # every artefact (splits, augmented copies, runs, report) goes here
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)

    def validate(self):
        _require(bool(self.workdir), "workdir", "''", "a folder path")
        _require(
            not Path(self.workdir).exists() or Path(self.workdir).is_dir(),
            "workdir",
            self.workdir,
            "a folder (this is a file)",
        )
        for key in ("path", "test"):
            _require_outside(self.workdir, getattr(self.data, key), f"data.{key}")
        for section in _sections(self):
            getattr(self, section).validate()
        return self

    def to_dict(self):
        return dataclasses.asdict(self)

    def save(self, path):
        """Write the resolved config as YAML (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    def dump(self):
        return yaml.safe_dump(self.to_dict(), sort_keys=False).rstrip()


def _is_fraction(text):
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False


def _require(ok, key, value, allowed):
    if not ok:
        raise UserError(f"invalid config value {key}={value!r}: expected {allowed}")


def _require_outside(workdir, folder, key):
    """The work directory may not lie inside a data or test folder: its copies, caches
    and models would be read back as images (a class named after it, or test rows)."""
    if folder is None or not Path(folder).is_dir():
        return
    inside = Path(folder).resolve()
    if Path(workdir).resolve().is_relative_to(inside):
        raise UserError(
            f"the work directory {workdir} is inside {key} {folder}: its files would be read "
            "as images; pass a --workdir outside it"
        )


def _require_column_name(key, name):
    """A CSV column name: printable text with something to see (an empty or invisible
    header cell is a column nobody can name back)."""
    _require(
        isinstance(name, str) and name.strip() != "" and name.isprintable(),
        key,
        name,
        "a column name of printable characters, not empty",
    )


def _sections(obj):
    return [f.name for f in dataclasses.fields(obj) if dataclasses.is_dataclass(f.default_factory)]


def _coerce(value, hint, key):
    """Convert ``value`` to the field type ``hint``; strings (from --set) are parsed."""
    if typing.get_origin(hint) is list:  # "a,b" or "[a, b]" from the command line, or YAML
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("[") and text.endswith("]"):  # a YAML flow list; "[]" = none
                text = text[1:-1]
            value = [part.strip().strip("'\"") for part in text.split(",") if part.strip()]
        if not isinstance(value, list):
            raise UserError(f"invalid config value {key}={value!r}: expected a list")
        return [_coerce(item, typing.get_args(hint)[0], key) for item in value]
    allowed = typing.get_args(hint) or (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise UserError(f"invalid config value {key}=None: a value is required")
    if isinstance(value, str) and value in ("null", "none", "~") and type(None) in allowed:
        return None
    if isinstance(value, str) and str not in allowed:
        try:
            parsed = yaml.safe_load(value)  # "14" -> 14, "true" -> True
        except yaml.YAMLError:
            parsed = value
        if not isinstance(parsed, str):
            return _coerce(parsed, hint, key)
        if float in allowed:  # YAML 1.1 reads 1e-7 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None and math.isfinite(number):
                return number
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"invalid config value {key}={value!r}: expected a finite number")
    for kind in allowed:
        if kind is type(None):
            continue
        if kind is bool:
            if isinstance(value, bool):
                return value
        elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        elif kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        elif kind is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    names = " or ".join(k.__name__ for k in allowed if k is not type(None))
    raise UserError(f"invalid config value {key}={value!r}: expected {names}")


# Old key -> new key: still read, with one line saying so.
RENAMED_KEYS = {
    "ensemble.weights": "ensemble.member_weights",
    "ensemble.adaptive": "ensemble.tta_threshold",
}


def apply_overrides(config, overrides):
    """Set ``{"section.key": value}`` (or ``{"key": value}`` for top-level keys) in place."""
    for dotted, value in overrides.items():
        if dotted in RENAMED_KEYS:
            print(f"note: {dotted} is now {RENAMED_KEYS[dotted]}", file=sys.stderr)
            dotted = RENAMED_KEYS[dotted]
        *section_path, key = dotted.split(".")
        target = config
        for name in section_path:
            if name not in _sections(target):
                raise UserError(
                    f"unknown config section {name!r} in {dotted!r}; "
                    f"known: {', '.join(_sections(target))}"
                )
            target = getattr(target, name)
        hints = typing.get_type_hints(type(target))
        plain = [f.name for f in dataclasses.fields(target) if f.name not in _sections(target)]
        if key not in plain:
            where = ".".join(section_path) or "the top level"
            raise UserError(f"unknown config key {dotted!r}; keys in {where}: {', '.join(plain)}")
        setattr(target, key, _coerce(value, hints[key], dotted))
    return config


def _flatten(mapping, prefix=""):
    flat = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


MAX_CONFIG_BYTES = 1_000_000  # a config is a few hundred bytes
MAX_CONFIG_ALIASES = 50  # YAML aliases can expand a small file exponentially


def _load_yaml(path):
    """A config file's YAML, with limits on its size and on aliases (a "billion laughs"
    document of a few hundred bytes expands to gigabytes)."""
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"config file {path} is over {MAX_CONFIG_BYTES // 1000} kB: not a config")
    text = path.read_text(encoding="utf-8")
    aliases = sum(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=yaml.SafeLoader))
    if aliases > MAX_CONFIG_ALIASES:
        raise UserError(
            f"config file {path} uses {aliases} YAML aliases (at most {MAX_CONFIG_ALIASES}): "
            "write the values out"
        )
    return yaml.safe_load(text)


def load_config(path=None, overrides=None, recorded=None):
    """Build a validated Config from defaults, settings the workdir recorded
    (``recorded``, see :func:`ripik_clf.data.splits.recorded_settings`), an optional YAML
    file and overrides, in that order of precedence (lowest first)."""
    config = Config()
    apply_overrides(config, recorded or {})
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise UserError(f"--config {path} is a folder: pass a YAML file (see configs/)")
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        try:
            loaded = _load_yaml(path) or {}
        except UnicodeDecodeError:
            raise UserError(
                f"config file {path} is not text (binary content): pass a YAML file"
            ) from None
        except OSError as err:
            raise UserError(f"cannot read config file {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise UserError(
                f"config file {path} is not valid YAML: {err}".splitlines()[0]
            ) from None
        if not isinstance(loaded, dict):
            raise UserError(f"config file {path} must hold a mapping of sections, not {loaded!r}")
        for name in _sections(config):
            if name in loaded and not isinstance(loaded[name], dict):
                raise UserError(
                    f"config file {path}: section {name!r} must be a mapping of keys "
                    f"(indented `key: value` lines under `{name}:`), not {loaded[name]!r}"[:300]
                )
        apply_overrides(config, _flatten(loaded))
    apply_overrides(config, {k: v for k, v in (overrides or {}).items() if v is not None})
    return config.validate()
