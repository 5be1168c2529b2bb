"""The command line of ``augment_offline.py`` and ``ripik augment``."""

from ripik_clf import stages
from ripik_clf import workdir as wd
from ripik_clf.cli.common import add_data_args, make_parser, resolve_config
from ripik_clf.data.dataset import class_names
from ripik_clf.errors import exit_on_user_error
from ripik_clf.shards import Shard
from ripik_clf.startup import show_config

DOC = """Grow the training split about 15x with the reference Albumentations recipe.

Example:
    python augment_offline.py --data data/train --copies 14 --size 512

Writes WORKDIR/splits.csv (made once, reused), and under WORKDIR/augmented/:
<class>/<stem>__aug<k>.jpg, manifest.csv (source,path,label,copy), skipped.csv
(every unusable file and why), settings.json and the resolved config.yaml.
Only training images are augmented; a rerun skips finished copies.
"""


def parse_args(argv, doc):
    parser = make_parser(doc.splitlines()[0], epilog=doc.split("\n", 2)[2])
    add_data_args(parser)
    group = parser.add_argument_group("augmentation")
    group.add_argument("--copies", type=int, metavar="N", help="copies per training image (14)")
    group.add_argument("--size", type=int, metavar="N", help="output size in pixels (512)")
    group.add_argument("--workers", type=int, metavar="N", help="processes (default: all cores)")
    group.add_argument("--seed", type=int, metavar="N", help="augmentation seed (42)")
    group.add_argument(
        "--shard",
        default="1/1",
        metavar="I/N",
        help="do only the I-th of N equal shares of the work (for N machines)",
    )
    group.add_argument(
        "--resplit",
        action="store_true",
        help="replace a saved split that no longer matches the data",
    )
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="delete copies made with other settings and make them again",
    )
    return parser.parse_args(argv)


def main(argv, doc):
    args = parse_args(argv, doc)
    shard = Shard.parse(args.shard)
    config = resolve_config(args, may_resplit=True)
    show_config(config, args.verbose, "augmented/config.yaml")
    dataset, splits, skipped, s = stages.run_augment(
        config, shard=shard, resplit=args.resplit, overwrite=args.overwrite
    )
    print(
        f"data: {len(dataset)} images in {len(class_names(dataset))} classes, "
        f"{skipped} file(s) skipped; split: {splits['split'].value_counts().to_dict()}"
    )
    rate = s["written"] / s["seconds"] if s["seconds"] > 0 else 0.0
    makeable = s["planned"] - s["unmakeable"]
    complete = "complete" if s["existing"] + s["written"] >= makeable else "INCOMPLETE"
    if s["unreadable_sources"]:  # a listed skip, not an incomplete run
        complete += f" ({s['unreadable_sources']} unreadable source image(s): no copies)"
    print(
        f"augment: {s['sources']} training images x {config.augment.copies} copies = "
        f"{s['planned']} planned; {s['written']} written ({rate:.1f} img/s, {s['workers']} "
        f"workers), {s['existing']} already there, {s['removed_stale']} stale removed, "
        f"{s['skipped']} file(s) skipped; manifest {complete}: {wd.manifest_path(config.workdir)}"
    )


@exit_on_user_error
def script_main(argv=None):
    """``augment_offline.py`` / ``ripik augment``."""
    main(argv, DOC)
