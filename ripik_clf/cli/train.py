"""The command line shared by ``train.py``, ``finetune.py`` and ``ripik train``."""

from ripik_clf import stages
from ripik_clf.cli.common import add_data_args, make_parser, resolve_config
from ripik_clf.config import TRAIN_PHASES
from ripik_clf.errors import UserError, exit_on_user_error
from ripik_clf.startup import show_config

TRAIN_DOC = """Train the configured models: --phase head (frozen backbone), then --phase full.

Examples:
    python train.py --phase head                 # both models: original and augmented
    python train.py --phase full --model augmented --epochs 5 --lr 1e-5
    python train.py --phase head --backbone efficientnetb0 --weights none --image-size 128
    python train.py --phase probe                # logistic regression on the cached features
    python train.py --phase features --shard 2/4 # a quarter of the features, on machine 2

Writes WORKDIR/runs/<model>/: head.keras, full.keras or probe.keras (complete models taking raw
0-255 RGB), metrics.json, history_<phase>.csv, run.json, config.yaml.
"""

FINETUNE_DOC = """Fine-tune every layer but BatchNorm at a low LR (= train.py --phase full).

Example:
    python finetune.py --model augmented --epochs 10 --lr 1e-5

Needs WORKDIR/runs/<model>/head.keras from `train.py --phase head`; writes full.keras,
history_full.csv and the "full" entry of metrics.json. Resumes after an interruption.
"""

# --epochs and --lr set the epochs / learning rate of the phase being run.
PHASE_KEYS = {
    "head": ("train.head_epochs", "train.head_lr"),
    "full": ("train.full_epochs", "train.full_lr"),
    "probe": ("train.head_epochs", "train.head_lr"),  # neither applies: C is cross-validated
    "features": ("train.head_epochs", "train.head_lr"),  # neither applies: no training
}


def build_parser(description, epilog, with_phase):
    parser = make_parser(description, epilog)
    add_data_args(parser)
    group = parser.add_argument_group("training")
    if with_phase:
        group.add_argument(
            "--phase",
            choices=TRAIN_PHASES,
            default="head",
            help="head: backbone frozen, cached features (default); "
            "full: everything but BatchNorm unfrozen, low LR; "
            "probe: logistic regression on the cached features (probe.keras); "
            "features: only compute the backbone features into the cache (with --shard "
            "I/N on N machines; the head or probe phase then merges)",
        )
        group.add_argument(
            "--shard",
            metavar="I/N",
            help="with --phase features: compute only the I-th of N equal shares",
        )
    group.add_argument(
        "--model",
        metavar="NAME",
        help="train only this model: original or augmented (default: all of train.models)",
    )
    group.add_argument(
        "--run",
        metavar="NAME",
        help="the run (experiment) to train: runs/NAME/ (default: the variant's name). "
        "One run = one variant, backbone, input size and seed; a new setting needs a new "
        "NAME or --overwrite",
    )
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run's finished model, or a run trained with other settings",
    )
    group.add_argument(
        "--fold",
        type=int,
        metavar="K",
        help="with split.folds: train only fold K (default: every fold)",
    )
    group.add_argument(
        "--backbone",
        metavar="NAME",
        help="e.g. efficientnet_lite0 (default), efficientnetb0, efficientnetv2-s",
    )
    group.add_argument("--weights", metavar="W", help="imagenet (default) | none | PATH")
    group.add_argument(
        "--epochs", type=int, metavar="N",
        help="epochs of this phase (full: exactly N; without it, train.full_min_steps may "
        "add epochs)",
    )  # fmt: skip
    group.add_argument("--image-size", type=int, metavar="N", help="model input in pixels")
    group.add_argument("--batch-size", type=int, metavar="N")
    group.add_argument("--lr", type=float, metavar="X", help="learning rate of this phase")
    if with_phase:  # finetune.py is the full phase, which never makes a split
        group.add_argument(
            "--resplit",
            action="store_true",
            help="head / probe phase: replace a saved split that no longer matches the data",
        )
    group.add_argument(
        "--mlflow",
        action="store_true",
        help="log the phase to MLflow (./mlruns, or $MLFLOW_TRACKING_URI): each epoch's "
        "metrics as it ends, then the run's files",
    )
    return parser


