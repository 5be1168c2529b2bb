"""Average the trained models' softmaxes (+ TTA) into submission.csv and a report.

Examples:
    python ensemble.py --out submission.csv
    python ensemble.py --out submission.csv --test data/test --tta d4
    python ensemble.py --out sub.csv --members original augmented --weights 1 2
    python ensemble.py --out sub.csv --members work/runs/augmented/full.keras
    python ensemble.py --out sub.csv --members original original:probe augmented

Writes the submission (one row per test image, sorted; columns image_id,label),
probabilities.csv beside it, and WORKDIR/report/: report.md, reliability.png,
hardest.png, confusion_<model>.png (validation split; test too when an answer key exists).
"""

from ripik_clf.cli.common import make_parser, resolve_config
from ripik_clf.errors import exit_on_user_error


def parse_args(argv=None):
    parser = make_parser(__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2])
    parser.add_argument(
        "--out",
        default="submission.csv",
        metavar="PATH",
        help="submission file (default: submission.csv)",
    )
    parser.add_argument("--test", metavar="DIR", help="folder of test images (default: config)")
    parser.add_argument("--data", metavar="PATH", help="training data (for the validation split)")
    parser.add_argument(
        "--members",
        nargs="+",
        metavar="NAME_OR_PATH",
        help="run names under WORKDIR/runs/ (NAME:probe or NAME:head for that phase's "
        "model) or .keras files (default: train.models)",
    )
    parser.add_argument(
        "--weights",
        nargs="+",
        type=float,
        metavar="W",
        help="soft-voting weight per model, in --members order (default: chosen by "
        "--select greedy on validation)",
    )
    parser.add_argument("--tta", choices=["none", "flip", "d4"], help="test-time augmentation")
    parser.add_argument(
        "--on-bad-image",
        choices=["fail", "skip"],
        help="an unreadable test image: fail (default) or skip and list it",
    )
    parser.add_argument(
        "--select",
        choices=["none", "greedy"],
        help="greedy (default): choose members and weights on validation macro-F1 "
        "(Caruana et al.); none: every member, equal weights. --weights turns it off",
    )
    parser.add_argument(
        "--tta-threshold",
        metavar="auto|X",
        help="two-stage TTA: re-predict with --tta only images whose ensemble confidence "
        "is below X (auto: the smallest X that loses no validation macro-F1)",
    )
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="let fold models and plain models vote together",
    )
    parser.add_argument(
        "--answers", metavar="CSV", help="answer key (image_id,label) to score the submission"
    )
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    flags = {
        "test": "data.test",
        "tta": "ensemble.tta",
        "on_bad_image": "ensemble.on_bad_image",
        "select": "ensemble.select",
        "tta_threshold": "ensemble.adaptive",
        "members": "ensemble.members",
        "weights": "ensemble.weights",
        "allow_mixed": "ensemble.allow_mixed",
    }
    config = resolve_config(args, flags)
    print(config.dump(), end="\n\n")

    from ripik_clf.predict.submission import metrics_table, run_ensemble

    result = run_ensemble(config, args.out, args.answers)
    print("\nvalidation (real images only)\n" + metrics_table(result["rows"]))
    if result["test_rows"]:
        rows = {(k, config.ensemble.tta): v for k, v in result["test_rows"].items()}
        print("\ntest (answer key)\n" + metrics_table(rows))
    print(
        f"\nsubmission: {result['submission']} ({result['images']} rows); "
        f"report: {result['report']}/report.md"
    )


if __name__ == "__main__":
    main()
