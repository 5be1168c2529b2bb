"""The submitted ensemble, rebuilt from its record: what ``ensemble.py`` predicted the
test folder with is what ``predict``, ``export --ensemble`` and notebooks use.

    from ripik_clf import Ensemble
    ensemble = Ensemble.load("work")
    result = ensemble.predict(["photo.jpg", "more/"])   # or a list of RGB arrays
    result.labels, result.probabilities                  # (N,), (N, C)
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ripik_clf import workdir as wd
from ripik_clf.errors import UserError
from ripik_clf.predict.combiner import SoftVote
from ripik_clf.predict.inputs import collect, decode
from ripik_clf.predict.members import (
    Member,
    load_members,
    predict_arrays,
    predict_members,
)
from ripik_clf.predict.tta import member_tta
from ripik_clf.predict.voting import needs_tta


@dataclass
class Predictions:
    """Per input: its label (None when unreadable) and calibrated class probabilities
    (NaN row when unreadable), in the order of the inputs."""

    labels: list
    probabilities: np.ndarray
    classes: list
    failures: list  # [(path, reason)]
    retried_with_tta: int = 0  # two-stage TTA: how many inputs got the TTA views
    names: list = None  # per row: its file's path, or "input K" (a folder gives a row a file)


class Ensemble:
    """Members (loaded), their families' weights and the temperatures, voting as
    recorded in an :class:`~ripik_clf.workdir.EnsembleDefinition`."""

    def __init__(self, definition, members):
        self.definition = definition
        self.members = members
        self.classes = list(definition.classes)
        self.combiner = SoftVote.from_record(definition)
        self.cache = None  # a PredictionCache (ensemble.py's), or predict every image

    @property
    def names(self):
        return self.definition.families

    @property
    def weights(self):
        return self.definition.weights

    @classmethod
    def load(cls, workdir, definition=None):
        """The ensemble behind the last ``ensemble.py`` in ``workdir`` (``definition``:
        its record, when the caller has read it already).

        Raises:
            UserError: none recorded, or a member file changed or missing since then.
        """
        definition = definition or wd.read_ensemble_definition(workdir)
        if definition is None:
            raise UserError(
                f"no ensemble recorded in {workdir} (report/ensemble.json): run ensemble.py "
                "first, or name the members (--members)"
            )
        members = [_recorded_member(workdir, spec, definition) for spec in definition.members]
        load_members(members)
        return cls(definition, members)

    def families(self, probabilities):
        """Member probabilities ``(M, N, C)`` -> one per family ``(F, N, C)``: the mean
        of a family's fold runs (a plain run is a family of one)."""
        return np.stack(
            [
                np.mean([p for p, m in zip(probabilities, self.members) if m.family == n], axis=0)
                for n in self.names
            ]
        )

    def vote(self, families):
        """The submitted probabilities of per-family ones ``(F, N, C)`` (its combiner)."""
        return self.combiner.apply(families)

    def member_probabilities(self, predict):
        """Per-member calibrated probabilities ``(M, N, C)`` under the recorded TTA.

        ``predict(mode, rows)`` returns ``(probabilities, failures)`` of the members for
        the inputs ``rows`` (None: all) under TTA ``mode``. With a two-stage threshold,
        every input is predicted without TTA and only those below it again with TTA.

        Returns:
            (probabilities, failures, number of inputs predicted again with TTA).
        """
        tta, threshold = self.definition.tta, self.definition.tta_threshold
        if threshold is None:
            probabilities, failures = predict(tta, None)
            return probabilities, failures, 0
        plain, failures = predict("none", None)
        confidence = np.nan_to_num(self.combiner.vote(self.families(plain))).max(axis=1)
        redo = np.flatnonzero(needs_tta(confidence, threshold) & ~np.isnan(plain[0, :, 0]))
        if len(redo):
            plain[:, redo], _ = predict(tta, redo)
        return plain, failures, len(redo)

    def predict_files(self, paths, batch_size=32, progress=None):
        """``(M, N, C)`` member probabilities of image files, failures, TTA retries."""
        paths = [str(p) for p in paths]

        def predict(mode, rows):
            chosen = paths if rows is None else [paths[i] for i in rows]
            bar = progress if rows is None else None
            predict = self.cache.predict if self.cache else predict_members
            return predict(self.members, chosen, mode, batch_size, bar)

        return self.member_probabilities(predict)

    def predict(self, inputs, batch_size=32):
        """Labels and probabilities for images of any kind, one result per image.

        Args:
            inputs: image files or folders (every image below a folder, sorted), ``uint8``
                RGB arrays ``(H, W, 3)`` of any size (or one ``(N, H, W, 3)`` stack), PIL
                images, or image files' bytes; one alone or a list mixing them
                (:mod:`ripik_clf.predict.inputs`). Each is prepared as every model here
                sees images.

        An input that cannot be predicted (a missing file, a broken image, a float array)
        gets label None, a NaN row and its reason in ``failures``; the others are
        predicted. Raises :class:`~ripik_clf.errors.UserError` only when none can be.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"batch_size must be a whole number >= 1, not {batch_size!r}")
        items = collect(inputs)
        if all(item.path is not None or item.reason for item in items):
            rows = [k for k, item in enumerate(items) if item.reason is None]
            if rows:  # files only: streamed and decoded in the members' reader
                files = [items[k].path for k in rows]
                got, failures, retried = self.predict_files(files, batch_size)
                row_of = {str(path): k for path, k in zip(files, rows)}
                for path, reason in failures:
                    items[row_of[str(path)]].reason = reason
        else:
            rows, got, retried = self._predict_pixels(items, batch_size)
        good = {k for k, item in enumerate(items) if item.reason is None}
        if not good:
            raise UserError(f"none of the {len(items)} input(s) can be predicted (first: "
                            f"{items[0].name}: {items[0].reason})")  # fmt: skip
        probabilities = np.full((len(self.members), len(items), len(self.classes)), np.nan)
        probabilities[:, rows] = got
        voted = self.vote(self.families(probabilities))
        labels = [self.classes[k] if i in good else None for i, k in enumerate(voted.argmax(1))]
        voted[[i not in good for i in range(len(items))]] = np.nan
        failures = [(item.name, item.reason) for item in items if item.reason]
        names = [item.name for item in items]
        return Predictions(labels, voted, self.classes, failures, retried, names)

    def _predict_pixels(self, items, batch_size):
        """Items with pixels (arrays, PIL images, bytes) and any files among them,
        decoded here; returns (rows predicted, their member probabilities, retries)."""
        arrays = {k: decode(item) for k, item in enumerate(items)}
        rows = [k for k, array in arrays.items() if array is not None]
        if not rows:
            return rows, np.zeros((len(self.members), 0, len(self.classes))), 0

        def predict(mode, chosen):
            chosen = rows if chosen is None else [rows[i] for i in chosen]
            return predict_arrays(self.members, [arrays[k] for k in chosen], mode, batch_size)

        got, _, retried = self.member_probabilities(predict)
        return rows, got, retried


def image_files(inputs, allow_outside_root=False):
    """Image files of ``inputs`` (files, and every image below a folder, sorted), and
    ``(path, reason)`` for a folder's image files unusable by name or place (see
    :func:`~ripik_clf.data.dataset.scan_image_folder`; a file named by itself is read)."""
    from ripik_clf.data.dataset import scan_image_folder

    files, unusable = [], []
    if any(not str(item).strip() for item in inputs):  # Path("") is the current folder
        raise UserError("an empty path among the inputs: name image files or folders")
    for item in map(Path, inputs):
        if item.is_dir():
            found, bad = scan_image_folder(item, allow_outside_root)
            files += [item / name for name in found]
            unusable += bad
        elif item.is_file():
            files.append(item)
        else:
            raise UserError(f"not found: {item}")
    if not files:
        first = ""
        if unusable:
            first = f" ({len(unusable)} unusable, first {unusable[0][0]}: {unusable[0][1]})"
        raise UserError(f"no usable image files in {', '.join(map(str, inputs))}{first}")
    return files, unusable


def _recorded_member(workdir, spec, definition):
    """A member as the definition recorded it, refused if its file changed since."""
    path = Path(spec.path)
    if not path.is_absolute():
        path = Path(workdir) / path
    if not path.exists():
        raise UserError(
            f"member {spec.name} of the recorded ensemble ({wd.ensemble_definition_path(workdir)})"
            f" is gone ({path}): run ensemble.py again"
        )
    stat = path.stat()
    recorded = (spec.size_bytes, spec.mtime_ns or stat.st_mtime_ns)  # 0: packaged, size only
    if spec.size_bytes and (stat.st_size, stat.st_mtime_ns) != recorded:
        raise UserError(
            f"member {spec.name} ({path}) changed after the ensemble was made (retrained?; "
            f"recorded in {wd.ensemble_definition_path(workdir)}): "
            "run ensemble.py again, or name the members (--members)"
        )
    record = wd.read_run_record(path.parent, for_model=path)
    if record is not None and record.image_size != spec.image_size:
        raise UserError(
            f"{wd.ensemble_definition_path(workdir)} gives member {spec.name} {spec.image_size} "
            f"px images, but it was trained on {record.image_size} px: {wd.RESUBMIT}"
        )
    if record is not None and list(record.classes) != list(definition.classes):
        raise UserError(
            f"{wd.ensemble_definition_path(workdir)} lists the classes {definition.classes}, "
            f"but member {spec.name} was trained on {record.classes}: {wd.RESUBMIT}"
        )
    member = Member(
        spec.name, path, list(definition.classes), spec.image_size,
        family=spec.family, fold=record.fold, record=record,
        fitted={k: float(v) for k, v in spec.temperatures.items()},
    )  # fmt: skip
    if member_tta(member, definition.tta) != spec.tta:
        raise UserError(
            f"member {spec.name}'s run record changed after the ensemble was made: "
            "run ensemble.py again"
        )
    return member


def package_ensemble(workdir, folder):
    """The recorded ensemble as a folder of its own that :meth:`Ensemble.load` reads:
    ``report/ensemble.json`` and, per member, its model file and run record under
    ``members/<k>/``. Its members are checked by size only (a model store copies files
    and their times). What ``--mlflow`` logs as the ensemble's MLflow Model."""
    import dataclasses
    import shutil

    submitted = Ensemble.load(workdir)  # refused as predict refuses it: gone or changed
    folder = Path(folder)
    members = []
    for k, (spec, member) in enumerate(zip(submitted.definition.members, submitted.members)):
        place = folder / "members" / str(k)
        place.mkdir(parents=True)
        shutil.copyfile(member.path, place / member.path.name)
        run_record = member.path.parent / wd.RUN_JSON
        if run_record.exists():
            shutil.copyfile(run_record, place / wd.RUN_JSON)
        path = (place / member.path.name).relative_to(folder).as_posix()
        members.append(dataclasses.replace(spec, path=path, mtime_ns=0))
    (folder / "report").mkdir()
    wd.write_ensemble_definition(folder, dataclasses.replace(submitted.definition, members=members))
    return folder


