"""``--overwrite`` of a run trained with other settings (another input size, backbone,
weights or seed): the new run trains beside the old one, in ``runs/overwrite.<run>/``,
and is swapped in when its phase is done. A failure or a kill before then leaves the old
run whole and usable (the submitted ensemble's member among it); a kill between the two
renames of the swap is finished by the next stage (:func:`workdir.finish_swaps`).

(It once deleted the old run's models first: killed right after "replacing run", the
trained run and the submitted ensemble's member were gone.)
"""

import copy
import os
import shutil

import yaml

from ripik_clf import workdir as wd
from ripik_clf.models.registry import resolve_image_size
from ripik_clf.train.common import changed_settings, run_dir, run_of

PREFIX, REPLACED = wd.OVERWRITE_PREFIX, wd.REPLACED_SUFFIX
SWAPPED_PHASES = ("head", "probe")  # the phases that may change a run's settings


def trains_beside(config, variant, fold, phase, overwrite):
    """Does ``--overwrite`` replace a run trained with other settings here?"""
    if not overwrite or phase not in SWAPPED_PHASES:
        return False
    record = wd.read_run_record(run_dir(config, run_of(config, variant, fold)))
    size = resolve_image_size(config.train.backbone, config.train.image_size)
    return record is not None and bool(changed_settings(record, config.train, variant, size))


def beside(config, variant):
    """The config that trains ``runs/overwrite.<run>/`` (a fresh one each time: what a
    killed attempt left there is not resumed)."""
    twin = copy.deepcopy(config)
    twin.train.run = PREFIX + (config.train.run or variant)
    return twin


def folders(config, variant, fold):
    """``(old, new)``: the run folder being replaced and the one trained beside it."""
    old = run_dir(config, run_of(config, variant, fold))
    return old, run_dir(config, run_of(beside(config, variant), variant, fold))


def start_beside(config, variant, fold):
    old, new = folders(config, variant, fold)
    if new.exists():
        print(f"note: {new} is what an interrupted --overwrite left: trained again")
        shutil.rmtree(new)
    print(f"replacing run {old.name} (--overwrite): trained beside it in {new.name}/, "
          "swapped in when done")  # fmt: skip


def swap_in(config, variant, fold):
    """The new run takes the old one's place: two renames, then the old one is deleted."""
    old, new = folders(config, variant, fold)
    _record_run_name(new, config.train.run)
    aside = old.with_name(old.name + REPLACED)
    shutil.rmtree(aside, ignore_errors=True)
    if old.exists():
        os.replace(old, aside)
    os.replace(new, old)  # the commit point
    shutil.rmtree(aside, ignore_errors=True)


def _record_run_name(folder, run):
    """The saved config names the run it will be (not its temporary name)."""
    path = wd.config_path(folder)
    if path.exists():
        saved = yaml.safe_load(path.read_text()) or {}
        saved.setdefault("train", {})["run"] = run
        from ripik_clf.atomic import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(saved, sort_keys=False))
