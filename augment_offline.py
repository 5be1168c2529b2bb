"""Grow the training split about 15x with the reference Albumentations recipe.

Example:
    python augment_offline.py --data data/train --copies 14 --size 512

Writes WORKDIR/splits.csv (made once, reused), and under WORKDIR/augmented/:
<class>/<stem>__aug<k>.jpg, manifest.csv (source,path,label,copy), skipped.csv
(every unusable file and why), settings.json and the resolved config.yaml.
Only training images are augmented; a rerun skips finished copies.
"""

from ripik_clf.augment.runner import Shard, run_augmentation
from ripik_clf.cli.common import add_data_args, make_parser, resolve_config
from ripik_clf.data.dataset import class_names, load_dataset
from ripik_clf.data.splits import left_out_of_split, load_or_make_splits
from ripik_clf.errors import exit_on_user_error


def parse_args(argv=None):
    parser = make_parser(__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2])
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


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    shard = Shard.parse(args.shard)
    config = resolve_config(args)
    print(config.dump(), end="\n\n")
    dataset, skipped = load_dataset(config.data)
    splits = load_or_make_splits(dataset, config.split, config.workdir, resplit=args.resplit)
    skipped = skipped + left_out_of_split(dataset, config.workdir)  # listed in skipped.csv
    print(
        f"data: {len(dataset)} images in {len(class_names(dataset))} classes, "
        f"{len(skipped)} file(s) skipped; split: {splits['split'].value_counts().to_dict()}"
    )
    s = run_augmentation(config, dataset, splits, skipped, shard=shard, overwrite=args.overwrite)
    rate = s["written"] / s["seconds"] if s["seconds"] > 0 else 0.0
    makeable = s["planned"] - s["unmakeable"]
    complete = "complete" if s["existing"] + s["written"] >= makeable else "INCOMPLETE"
    if s["unreadable_sources"]:  # a listed skip, not an incomplete run
        complete += f" ({s['unreadable_sources']} unreadable source image(s): no copies)"
    print(
        f"augment: {s['sources']} training images x {config.augment.copies} copies = "
        f"{s['planned']} planned; {s['written']} written ({rate:.1f} img/s, {s['workers']} "
        f"workers), {s['existing']} already there, {s['removed_stale']} stale removed, "
        f"{s['skipped']} file(s) skipped; manifest {complete}: {s['out_dir']}/manifest.csv"
    )


if __name__ == "__main__":
    main()
