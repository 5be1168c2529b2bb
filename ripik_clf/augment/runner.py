"""The parallel, streaming, resumable runner behind ``augment_offline.py``.

Layout under ``WORKDIR/augmented/``: ``<class>/<stem>__aug<k>.jpg``, the manifest
(the copies on disk), ``skipped.csv`` (every file that could not be used, with the
reason), ``settings.json`` (what the copies were made with) and ``config.yaml``.
"""

import multiprocessing
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import albumentations
import cv2

from ripik_clf import workdir as wd
from ripik_clf.atomic import TEMP_MARK, atomic_write, host_name, temp_writer
from ripik_clf.augment import recipe as augment
from ripik_clf.data.images import BadImage, read_rgb, resize_square
from ripik_clf.data.splits import training_images
from ripik_clf.errors import UserError
from ripik_clf.evidence import Choice
from ripik_clf.locks import exclusive
from ripik_clf.progress import progress
from ripik_clf.shards import WHOLE, Shard  # noqa: F401  (Shard: the old import path)

# --- worker side: one task = one source image and the copies of it still missing -----

_worker = {}


def _init_worker(settings):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and cleans up
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # pool.terminate() must just stop us
    if settings["workers"] > 1:
        cv2.setNumThreads(1)  # one process per core already; threads inside would oversubscribe
    _worker.update(settings, pipeline=augment.build_recipe(settings["flips"]))


def _augment_source(task):
    """Make the missing copies of one source. Returns (copies written, error or None)."""
    source_path, jobs = task
    try:
        image = read_rgb(source_path, _worker["max_pixels"])
    except BadImage as err:
        return 0, str(err)
    image = resize_square(image, _worker["size"])
    for seed, out_path in jobs:
        copy = augment.augment_copy(_worker["pipeline"], image, seed)
        _write_atomically(out_path, augment.encode_jpeg(copy, _worker["jpeg_quality"]))
    return len(jobs), None


def _write_atomically(path, payload):
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(payload))


# --- parent side ---------------------------------------------------------------------


def run_augmentation(config, dataset, splits, skipped, *, shard=WHOLE, overwrite=False):
    """Make the missing augmented copies of the training images; write the manifest.

    Args:
        config: the resolved Config (uses ``workdir``, ``augment`` and ``data.max_pixels``).
        dataset: the discovered dataset (``image, label, path``).
        splits: the saved split for it.
        skipped: ``(path, reason)`` for files discovery could not use.
        shard: this run's share of the work.
        overwrite: delete copies made with other settings instead of refusing.

    Returns:
        dict with counts and timings for the summary line.
    """
    # One writer of augmented/ at a time; the shards of one job (same settings) together.
    shared = shard.count > 1 and not overwrite
    with exclusive(config.workdir, "augment_offline.py", shared=shared, name=".augment.lock"):
        return _augment_locked(config, dataset, splits, skipped, shard, overwrite)


def _augment_locked(config, dataset, splits, skipped, shard, overwrite):
    aug = config.augment
    out_dir = wd.augmented_dir(config.workdir)
    # The digests the copies were made from (--overwrite: the repair of a damaged manifest).
    recorded = {} if overwrite else _recorded_sources(config.workdir)
    # Shards of one job start together: each reads settings.json and writes its own
    # settings in turn (a shard started with other settings is refused, not mixed in).
    with exclusive(config.workdir, "augment_offline.py", name=".augment-settings.lock", wait=True):
        auto = resolve_auto_flips(config, dataset, splits, overwrite)  # sets aug.flips if auto
        _check_settings(config.workdir, aug, overwrite, auto)
    train = training_images(splits)  # with each image's path, as the split recorded it
    plan = augment.plan_copies(train[["image", "label"]], aug.copies)
    plan["source_sha256"] = plan["source"].map(_content_digests(train))
    removed = _remove_stale(out_dir, set(plan["path"]))
    source_path = dict(zip(train["image"], train["path"]))
    removed += _remove_changed(out_dir, plan, recorded, source_path)
    for folder in sorted({p.rsplit("/", 1)[0] for p in plan["path"]}):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)

    plan["seed"] = [augment.copy_seed(aug.seed, s, k) for s, k in zip(plan["source"], plan["copy"])]
    plan["exists"] = [(out_dir / p).exists() for p in plan["path"]]
    tasks, todo = _tasks(plan, source_path, shard, out_dir)
    workers = aug.workers or os.cpu_count() or 1
    settings = aug.copy_settings() | {"workers": workers, "max_pixels": config.data.max_pixels}
    started = time.perf_counter()
    written, failures = _run_tasks(tasks, settings, workers, len(todo), out_dir)
    elapsed = time.perf_counter() - started

    _write_reports(out_dir, plan, skipped + failures, shard, config)
    return _summary(train, plan, source_path, skipped, failures, written, removed) | {
        "seconds": elapsed,
        "workers": workers,
        "out_dir": out_dir,
    }


