"""``ensemble.py``: predict the test folder, write the submission and the report."""

import dataclasses
import os
import time
from pathlib import Path

import pandas as pd

from ripik_clf import workdir as wd
from ripik_clf.atomic import atomic_write_csv, finish_publication, publication
from ripik_clf.data.dataset import scan_image_folder
from ripik_clf.data.images import IMAGE_EXTENSIONS
from ripik_clf.data.splits import saved_split_record
from ripik_clf.errors import UserError
from ripik_clf.locks import exclusive
from ripik_clf.predict.cache import PredictionCache
from ripik_clf.predict.combiner import SoftVote
from ripik_clf.predict.ensemble import Ensemble, definition_of
from ripik_clf.predict.members import (
    default_member_names,
    load_members,
    resolve_members,
)
from ripik_clf.predict.tta import member_tta
from ripik_clf.predict.validation import validation_probabilities, validation_work
from ripik_clf.predict.voting import choose_threshold, choose_tta
from ripik_clf.progress import progress
from ripik_clf.report import tables
from ripik_clf.report.markdown import EnsembleReport, calibration_section, write_report
from ripik_clf.shards import WHOLE


def test_images(test_dir, allow_outside_root=False):
    """Every image file below ``test_dir`` (any depth), sorted by relative path, and
    ``(path, reason)`` for those unusable by name or place (see
    :func:`~ripik_clf.data.dataset.scan_image_folder`): the submission treats them as
    unreadable images (``ensemble.on_bad_image``)."""
    test_dir = Path(test_dir)
    if not test_dir.is_dir():
        raise UserError(f"test folder not found: {test_dir}")
    files, unusable = scan_image_folder(test_dir, allow_outside_root)
    if not files and not unusable:
        raise UserError(
            f"test folder {test_dir} holds no image files ({', '.join(IMAGE_EXTENSIONS)})"
        )
    if not files:
        path, why = unusable[0]
        raise UserError(
            f"test folder {test_dir} holds no usable image files ({len(unusable)} unusable, "
            f"first {path}: {why})"
        )
    return files, unusable


def resolve_test_dir(config):
    if config.data.test:
        return Path(config.data.test), None
    if config.data.path is None and config.data.demo:  # its test folder and answer key
        from ripik_clf.data.demo import ensure_demo_data

        paths = ensure_demo_data()
        return paths["test"], paths["answers"]
    raise UserError("no test folder: pass --test DIR (or set data.test)")


def run_ensemble(config, out_path, answers=None, shard=WHOLE):
    """Predict validation and test with every member; write submission, probabilities, report.

    One ensemble at a time per work directory: it holds the lock of ``WORKDIR/report``.
    Every member prediction goes through the prediction cache (``WORKDIR/predictions/``).
    With ``shard`` I/N it only fills it with its share of the validation and test images
    (every TTA the ensemble may use) and writes nothing else: shards run at once on N
    machines; the run without ``shard`` afterwards (the merge) predicts nothing again."""
    if str(out_path).endswith(("/", os.sep)):  # Path() drops it: "out/" would be a file
        raise UserError(f"--out {out_path} names a folder: name the submission file, e.g. "
                        f"{Path(out_path) / 'submission.csv'}")  # fmt: skip
    if not shard.whole:
        return _run_ensemble(config, Path(out_path), answers, shard)
    with exclusive(wd.report_dir(config.workdir), "ensemble.py"):
        return _run_ensemble(config, Path(out_path), answers, shard)


