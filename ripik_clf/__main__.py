"""``python -m ripik_clf predict|export|audit``: predictions, exports and a data audit.

Examples:
    python -m ripik_clf predict photo.jpg more_photos/ --top-k 3
    python -m ripik_clf predict test/ --members original augmented --tta flip --json
    python -m ripik_clf export augmented --format tflite --quantize float16
    python -m ripik_clf export work/runs/original/full.keras --format savedmodel
    python -m ripik_clf audit --data photos/ --test test/ --workdir work
"""

import json
import sys
from pathlib import Path

from ripik_clf.cli.common import add_data_args, make_parser, resolve_config
from ripik_clf.data.images import IMAGE_EXTENSIONS
from ripik_clf.errors import UserError, exit_on_user_error


def parse_args(argv):
    parser = make_parser(__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2])
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="top-k classes for images or folders")
    predict.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    predict.add_argument(
        "--members",
        nargs="+",
        metavar="NAME_OR_PATH",
        help="run names or .keras files (default: train.models)",
    )
    predict.add_argument(
        "--tta",
        choices=["auto", "none", "flip", "d4"],
        default="auto",
        help="auto (default): flip for members trained on mirrored images, none otherwise",
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
    export.add_argument("run", metavar="RUN", help="run name under WORKDIR/runs/ or a .keras file")
    export.add_argument("--format", required=True, help="savedmodel | tflite | onnx")
    export.add_argument("--quantize", default="none", help="tflite only: none | float16 | dynamic")
    export.add_argument("--out", metavar="DIR", help="output folder (default: WORKDIR/export)")
    export.add_argument(
        "--check-images",
        type=int,
        default=256,
        metavar="N",
        help="validation images compared with the Keras model (default 256)",
    )
    audit = commands.add_parser(
        "audit",
        help="duplicates, leaks, label errors, outliers: WORKDIR/audit/audit.md",
    )
    add_data_args(audit)
    audit.add_argument("--test", metavar="DIR", help="test folder: also look for copies there")
    for sub in (predict, export, audit):  # the common flags work after the command too
        sub.add_argument("--config", metavar="FILE", default=argparse_default())
        sub.add_argument("--workdir", metavar="DIR", default=argparse_default())
        sub.add_argument("--set", metavar="KEY=VALUE", action="append", default=argparse_default())
    return parser.parse_args(argv)


def argparse_default():
    import argparse

    return argparse.SUPPRESS


def collect_images(inputs):
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        elif item.is_file():
            files.append(item)
        else:
            raise UserError(f"not found: {item}")
    if not files:
        raise UserError(f"no image files in {', '.join(inputs)}")
    return files


def predict(args, config):
    import numpy as np

    from ripik_clf.data.splits import saved_split_record
    from ripik_clf.predict.members import (
        check_member_splits,
        default_member_names,
        load_members,
        predict_members,
        resolve_members,
        soft_vote,
    )

    if args.top_k < 1:
        raise UserError(f"--top-k must be 1 or more, got {args.top_k}")
    files = collect_images(args.inputs)
    if args.exported:
        classes, probabilities, failures = _predict_exported(args.exported, files)
    else:
        members = resolve_members(config.workdir, args.members, default_member_names(config))
        check_member_splits(members, saved_split_record(config.workdir))
        load_members(members)
        classes = members[0].classes
        predicted, failures = predict_members(members, [str(f) for f in files], args.tta)
        probabilities = soft_vote(np.nan_to_num(predicted))
    failed = {p for p, _ in failures}
    results = []
    for path, row in zip(files, probabilities):
        if str(path) in failed:
            continue
        top = np.argsort(-row)[: args.top_k]
        results.append(
            {
                "image": str(path),
                "top": [{"class": classes[k], "probability": float(row[k])} for k in top],
            }
        )
    if args.json:
        print(
            json.dumps(
                {
                    "predictions": results,
                    "unreadable": [{"image": p, "reason": r} for p, r in failures],
                },
                indent=2,
            )
        )
    else:
        for result in results:
            ranked = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in result["top"])
            print(f"{result['image']}: {ranked}")
        for path, reason in failures:
            print(f"{path}: unreadable ({reason})", file=sys.stderr)
    if failures and not results:
        raise UserError("no image could be read")


def _predict_exported(exported, files, batch_size=32):
    """Probabilities of an exported model for ``files``, each image prepared exactly as
    its preprocessing spec says (which is what every ripik_clf model sees), in batches
    (the exported model is loaded once per batch, not once per image)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from ripik_clf.data.images import decoded_batches
    from ripik_clf.predict.export import export_format, find_preprocessing_spec, run_export

    spec = find_preprocessing_spec(exported)
    fmt = export_format(exported)
    probabilities = np.zeros((len(files), len(spec["classes"])))
    failures = []
    paths = [str(f) for f in files]
    with ThreadPoolExecutor(max_workers=2) as pool:
        batches = decoded_batches(paths, spec["input"]["shape"][1], batch_size, pool)
        for positions, images, failed in batches:
            failures += failed
            if len(positions):
                probabilities[positions] = run_export(exported, fmt, images.astype("float32"))
    return spec["classes"], probabilities, failures


def export(args, config):
    from ripik_clf.data.dataset import load_dataset
    from ripik_clf.data.images import load_for_model
    from ripik_clf.data.splits import refuse_other_split, saved_split_record
    from ripik_clf.predict.export import check_export, export_model, resolve_model_file

    model_path = resolve_model_file(config.workdir, args.run)
    run_record = model_path.parent / "run.json"
    if not run_record.exists():
        raise UserError(f"no run.json beside {model_path}: its class list is unknown")
    record = json.loads(run_record.read_text())
    refuse_other_split(
        model_path.parent.name, record.get("split"), saved_split_record(config.workdir)
    )
    out_dir = Path(args.out or Path(config.workdir) / "export")
    target = export_model(model_path, args.format, out_dir, args.quantize)
    # The images this model never trained on (its validation split, or its fold's).
    dataset, _ = load_dataset(config.data)
    held_out = dataset[dataset["image"].isin(set(record.get("held_out", [])))]
    paths = list(held_out["path"])[: args.check_images]
    if not paths:
        raise UserError(
            f"no validation image of run {model_path.parent.name} found in the data to "
            "check the export against (pass --data, or retrain the run)"
        )
    import numpy as np

    images = np.stack([load_for_model(p, record["image_size"]) for p in paths]).astype("float32")
    difference, agreement = check_export(model_path, target, args.format, images)
    print(
        f"exported {target}; on {len(paths)} validation images: max |p - p_keras| = "
        f"{difference:.2e}, arg-max agreement {agreement:.2%}"
    )
    from ripik_clf.predict.export import MIN_AGREEMENT

    if agreement < MIN_AGREEMENT:
        raise UserError(
            f"the export disagrees with the Keras model on {1 - agreement:.2%} of "
            f"the check images (allowed: {1 - MIN_AGREEMENT:.1%})"
        )


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    for name in ("config", "workdir"):
        if not hasattr(args, name):
            setattr(args, name, None)
    config = resolve_config(args, {"test": "data.test"})
    {"predict": predict, "export": export, "audit": audit}[args.command](args, config)


def audit(args, config):
    from ripik_clf.audit.runner import run_audit

    run_audit(config, config.data.test)


if __name__ == "__main__":
    main()