def _tasks(plan, source_path, shard, out_dir):
    """This shard's work: per source image still missing copies, its path and the
    (seed, output path) of each missing copy. Returns (tasks, the planned rows to do)."""
    mine = shard.take(source_path)
    todo = plan[~plan["exists"] & plan["source"].isin(set(mine))]
    tasks = [
        (source_path[source], list(zip(group["seed"], (str(out_dir / p) for p in group["path"]))))
        for source, group in todo.groupby("source", sort=True)
    ]
    return tasks, todo


def _summary(train, plan, source_path, skipped, failures, written, removed):
    unreadable = {p for p, _ in failures}
    unreadable_sources = {s for s, p in source_path.items() if p in unreadable}
    return {
        "sources": len(train),
        "planned": len(plan),
        # copies that cannot be made: their source image fails to decode (listed as skipped)
        "unmakeable": int(plan["source"].isin(unreadable_sources).sum()),
        "unreadable_sources": len(unreadable_sources),
        "written": written,
        "existing": int(plan["exists"].sum()),
        "removed_stale": removed,
        "skipped": len(skipped) + len(failures),
    }


def _run_tasks(tasks, settings, workers, total, out_dir):
    """Run tasks in a process pool (in-process for one worker), with a progress bar."""
    written, failures = 0, []
    bar = progress(total, "augment")
    paths = [task[0] for task in tasks]
    pool = None
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if workers == 1 or len(tasks) <= 1:
            _init_worker(settings)
            _worker["threads_started"] = True
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, _raise_interrupt)
            results = map(_augment_source, tasks)
        else:
            pool = _pool_context().Pool(min(workers, len(tasks)), _init_worker, (settings,))
            # Tasks are whole source images (decoded once, then N copies), so small chunks
            # keep both cores busy to the end; results are counts, so memory stays flat.
            results = pool.imap(_augment_source, tasks, chunksize=1)
        for path, (count, error) in zip(paths, results):
            written += count
            if error:
                failures.append((path, error))
            bar.update(count if not error else 0)
    except KeyboardInterrupt:
        if pool is not None:
            pool.terminate()  # may cut a worker mid-write: only its temp file is affected
            pool.join()
        bar.close()
        _remove_stale(out_dir, planned=None)
        raise UserError(
            f"interrupted after writing {written} copies; nothing is half-written: "
            "run the same command again to resume"
        ) from None
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        if pool is not None:
            pool.close()
            pool.join()
        bar.close()
    return written, failures


def _pool_context():
    """fork when it is safe (fast: no re-import), forkserver otherwise.

    Forking a process whose OpenCV or TensorFlow thread pool is already running can
    deadlock the child; that happens when this process augmented in-process before (a
    1-worker run, e.g. in a notebook) or has TensorFlow loaded.
    """
    if _worker.get("threads_started") or "tensorflow" in sys.modules:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("fork")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _settings_record(aug):
    return {"recipe_version": augment.RECIPE_VERSION, **aug.copy_settings()}


def _check_settings(workdir, aug, overwrite, auto=None):
    """Refuse to mix copies made with other settings into this run (or wipe them).
    ``auto``: how ``flips: auto`` chose, recorded with the settings."""
    out_dir = wd.augmented_dir(workdir)
    wanted = _settings_record(aug)
    settings = wd.read_augment_settings(workdir)
    if settings is not None:
        made = settings.made_with
        if made != wanted:
            if not overwrite:
                changed = ", ".join(
                    f"{k} {made.get(k)!r}->{v!r}" for k, v in wanted.items() if made.get(k) != v
                )
                raise UserError(
                    f"{out_dir} holds copies made with other settings ({changed}); "
                    "pass --overwrite to delete and remake them, or use another --workdir"
                )
            shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = wd.AugmentSettings(
        **wanted, albumentations=albumentations.__version__, flips_auto=auto
    )
    wd.write_augment_settings(workdir, record)