def _run_ensemble(config, out_path, answers, shard):
    ens = config.ensemble
    finish_publication(wd.publication_journal(config.workdir))  # a killed run's, first
    for written in (out_path, *(wd.beside_submission(out_path, k) for k in SIDE_FILES)):
        wd.check_output(written, config, "--out")
    if not out_path.parent.is_dir():
        raise UserError(f"output folder does not exist: {out_path.parent}")
    if out_path.is_dir():
        raise UserError(f"--out {out_path} is a folder: name the submission file, e.g. "
                        f"{out_path / 'submission.csv'}")  # fmt: skip
    test_dir, demo_answers = resolve_test_dir(config)
    test_ids, unusable = test_images(test_dir, config.data.allow_outside_root)
    members, names = _members(config)
    modes = list(dict.fromkeys(("none", ens.tta if ens.tta != "none" else "flip")))
    cache = PredictionCache(wd.predictions_dir(config.workdir))
    if not shard.whole:
        return _predict_shard(config, members, names, modes, test_dir, test_ids, shard, cache)
    val = validation_probabilities(config, members, names, modes, cache)
    ens, tta_log_loss, tta_choice = _validated_tta(ens, members, val)
    folded = any(m.fold is not None for m in members)
    combiner, fitted, notes = SoftVote.fit(val.raw[ens.tta], val.y, ens, names, folded)
    for choice in fitted:
        print(choice.line())
    threshold = _tta_threshold(ens, val, combiner)
    choices = [c for c in (tta_choice, *fitted) if c]
    ensemble = Ensemble(
        definition_of(
            config.workdir, members, names, combiner, ens.tta, threshold,
            saved_split_record(config.workdir), _macro_f1(val, combiner, ens.tta), tta_log_loss,
            [c.to_record() for c in choices],
        ),
        members,
    )  # fmt: skip
    truth = tables.read_answers(answers or demo_answers, ens.id_col, ens.label_col)  # early
    ensemble.cache = cache
    paths = [str(test_dir / i) for i in test_ids]
    probabilities, failures, seconds, tta_note = _predict_test(ensemble, paths, ens)
    tta_note += _cache_note(cache)
    keep = _handle_failures(unusable, failures, test_dir, test_ids, ens.on_bad_image, out_path)
    ids, probabilities = [test_ids[i] for i in keep], probabilities[:, keep]
    families = ensemble.families(probabilities)
    voted = ensemble.vote(families)
    # All of it or none of it: a failure or a kill leaves the previous submission, report
    # and ensemble.json together (a journal finishes a publication a kill cut short).
    with publication(wd.publication_journal(config.workdir)):
        _write_submission(out_path, ids, voted, members[0].classes, ens)
        report = EnsembleReport(
            names, combiner, ens.tta, members[0].classes,
            rows=tables.validation_rows(
                val.raw, val.y, names, members[0].classes, combiner, ens.tta
            ),
            test_rows=tables.test_rows(
                truth, ids,
                {m.name: p for m, p in zip(members, probabilities)}, dict(zip(names, families)),
                members[0].classes, combiner,
            ),
            val_probabilities=val.raw[ens.tta], val_y=val.y, val_paths=val.paths,
            n_test=len(ids), seconds=seconds,
            member_temperatures=val.temperatures,
            notes=val.notes + _choice_notes(choices) + notes + tta_note
            + _calibration(val, ensemble, ens.tta),
            member_folders=_run_folders(members),
            **_test_view(truth, ids, voted, members[0].classes, test_dir),
        )  # fmt: skip
        report.notes[:0] = _below_best_member(report.rows, names, ens.tta)
        write_report(config.workdir, report)
        config.save(wd.config_path(wd.report_dir(config.workdir)))  # the resolved config
        # What predict, export --ensemble and Ensemble.load rebuild: the submitted ensemble.
        wd.write_ensemble_definition(config.workdir, ensemble.definition)
    report_dir = wd.report_dir(config.workdir)
    return {"rows": report.rows, "test_rows": report.test_rows, "submission": out_path,
            "report": report_dir, "images": len(ids), "seconds": seconds}  # fmt: skip


def _test_view(truth, ids, voted, classes, test_dir):
    """What the report shows of the test set with an answer key: the labelled images'
    classes, the submission's probabilities and the paths; nothing without a key."""
    if truth is None:
        return {}
    known, y = tables.labelled_test(truth, ids, classes)
    paths = [str(test_dir / ids[i]) for i in known]
    return {"test_y": y, "test_probabilities": voted[known], "test_paths": paths}


def _run_folders(members):
    """``{run: folder}`` of the members that live in a run folder (for the curves)."""
    return {m.path.parent.name: m.path.parent for m in members
            if (m.path.parent / wd.RUN_JSON).exists()}  # fmt: skip


