"""The recommended pipeline in one command: photos in, submission and report out.

    ripik fit PHOTOS --test DIR --out submission.csv [--workdir W] [--set KEY=VALUE]

Runs augment, the head, probe and full phases of each model, and the ensemble, each stage
as its own command would. Running the same command again resumes: a phase whose model is
there is not trained again, copies already made are kept, the ensemble is made anew.
"""

import argparse
import sys
import time
from pathlib import Path

from ripik_clf.errors import UserError

PHASES = ("head", "probe", "full")
# Seconds per training photo of the whole default pipeline (two Lite0 models at 224 px,
# 14 copies each), measured on a 2-core CPU (benchmarks/RESULTS.md: 16.5 min for the 525
# photos of aerial21): a rough plan, not a promise.
SECONDS_PER_PHOTO = 1.9


MLFLOW_HELP = "log every phase and the ensemble (as an MLflow Model) to MLflow (./mlruns)"


def add_fit_args(parser):
    parser.add_argument("photos", metavar="PHOTOS", help="training photos: one folder per class")
    parser.add_argument("--test", required=True, metavar="DIR", help="folder of test images")
    parser.add_argument("--out", required=True, metavar="FILE", help="the submission CSV")
    parser.add_argument("--image-size", type=int, metavar="N", help="model input in pixels")
    parser.add_argument("--mlflow", action="store_true", help=MLFLOW_HELP)


def fit(args):
    """Every stage in turn, in this process; returns the ensemble stage's result."""
    from ripik_clf import workdir as wd
    from ripik_clf.cli import augment, ensemble, train
    from ripik_clf.cli.common import resolve_config

    photos, test = Path(args.photos), Path(args.test)
    for path, what in ((photos, "PHOTOS"), (test, "--test")):
        if not path.is_dir():
            raise UserError(f"{what} {path} is not a folder")
    common = [*_passed(args), "--data", str(photos)]
    config = resolve_config(_namespace(args, photos), may_resplit=True)
    _print_plan(config, photos)
    started = time.perf_counter()
    _step("augment", lambda: augment.main(common, augment.DOC))  # errors raised, not exits
    sized = common + (["--image-size", str(args.image_size)] if args.image_size else [])
    for phase in PHASES:
        for variant in config.train.models:
            model = wd.phase_model(wd.run_dir(config.workdir, variant), phase)
            if model.exists():
                print(f"{phase} phase of {variant}: {model} is there (resumed run): kept")
                continue
            argv = [*sized, "--phase", phase, "--model", variant]
            _step(f"{phase} phase: {variant}", lambda a=argv: train.train(a))
    argv = [*common, "--test", str(test), "--out", args.out]
    _step("ensemble", lambda: ensemble.main(argv, ensemble.DOC))
    minutes = (time.perf_counter() - started) / 60
    report = wd.report_dir(config.workdir) / "report.html"
    print(f"\nfit: done in {minutes:.1f} min; submission {args.out}; report {report}")
    return {"submission": Path(args.out), "report": report, "workdir": Path(config.workdir)}


def _passed(args):
    """The shared flags, as every stage takes them."""
    argv = ["--workdir", args.workdir] if args.workdir else []
    argv += ["--config", args.config] if args.config else []
    argv += [item for pair in args.set for item in ("--set", pair)]
    argv += ["--set", "train.mlflow=true"] if getattr(args, "mlflow", False) else []
    return argv + (["--verbose"] if args.verbose else [])


def _namespace(args, photos):
    return argparse.Namespace(config=args.config, workdir=args.workdir, set=args.set,
                              data=str(photos), verbose=args.verbose)  # fmt: skip


def _print_plan(config, photos):
    from ripik_clf.data.images import IMAGE_EXTENSIONS

    n = sum(1 for p in photos.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    models = " and ".join(config.train.models)
    minutes = n * SECONDS_PER_PHOTO / 60
    print(f"fit: {n} photos in {photos} -> {config.workdir}\n"
          f"  1. augment: {config.augment.copies} copies per training photo\n"
          f"  2. head, probe and full phases of {models} ({config.train.backbone})\n"
          f"  3. ensemble -> submission and report\n"
          f"  about {minutes:.0f} min on a 2-core CPU (less with a GPU); run the same "
          "command again to resume\n", flush=True)  # fmt: skip


def _step(name, run):
    """One stage; an error stops fit there (raised: the command prints it in one line)."""
    print(f"\n=== fit: {name} ===", flush=True)
    try:
        run()
    except (UserError, OSError):
        print(f"fit: stopped at {name}; fix what follows and run the same command again to "
              "resume", file=sys.stderr)  # fmt: skip
        raise