def resolve_auto_flips(config, dataset, splits, overwrite=False):
    """``augment.flips: auto`` -> none | horizontal | all, measured on this split (see
    augment/flips.py), or read back from settings.json when copies were already made with
    a measured choice (with the same backbone; ``overwrite`` measures again, so copies
    on disk never change their flips behind the user's back). Prints scores and choice.

    Returns:
        the measurement to record (None when flips was set by hand).
    """
    from ripik_clf.augment.flips import measure_flips
    from ripik_clf.data.splits import split_record

    aug = config.augment
    if aug.flips != "auto":
        return None
    split = split_record(splits, config.split)["assignment"]
    made = wd.read_augment_settings(config.workdir)
    auto = made.flips_auto if made else None
    known = isinstance(auto, dict) and auto.get("chosen") in ("none", "horizontal", "all")
    if known and auto.get("backbone") == config.train.backbone and not overwrite:
        where = "this split" if auto.get("split") == split else "an earlier split"
        print(f"flips: auto -> {auto['chosen']} (measured before, on {where})")
    else:
        print("flips: auto: measuring which orientations keep the labels (a linear probe)")
        auto = measure_flips(config, dataset, splits) | {"split": split}
        print(flips_table(auto))
    aug.flips = auto["chosen"]
    return auto


def flips_table(auto):
    lines = [
        f"flips: auto on {auto['train_images']} training / {auto['val_images']} validation "
        f"images ({auto['backbone']}, {auto['image_size']} px"
        + (f", {auto['seconds']:.0f} s)" if "seconds" in auto else ")"),
        "| flips | val log loss | val macro-F1 | val accuracy |",
        "|---|---:|---:|---:|",
    ]
    for name, s in auto["scores"].items():
        mark = " (chosen)" if name == auto["chosen"] else ""
        lines.append(
            f"| {name}{mark} | {s['log_loss']:.4f} | {s['macro_f1']:.4f} | {s['accuracy']:.4f} |"
        )
    if "choice" in auto:  # recorded by this version: the evidence behind the choice
        lines.append(Choice(**auto["choice"]).line())
    return "\n".join(lines)


def _remove_stale(out_dir, planned):
    """Delete copies no longer planned (e.g. their source moved to validation after a
    re-split: keeping them would leak validation images into training) and any temp
    files an interrupted run left behind. ``planned=None`` removes temp files only."""
    removed = 0
    for path in out_dir.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(out_dir).as_posix()
        is_temp = path.name.startswith(".") and TEMP_MARK in path.name or ".jpg.tmp-" in path.name
        if is_temp and _writer_alive(path):  # a shard still writing it
            continue
        is_stale_copy = (
            planned is not None
            and path.suffix == ".jpg"
            and "__aug" in path.name
            and rel not in planned
        )
        if is_temp or is_stale_copy:
            path.unlink()
            removed += not is_temp
    return removed


def _content_digests(train):
    """``{source image: sha256 of its bytes}``: copies follow the content, not the name
    (a source edited after augmentation gets new copies)."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    def digest(path):
        try:
            return hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            return ""  # unreadable: the copy step lists it

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(zip(train["image"], pool.map(digest, train["path"])))


def _recorded_sources(workdir):
    """``{copy path: source digest}`` of the copies the manifest lists ({} without one,
    or from a version that did not record digests)."""
    if not wd.manifest_path(workdir).exists():
        return {}
    manifest = wd.read_manifest(workdir)
    if "source_sha256" not in manifest:
        return {}
    return dict(zip(manifest["path"], manifest["source_sha256"]))


def _remove_changed(out_dir, plan, recorded, source_path):
    """Delete the copies made from another content of their source. A copy the manifest
    does not list (a run killed before writing it, or an older version's manifest
    without digests) is remade when it is older than its source file."""
    removed = 0
    for path, source, digest in zip(plan["path"], plan["source"], plan["source_sha256"]):
        copy = out_dir / path
        if not copy.exists():
            continue
        was = recorded.get(path)
        if was is not None:
            changed = was != digest
        else:
            changed = copy.stat().st_mtime_ns < Path(source_path[source]).stat().st_mtime_ns
        if changed:
            copy.unlink()
            removed += 1
    return removed


OTHER_HOST_WRITE_S = 3600  # another machine's temporary file younger than this: in use


def _writer_alive(path):
    """Whether the writer a temporary file's name holds (host and pid) is still running;
    another machine's (a shard on a shared file system) cannot be asked: alive while the
    file is younger than OTHER_HOST_WRITE_S."""
    writer = temp_writer(path.name)
    if writer is None:
        return False
    host, pid = writer
    if host != host_name():
        return time.time() - path.stat().st_mtime < OTHER_HOST_WRITE_S
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_reports(out_dir, plan, skipped, shard, config):
    present = plan[[(out_dir / p).exists() for p in plan["path"]]]
    wd.write_manifest(config.workdir, present[["source", "path", "label", "copy", "source_sha256"]])
    wd.write_skipped(out_dir, skipped, f"skipped{shard.suffix}.csv")
    config.save(wd.config_path(out_dir))