# Phases that make the split when there is none (or --resplit): other --data is theirs
# to check; the features (sharded) and full phases use the saved split.
SPLIT_MAKING_PHASES = ("head", "probe")


def config_from_args(args, phase):
    epochs_key, lr_key = PHASE_KEYS[phase]
    flags = {
        "backbone": "train.backbone",
        "weights": "train.weights",
        "image_size": "train.image_size",
        "batch_size": "train.batch_size",
        "epochs": epochs_key,
        "lr": lr_key,
        "mlflow": "train.mlflow",
        "run": "train.run",
    }
    config = resolve_config(args, flags, may_resplit=phase in SPLIT_MAKING_PHASES)
    if phase == "full" and args.epochs is not None:
        config.train.full_min_steps = 0  # epochs asked for by name: the step floor yields
    if args.model is not None:
        if args.model not in config.train.models:
            raise UserError(
                f"unknown model {args.model!r}; known: {', '.join(config.train.models)}"
            )
        config.train.models = [args.model]
    elif config.train.run and len(config.train.models) > 1:
        config.train.models = [_variant_of_run(config)]
    return config


def _variant_of_run(config):
    """A named run trains one variant: the one it was trained with, else the first of
    train.models (``--model`` chooses another)."""
    from ripik_clf import workdir as wd

    folder = wd.run_dir(config.workdir, config.train.run)
    folds = [wd.run_dir(config.workdir, wd.run_name(config.train.run, 0)), folder]
    for candidate in folds:
        record = wd.read_run_record(candidate)
        if record is not None and record.variant in config.train.models:
            return record.variant
    variant = config.train.models[0]
    print(f"run {config.train.run}: variant {variant} (--model chooses another)")
    return variant


def run_phase(args, phase):
    from ripik_clf.shards import WHOLE, Shard

    shard = Shard.parse(args.shard) if getattr(args, "shard", None) is not None else None
    if shard is not None and phase != "features":
        raise UserError(
            f"--shard splits feature extraction (--phase features), not --phase {phase}"
        )
    config = config_from_args(args, phase)
    show_config(config, args.verbose, "runs/<run>/config.yaml")
    if phase == "features":
        results = stages.run_features(config, shard=shard or WHOLE, fold=args.fold)
        for run, r in results.items():
            print(f"{run}: {r['images']} images ({r['unreadable']} unreadable) -> {r['cache']}")
        return
    results = stages.run_train(
        config,
        phase,
        fold=args.fold,
        resplit=getattr(args, "resplit", False),  # finetune.py has no such flag
        overwrite=args.overwrite,
    )
    print_summary(phase, results)


def print_summary(phase, results):
    helped = [name for name, m in results.items() if m is None]
    if helped:  # a worker of a multi-worker run: the chief (worker 0) saved the run
        print(f"\n{phase} phase of {', '.join(helped)}: trained with worker 0, which saved it")
        results = {name: m for name, m in results.items() if m is not None}
        if not results:
            return
    print(f"\n{phase} phase summary (validation split, real images only)")
    print("| model | train images | epochs | accuracy | macro-F1 | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in results.items():
        print(
            f"| {name} | {m['train_images']} | {m['epochs']} | {m['accuracy']:.4f} "
            f"| {m['macro_f1']:.4f} | {m['seconds']:.0f} |"
        )


def doc_parts(doc):
    return doc.splitlines()[0], doc.split("\n", 2)[2]


def train(argv):
    """``train.py``'s work, errors raised (``ripik fit`` and the Python API call it)."""
    args = build_parser(*doc_parts(TRAIN_DOC), True).parse_args(argv)
    run_phase(args, args.phase)


@exit_on_user_error
def train_main(argv=None):
    """``train.py`` / ``ripik train``."""
    train(argv)


@exit_on_user_error
def finetune_main(argv=None):
    """``finetune.py``: the full phase."""
    args = build_parser(*doc_parts(FINETUNE_DOC), False).parse_args(argv)
    run_phase(args, "full")