def _below_best_member(rows, names, tta):
    """A warning (printed, and for the report) when the submitted ensemble's validation
    macro-F1 is below its best member's: each member's validation is held out from its
    training, so averaging made things worse there, or the weights chose badly."""
    best = max(names, key=lambda n: rows[(n, tta)]["macro_f1"])
    member, ensemble = rows[(best, tta)]["macro_f1"], rows[("soft ensemble", tta)]["macro_f1"]
    if len(names) < 2 or ensemble >= member:
        return []
    warning = (f"warning: the submitted ensemble scores below its best member on validation "
               f"(macro-F1 {ensemble:.4f} vs {best} {member:.4f}, {rows[(best, tta)]['n']} "
               f"images): consider --members {best}")  # fmt: skip
    print(warning)
    return [f"**{warning}**", ""]


SIDE_FILES = ("probabilities", "skipped")  # written beside the submission


def _members(config):
    """The loaded members and their families (validated per family: out of fold)."""
    ens = config.ensemble
    members = resolve_members(config.workdir, ens.members, default_member_names(config))
    names = list(dict.fromkeys(m.family for m in members))
    _check_fold_mix(members, ens.allow_mixed)
    if ens.member_weights and len(ens.member_weights) != len(names):
        raise UserError(
            f"{len(ens.member_weights)} weights given for {len(names)} members ({', '.join(names)})"
        )
    return load_members(members), names


def _calibration(val, ensemble, tta):
    members = ensemble.members
    temperatures = {
        name: ", ".join(f"{val.temperatures[m.name][tta]:.2f}" for m in members
                        if m.family == name)
        for name in ensemble.names
    }  # fmt: skip
    return calibration_section(
        val.raw[tta], val.calibrated[tta], val.y, ensemble.names, ensemble.combiner, temperatures
    )


def _write_submission(out_path, ids, probabilities, classes, ens):
    """The submission (id, predicted label) and ``<out>_probabilities.csv`` beside it."""
    labels = [classes[k] for k in probabilities.argmax(1)]
    atomic_write_csv(pd.DataFrame({ens.id_col: ids, ens.label_col: labels}), out_path)
    table = pd.DataFrame(probabilities, columns=[str(c) for c in classes])
    table.insert(0, ens.id_col, ids)
    atomic_write_csv(table, wd.beside_submission(out_path, "probabilities"))


def _validated_tta(ens, members, val):
    """``tta: auto`` keeps the flip views its members' training allows only when they
    lower the ensemble's validation log loss beyond noise (else none: one view, cheaper).
    Returns the ensemble settings with the TTA used, the mean log loss per TTA considered
    and the :class:`~ripik_clf.evidence.Choice` (None, None: no check)."""
    if ens.tta != "auto" or all(member_tta(m, "auto") == "none" for m in members):
        return ens, None, None
    given = [float(w) for w in ens.member_weights] or None  # else weights come after
    choice, scores = choose_tta({"none": val.raw["none"], "auto": val.raw["auto"]}, val.y, given)
    losses = ", ".join(f"{mode} {score:.4f}" for mode, score in scores.items())
    vote = "given weights" if given else "equal-weight"
    choice.note = "; ".join(filter(None, [f"the {vote} soft vote, mean log loss {losses}",
                                          choice.note]))  # fmt: skip
    print(choice.line())
    threshold = ens.tta_threshold if choice.chosen != "none" else "off"  # nothing to redo
    return dataclasses.replace(ens, tta=choice.chosen, tta_threshold=threshold), scores, choice


def _choice_notes(choices):
    """Each automatic choice with its evidence, one line each, for the report."""
    if not choices:
        return []
    return ["Automatic choices (a default is kept unless held-out evidence is beyond noise):",
            "", *[f"- {c.line()}" for c in choices], ""]  # fmt: skip


def _tta_threshold(ens, val, combiner):
    """Two-stage TTA's confidence threshold (None: off), chosen on validation for auto:
    images below it get the ``ens.tta`` views, the rest none."""
    if ens.tta_threshold == "off":
        return None
    if ens.tta_threshold != "auto":
        return float(ens.tta_threshold)
    return choose_threshold(combiner.vote(val.raw["none"]), combiner.vote(val.raw[ens.tta]), val.y)


