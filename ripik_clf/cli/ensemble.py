"""The command line of ``ensemble.py`` and ``ripik ensemble``."""

import argparse
import sys

from ripik_clf import stages
from ripik_clf.cli.common import make_parser, resolve_config
from ripik_clf.config import ON_BAD_IMAGE, SELECT_RULES, TTA_MODES
from ripik_clf.errors import exit_on_user_error
from ripik_clf.report.markdown import metrics_table
from ripik_clf.shards import WHOLE, Shard
from ripik_clf.startup import show_config

DOC = """Average the trained models' softmaxes (+ TTA) into submission.csv and a report.

Examples:
    python ensemble.py --out submission.csv
    python ensemble.py --out submission.csv --test data/test --tta d4
    python ensemble.py --out sub.csv --members original augmented --member-weights 1 2
    python ensemble.py --out sub.csv --members work/runs/augmented/full.keras
    python ensemble.py --out sub.csv --members original original:probe augmented

Writes the submission (one row per test image, sorted; columns image_id,label), beside it
<out>_probabilities.csv (e.g. submission_probabilities.csv: each class's probability) and,
when images were skipped, <out>_skipped.csv; and WORKDIR/report/: report.html (one page,
figures inline), report.md with its figures (confusion matrices, reliability, hardest
images, training curves; validation split, and test too when an answer key exists).
"""


def parse_args(argv, doc):
    parser = make_parser(doc.splitlines()[0], epilog=doc.split("\n", 2)[2])
    parser.add_argument(
        "--out",
        default="submission.csv",
        metavar="PATH",
        help="submission file (default: submission.csv)",
    )
    parser.add_argument("--test", metavar="DIR", help="folder of test images (default: config)")
    parser.add_argument("--data", metavar="PATH", help="training data (for the validation split)")
    _add_voting_flags(parser)
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="let fold models and plain models vote together",
    )
    parser.add_argument(
        "--answers", metavar="CSV", help="answer key (image_id,label) to score the submission"
    )
    parser.add_argument(
        "--mlflow",
        action="store_true",
        help="log the ensemble to MLflow (./mlruns) as an MLflow Model, with its report",
    )
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="predict only the I-th of N shares of the validation and test images (one "
        "per machine) into WORKDIR/predictions/; ensemble.py without --shard then makes the "
        "submission from them",
    )
    return parser.parse_args(argv)


def _add_voting_flags(parser):
    parser.add_argument(
        "--members",
        nargs="+",
        metavar="NAME_OR_PATH",
        help="run names under WORKDIR/runs/ (NAME:probe or NAME:head for that phase's "
        "model; a k-fold run's name without _foldK means all its folds) or .keras files "
        "(default: train.models)",
    )
    parser.add_argument(
        "--member-weights",
        nargs="+",
        type=float,
        metavar="W",
        help="soft-voting weight per member family (the fold runs of one k-fold run share "
        "one), in --members order (default: chosen by --select on validation)",
    )
    parser.add_argument(  # the old name; train.py's --weights means ImageNet weights
        "--weights", nargs="+", type=float, metavar="W", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--tta",
        choices=TTA_MODES,
        help="test-time augmentation (default auto: the flip views "
        "the members' training allows, kept only if they lower validation "
        "log loss)",
    )
    parser.add_argument(
        "--on-bad-image",
        choices=ON_BAD_IMAGE,
        help="an unreadable test image: fail (default) or skip and list it",
    )
    parser.add_argument(
        "--select",
        choices=SELECT_RULES,
        help="bagged (default): greedy selection on bootstrap resamples of validation, "
        "weights averaged; greedy: plain forward selection on validation macro-F1 "
        "(Caruana et al.); none: every member, equal weights. --member-weights turns it off",
    )
    parser.add_argument(
        "--tta-threshold",
        metavar="auto|X",
        help="two-stage TTA: re-predict with --tta only images whose ensemble confidence "
        "is below X (auto: the smallest X that loses no validation macro-F1)",
    )


def main(argv, doc):
    args = parse_args(argv, doc)
    shard = Shard.parse(args.shard) if args.shard is not None else WHOLE
    if args.weights is not None:
        print("note: --weights is now --member-weights", file=sys.stderr)
        args.member_weights = args.member_weights or args.weights
    flags = {
        "test": "data.test",
        "tta": "ensemble.tta",
        "on_bad_image": "ensemble.on_bad_image",
        "select": "ensemble.select",
        "tta_threshold": "ensemble.tta_threshold",
        "members": "ensemble.members",
        "member_weights": "ensemble.member_weights",
        "allow_mixed": "ensemble.allow_mixed",
        "mlflow": "train.mlflow",
    }
    config = resolve_config(args, flags)
    show_config(config, args.verbose, "report/config.yaml")

    result = stages.run_ensemble(config, args.out, args.answers, shard=shard)
    if not shard.whole:
        print(
            f"\nshard {shard.index}/{shard.count}: {result['images']} validation and test images "
            f"({result['computed']} predicted, the rest already cached; {result['unreadable']} "
            f"unreadable) in {result['seconds']:.0f} s -> {result['cache']}"
            f"\nwhen every shard is done: ensemble.py --out {args.out} (no --shard) merges "
            "them into the submission"
        )
        return
    print("\nvalidation (real images only)\n" + metrics_table(result["rows"]))
    if result["test_rows"]:
        rows = {(k, config.ensemble.tta): v for k, v in result["test_rows"].items()}
        print("\ntest (answer key)\n" + metrics_table(rows))
    print(
        f"\nsubmission: {result['submission']} ({result['images']} rows); "
        f"report: {result['report']}/report.html"
    )


@exit_on_user_error
def script_main(argv=None):
    """``ensemble.py`` / ``ripik ensemble``."""
    main(argv, DOC)
