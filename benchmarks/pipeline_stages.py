"""The default pipeline, stage by stage: seconds, images/s and share of the total.

    python benchmarks/pipeline_stages.py PHOTOS TEST [--workdir W] [--set KEY=VALUE ...]

Runs the design's four commands in turn, each in its own process, as a user would
(``augment_offline.py``, ``train.py --phase head``, ``train.py --phase full``,
``ensemble.py``), times each (start-up included) and reads from the work directory what
each did: copies written and the flips measurement's own seconds, feature images and
feature seconds of the head phase, training images x epochs of the full phase, images
the ensemble predicted. Prints a Markdown table. Use a fresh ``--workdir``: a rerun
finds its copies, features and predictions cached.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _timed(argv, log):
    started = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        done = subprocess.run([sys.executable, *argv], cwd=REPO, stdout=out, stderr=out)
    if done.returncode:
        sys.exit(f"{argv[0]} failed (exit {done.returncode}): see {log}")
    return time.perf_counter() - started


def run_stages(photos, test, work, settings):
    sets = [item for pair in settings for item in ("--set", pair)]
    w = ["--workdir", str(work), *sets]
    log = work.parent / f"{work.name}.log"
    commands = [
        ("augment", ["augment_offline.py", "--data", str(photos), *w]),
        ("head", ["train.py", "--phase", "head", *w]),
        ("full", ["train.py", "--phase", "full", *w]),
        ("ensemble", ["ensemble.py", "--test", str(test), "--out",
                      str(work / "submission.csv"), *w]),
    ]  # fmt: skip
    seconds = {}
    for stage, argv in commands:
        seconds[stage] = _timed(argv, log)
        print(f"{stage}: {seconds[stage]:.0f} s", flush=True)
    return seconds, log


def stage_rows(work, seconds, test):
    """(stage, seconds, images, what the images are) per stage and measured part."""
    from ripik_clf import workdir as wd

    manifest = wd.read_manifest(work)
    settings = wd.read_augment_settings(work)
    flips = settings.flips_auto if settings and isinstance(settings.flips_auto, dict) else {}
    runs = {r.name: wd.read_run_metrics(r) for r in sorted((work / "runs").iterdir())}
    rows = [("augment", seconds["augment"], len(manifest), "copies written")]
    if flips.get("seconds"):
        probe_images = flips["train_images"] * 8 + flips["val_images"]
        rows.append(("  of which flips: auto", flips["seconds"], probe_images,
                     "probe feature images (8 orientations)"))  # fmt: skip
    head = [m["head"] for m in runs.values() if "head" in m]
    features = sum(m["train_images"] for m in head)
    rows.append(("head", seconds["head"], features, "training feature rows, all runs"))
    rows.append(("  of which features", sum(m.get("feature_seconds", 0) for m in head),
                 features, "(cached features count as read)"))  # fmt: skip
    full = [m["full"] for m in runs.values() if "full" in m]
    shown = sum(m["train_images"] * m["epochs"] for m in full)
    rows.append(("full", seconds["full"], shown, "training images x epochs, all runs"))
    tests = len(list(Path(test).iterdir()))
    rows.append(("ensemble", seconds["ensemble"], tests, "test images"))
    return rows


def print_table(rows, total, photos):
    print(f"\nDefault pipeline on {photos}: {total / 60:.1f} min in all\n")
    print("| stage | seconds | images | images/s | share of the total | images are |")
    print("|---|---:|---:|---:|---:|---|")
    for stage, seconds, images, what in rows:
        share = "" if stage.startswith(" ") else f"{seconds / total:.0%}"
        print(f"| {stage} | {seconds:.0f} | {images:,} | {images / max(seconds, 1e-9):.1f} | "
              f"{share} | {what} |")  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("test", type=Path)
    parser.add_argument("--workdir", type=Path, default=Path("work/pipeline_stages"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    work = args.workdir.resolve()
    if work.exists():
        sys.exit(f"{work} exists: use a fresh --workdir (cached work would be timed)")
    work.parent.mkdir(parents=True, exist_ok=True)
    seconds, log = run_stages(args.photos.resolve(), args.test.resolve(), work, args.set)
    print_table(stage_rows(work, seconds, args.test), sum(seconds.values()), args.photos)
    print(f"\n(the commands' output: {log})")


if __name__ == "__main__":
    main()
