"""``python -m ripik_clf predict|export|audit|runs``: predictions, exports, a data audit
and the table of runs.

Examples:
    python -m ripik_clf predict photo.jpg more_photos/ --top-k 3
    python -m ripik_clf predict test/ --members original augmented --tta flip --json
    python -m ripik_clf export augmented --format tflite --quantize float16
    python -m ripik_clf export work/runs/original/full.keras --format savedmodel
    python -m ripik_clf export --ensemble --format onnx   # the submitted ensemble, one file
    python -m ripik_clf audit --data photos/ --test test/ --workdir work
    python -m ripik_clf runs --workdir work      # every run and phase, best first
"""

import argparse
import json
import sys

from ripik_clf import stages
from ripik_clf.cli.common import add_data_args, make_parser, resolve_config
from ripik_clf.config import EXPORT_FORMATS, QUANTIZATIONS, TTA_MODES
from ripik_clf.errors import UserError, exit_on_user_error


def parse_args(argv):
    parser = make_parser(__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2])
    parser.prog = "python -m ripik_clf"  # not "__main__.py"
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="top-k classes for images or folders")
    predict.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    predict.add_argument(
        "--members",
        nargs="+",
        metavar="NAME_OR_PATH",
        help="run names or .keras files, voting with equal weights (default: the ensemble "
        "ensemble.py submitted, else train.models)",
    )
    predict.add_argument(
        "--tta",
        choices=TTA_MODES,
        help="TTA for --members (default: ensemble.tta; auto: flip for members trained on "
        "mirrored images, none otherwise); without --members it replaces the submitted "
        "ensemble's TTA and weights by the equal-weight vote of train.models",
    )
    predict.add_argument(
        "--exported",
        metavar="PATH",
        help="run an exported model (SavedModel folder, .tflite, .onnx) instead of members, "
        "with the preprocessing its *_preprocessing.json names",
    )
    predict.add_argument("--top-k", type=int, default=3, metavar="K")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    export = commands.add_parser("export", help="SavedModel, TFLite or ONNX, checked")
    export.add_argument(
        "run", metavar="RUN", nargs="?", help="run name under WORKDIR/runs/ or a .keras file"
    )
    export.add_argument(
        "--ensemble",
        action="store_true",
        help="export the ensemble ensemble.py submitted (every member, its TTA, weights and "
        "temperatures) as one model, instead of RUN",
    )
    export.add_argument("--format", required=True, help=" | ".join(EXPORT_FORMATS))
    export.add_argument(
        "--quantize", default="none", help=f"tflite only: {' | '.join(QUANTIZATIONS)}"
    )
    export.add_argument("--out", metavar="DIR", help="output folder (default: WORKDIR/export)")
    export.add_argument(
        "--check-images",
        type=int,
        default=256,
        metavar="N",
        help="validation images compared with the Keras model or ensemble (default 256)",
    )
    audit = commands.add_parser(
        "audit",
        help="duplicates, leaks, label errors, outliers: WORKDIR/audit/audit.md",
    )
    add_data_args(audit)
    audit.add_argument("--test", metavar="DIR", help="test folder: also look for copies there")
    commands.add_parser(
        "runs", help="the runs table (validation scores, time): also WORKDIR/runs/leaderboard.csv"
    )
    for sub in commands.choices.values():  # the common flags work after the command too
        sub.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS)
        sub.add_argument("--workdir", metavar="DIR", default=argparse.SUPPRESS)
        sub.add_argument("--set", metavar="KEY=VALUE", action="append", default=argparse.SUPPRESS)
    return parser.parse_args(argv)


def predict(args, config):
    if args.top_k < 1:
        raise UserError(f"--top-k must be 1 or more, got {args.top_k}")
    classes, files, probabilities, failures = stages.run_predict(
        config, args.inputs, members=args.members, tta=args.tta, exported=args.exported
    )
    failed = {p for p, _ in failures}
    results = [
        {"image": str(path), "top": _top(row, classes, args.top_k)}
        for path, row in zip(files, probabilities)
        if str(path) not in failed
    ]
    if args.json:
        unreadable = [{"image": p, "reason": r} for p, r in failures]
        print(json.dumps({"predictions": results, "unreadable": unreadable}, indent=2))
    else:
        for result in results:
            ranked = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in result["top"])
            print(f"{result['image']}: {ranked}")
        for path, reason in failures:
            print(f"{path}: unreadable ({reason})", file=sys.stderr)
    if failures and not results:
        raise UserError("no image could be read")


def _top(row, classes, k):
    import numpy as np

    return [{"class": classes[i], "probability": float(row[i])} for i in np.argsort(-row)[:k]]


def export(args, config):
    if args.ensemble == (args.run is not None):
        raise UserError("export needs a RUN or --ensemble (one of them)")
    target, checked, difference, agreement = stages.run_export(
        config,
        args.run,
        args.format,
        out=args.out,
        quantize=args.quantize,
        check_images=args.check_images,
    )
    versus = "the Keras ensemble" if args.ensemble else "the Keras model"
    print(
        f"exported {target}; against {versus} on {checked} validation images: "
        f"max |p - p_keras| = {difference:.2e}, arg-max agreement {agreement:.2%}"
    )


def _workdir_of_run_path(run):
    """``export W/runs/NAME/`` (or ``W/runs/NAME/full.keras``) names its work directory:
    (W, the run or model to export); a plain run name: (None, it)."""
    from pathlib import Path

    path = Path(run)
    folder = path.parent if path.suffix == ".keras" else path
    if (folder / "run.json").is_file() and folder.parent.name == "runs":
        print(f"note: work directory {folder.parent.parent} (from the run's path)")
        return str(folder.parent.parent), (run if path.suffix == ".keras" else folder.name)
    return None, run


def audit(args, config):
    stages.run_audit(config)


def runs(args, config):
    from ripik_clf.report.leaderboard import USED_TO_CHOOSE, format_table, write_leaderboard
    from ripik_clf.workdir import leaderboard_path

    table = write_leaderboard(config.workdir, config.train.batch_size)
    if table.empty:
        raise UserError(f"no runs in {config.workdir}: train one with train.py --phase head")
    print(format_table(table))
    print(f"\n{USED_TO_CHOOSE}")
    print(f"{table['run'].nunique()} run(s); written to {leaderboard_path(config.workdir)}")


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    for name in ("config", "workdir"):
        if not hasattr(args, name):
            setattr(args, name, None)
    if args.command == "export" and args.run and args.workdir is None:
        args.workdir, args.run = _workdir_of_run_path(args.run)
    config = resolve_config(args, {"test": "data.test"}, may_resplit=args.command == "audit")
    commands = {"predict": predict, "export": export, "audit": audit, "runs": runs}
    commands[args.command](args, config)
