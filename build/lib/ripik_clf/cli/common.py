"""Argument parsing shared by the scripts: common flags and config resolution."""

import argparse
import os
from pathlib import Path

from ripik_clf.config import load_config
from ripik_clf.data.splits import recorded_settings
from ripik_clf.errors import UserError
from ripik_clf.startup import VERBOSE


def make_parser(description, epilog=None):
    parser = argparse.ArgumentParser(
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="YAML config file (see configs/)")
    parser.add_argument("--workdir", metavar="DIR", help="work directory (default: work/)")
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override any config value, e.g. --set augment.jpeg_quality=90 (repeatable)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print the resolved config and TensorFlow's start-up messages",
    )
    return parser


def add_data_args(parser):
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        metavar="PATH",
        help="class-per-folder directory or CSV file (default: the built-in demo data)",
    )
    group.add_argument("--image-col", metavar="NAME", help="CSV column with image paths")
    group.add_argument("--label-col", metavar="NAME", help="CSV column with class names")
    group.add_argument("--image-root", metavar="DIR", help="folder CSV image paths are relative to")
    return group


# argparse destination -> config key, for the flags that map one-to-one onto config.
FLAG_TO_KEY = {
    "workdir": "workdir",
    "data": "data.path",
    "image_col": "data.image_col",
    "label_col": "data.label_col",
    "image_root": "data.image_root",
    "copies": "augment.copies",
    "size": "augment.size",
    "workers": "augment.workers",
    "seed": "augment.seed",
}


def resolve_config(args, flags=None, *, may_resplit=False):
    """Defaults < the workdir's recorded data and split settings < --config file <
    --set KEY=VALUE < dedicated flags; validated. The recorded settings (saved with the
    split by the first stage) are used unless another dataset is named: after
    ``augment_offline.py --data X`` later stages need no ``--data``.

    Args:
        flags: this script's own ``{argparse dest: config key}``, on top of FLAG_TO_KEY.
            A flag left unset (None, False, empty list) changes nothing.
        may_resplit: the stage makes the split (augment, the head and probe phases, the
            audit): another dataset is its to check (same data, or --resplit). A later
            stage uses the saved split's images: other data named there is refused, not
            ignored unsaid.
    """
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    for dest, key in {**FLAG_TO_KEY, **(flags or {})}.items():
        value = getattr(args, dest, None)
        if value is not None and value is not False and value != []:
            overrides[key] = value
    if getattr(args, "verbose", False):
        os.environ[VERBOSE] = "1"  # startup.quiet_tensorflow keeps TensorFlow's lines
    config = load_config(args.config, overrides)
    recorded = recorded_settings(config.workdir)
    named = config.data.path
    if named is not None and str(Path(named).resolve()) != recorded.get("data.path"):
        if recorded and not may_resplit:
            made_from = recorded.get("data.path") or "the built-in demo digits"
            raise UserError(
                f"--data {named} is not the data the split in {config.workdir} was made "
                f"from ({made_from}): this stage uses that split; drop --data, or pass "
                "another --workdir for other data"
            )
        return config  # another dataset than the recorded one: its split checks decide
    return load_config(args.config, overrides, recorded) if recorded else config