def definition_of(
    workdir, members, families, combiner, tta, threshold, split, score,
    tta_log_loss=None, choices=None,
):  # fmt: skip
    """The record of an ensemble ``ensemble.py`` is about to predict the test set with
    (``combiner``: its :class:`~ripik_clf.predict.combiner.SoftVote`)."""
    return wd.EnsembleDefinition(
        members=[_member_spec(workdir, m, tta) for m in members],
        families=list(families),
        tta=tta,
        **combiner.to_record(),
        classes=list(members[0].classes),
        tta_threshold=None if threshold is None else float(threshold),
        split=split,
        validation_macro_f1=None if score is None else float(score),
        tta_log_loss=tta_log_loss,
        choices=choices,
    )


def _member_spec(workdir, member, tta):
    views = member_tta(member, tta)
    temperatures = {views: member.temperature_for(tta)}
    if tta != "none":  # two-stage TTA predicts every image without TTA first
        temperatures.setdefault(member_tta(member, "none"), member.temperature_for("none"))
    stat = Path(member.path).stat()
    return wd.EnsembleMember(
        name=member.name, path=_within(member.path, workdir), family=member.family,
        image_size=int(member.image_size), tta=views, temperatures=temperatures,
        size_bytes=stat.st_size, mtime_ns=stat.st_mtime_ns,
    )  # fmt: skip


def _within(path, workdir):
    """``path`` relative to ``workdir`` when inside it (a moved work directory still
    works), else absolute."""
    path, root = Path(path).resolve(), Path(workdir).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