def _macro_f1(val, combiner, tta):
    from sklearn.metrics import f1_score

    return f1_score(val.y, combiner.apply(val.raw[tta]).argmax(1), average="macro")


def _predict_shard(config, members, names, modes, test_dir, test_ids, shard, cache):
    """``ensemble.py --shard I/N``: this shard's share of every member's validation and
    test predictions, under every TTA the ensemble may use, into the prediction cache."""
    started = time.perf_counter()
    work = [(group, shard.take(paths)) for group, paths in validation_work(config, members, names)]
    work.append((members, shard.take([str(test_dir / i) for i in test_ids])))
    bar = progress(sum(len(paths) for _, paths in work) * len(modes), f"predict{shard.suffix}")
    unreadable = set()
    for group, paths in work:
        for mode in modes:
            _, failures = cache.predict(group, paths, mode, config.ensemble.batch_size, bar, False)
            unreadable |= {path for path, _ in failures}
    bar.close()
    return {"images": sum(len(paths) for _, paths in work), "unreadable": len(unreadable),
            "computed": cache.computed, "seconds": time.perf_counter() - started,
            "cache": cache.root}  # fmt: skip


def _predict_test(ensemble, paths, ens):
    """Per-member test probabilities, predicted as the ensemble's record says (plain or
    two-stage TTA: :meth:`Ensemble.member_probabilities`)."""
    started = time.perf_counter()
    bar = progress(len(paths), "predict test")
    probabilities, failures, redone = ensemble.predict_files(paths, ens.batch_size, bar)
    bar.close()
    seconds = time.perf_counter() - started
    threshold = ensemble.definition.tta_threshold
    if threshold is None:
        return probabilities, failures, seconds, []
    note = (
        f"Adaptive TTA: threshold {threshold:.4f} ({ens.tta_threshold}); {redone} of "
        f"{len(paths)} test images ({redone / len(paths):.1%}) re-predicted with "
        f"`{ens.tta}` in {seconds:.1f} s in all."
    )
    print(note)
    return probabilities, failures, seconds, [note, ""]


def _cache_note(cache):
    """Where the predictions came from: the models, or the cache (shards, earlier runs)."""
    total = cache.computed + cache.cached
    note = (
        f"Member predictions (validation and test, per TTA): {cache.cached} of {total} "
        f"images from the prediction cache ({cache.root}: ensemble.py --shard, or an "
        f"earlier run), {cache.computed} predicted now."
    )
    print(note)
    return [note, ""]


def _check_fold_mix(members, allow_mixed):
    folded = {m.fold is not None for m in members}
    if len(folded) == 2 and not allow_mixed:
        plain = next(m.name for m in members if m.fold is None)
        raise UserError(
            f"member {plain} is not a fold model but others are; fold models "
            "are validated out of fold, so mixing needs --allow-mixed"
        )


def _handle_failures(unusable, unreadable, test_dir, test_ids, policy, out_path):
    """The test images kept (indices of ``test_ids``): all, or (``skip``) all but the
    unreadable ones, the unusable and unreadable listed beside the submission."""
    failures = unusable + unreadable
    if failures and policy == "fail":
        path, reason = failures[0]
        raise UserError(
            f"test image {path} cannot be read ({reason}); a submission needs every "
            f"row: fix it, or pass --on-bad-image skip ({len(failures)} unreadable)"
        )
    failed = {Path(p).relative_to(test_dir).as_posix() for p, _ in unreadable}
    if failures:
        skipped = wd.beside_submission(out_path, "skipped")
        wd.write_skipped(skipped.parent, failures, name=skipped.name)
        print(f"warning: skipped {len(failures)} unreadable test image(s), listed in {skipped}:")
        for path, reason in failures[:10]:
            print(f"  {path}: {reason}")
    keep = [i for i, name in enumerate(test_ids) if name not in failed]
    if not keep:
        raise UserError(
            f"none of the {len(test_ids)} test images in {test_dir} can be read (listed in "
            f"{skipped}): no submission written"
        )
    return keep
