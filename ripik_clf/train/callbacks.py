"""Keras callbacks of the full phase: its plan and, off a terminal, timed progress lines;
a resume backup that survives being killed at any moment."""

import json
import shutil
import sys
import time
from pathlib import Path

import keras

from ripik_clf import progress as progress_module
from ripik_clf.progress import format_seconds, on_terminal


class FitProgress(keras.callbacks.Callback):
    """The plan of a long ``fit`` and, off a terminal, a line every ``interval`` seconds.

    After ``plan_after`` batches (the first batch also traces the graph, so it is not
    timed) it prints "<name>: 433 images x 10 epochs, ~11 min at 6.8 img/s".
    """

    def __init__(
        self,
        name,
        images_per_epoch,
        batch_size,
        epochs,
        *,
        interval=None,
        plan_after=3,
        log_lines=None,
        clock=time.monotonic,
    ):
        super().__init__()
        self.name, self.images, self.batch_size = name, images_per_epoch, batch_size
        self.epochs, self.plan_after = epochs, plan_after
        self.interval = progress_module.LOG_INTERVAL_S if interval is None else interval
        self.log_lines = (not on_terminal()) if log_lines is None else log_lines
        self.clock = clock
        self.planned = False
        self.steps = -(-images_per_epoch // batch_size)

    def _plan(self, left_epochs, rate, what="plus validation"):
        self.planned = True
        total = left_epochs * self.images / rate
        print(
            f"{self.name}: {self.images} images x {left_epochs} epochs"
            f"{'' if left_epochs == self.epochs else ' left'}, "
            f"~{format_seconds(total)} at {rate:.1f} img/s ({what})",
            flush=True,
        )

    def on_epoch_end(self, epoch, logs=None):
        """An epoch of fewer than ``plan_after`` + 1 batches never planned: plan from the
        whole epoch's time (tracing and validation included: an upper bound)."""
        left = self.epochs - epoch - 1
        if not self.planned and left > 0:
            rate = self.images / max(self.clock() - self.epoch_started, 1e-9)
            self._plan(left, rate, "validation included")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_started = epoch, self.clock()
        self.last_line, self.timed_from = self.epoch_started, None

    def on_train_batch_end(self, batch, logs=None):
        now = self.clock()
        if batch == 0:
            self.timed_from = now  # batch 0 includes tracing; rates count from its end
            return
        timed_batches = batch
        rate = timed_batches * self.batch_size / max(now - self.timed_from, 1e-9)
        if not self.planned and timed_batches >= self.plan_after:
            self._plan(self.epochs - self.epoch, rate)
        if self.log_lines and now - self.last_line >= self.interval:
            self.last_line = now
            done = batch + 1
            eta = (self.steps - done) * self.batch_size / rate
            print(
                f"{self.name} epoch {self.epoch + 1}/{self.epochs}: batch {done}/{self.steps}, "
                f"{rate:.1f} img/s, epoch ETA {format_seconds(eta)}",
                flush=True,
            )


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, with a backup that a kill (even ``kill -9``) at any moment
    cannot corrupt.

    Keras overwrites ``latest.weights.h5`` in place: killed mid-write, it leaves a
    truncated file that every rerun fails to read. Here each backup is written whole into
    ``next/`` and swapped in by renames (``current/`` -> ``previous/``, ``next/`` ->
    ``current/``), so ``current/`` (or, killed mid-swap, ``previous/``) always holds a
    complete one; ``next/`` is never read.

    The swap is the epoch's commit point and comes last (:class:`CommitBackup`, at the
    end of the callback list): the epoch's history row and best checkpoint are written
    before it, so a kill before the commit redoes the epoch, and one after it finds
    everything the epoch wrote.
    """

    WEIGHTS, METADATA = "latest.weights.h5", "training_metadata.json"

    def __init__(self, backup_dir):
        super().__init__(str(backup_dir))
        self.root = Path(backup_dir)
        self.current, self.next, self.previous = (
            self.root / name for name in ("current", "next", "previous")
        )
        self._weights_path = str(self.current / self.WEIGHTS)
        self._training_metadata_path = str(self.current / self.METADATA)

    def prepare(self):
        """Recover the backup folder; True when it holds a backup to resume from. An
        unreadable one (a disk fault) is moved aside, with a warning, and training starts
        over."""
        self._recover()
        if self.current.exists() and not self._readable():
            aside = self.root.with_name(f"{self.root.name}.unreadable-{int(time.time())}")
            self.root.rename(aside)
            print(
                f"warning: the resume backup could not be read; moved to {aside}, "
                "starting the full phase over",
                file=sys.stderr,
            )
        return self.current.exists()

    def on_train_begin(self, logs=None):
        self.prepare()
        self._load_model()

    def _recover(self):
        """Undo what a kill left half done: a partial ``next/``, a swap cut short, or the
        files of Keras' own layout (``latest.weights.h5`` at the top)."""
        shutil.rmtree(self.next, ignore_errors=True)
        if self.previous.exists():
            if self.current.exists():
                shutil.rmtree(self.previous)
            else:
                self.previous.rename(self.current)
        flat = [self.root / name for name in (self.WEIGHTS, self.METADATA)]
        if any(f.exists() for f in flat) and not self.current.exists():
            self.current.mkdir(parents=True)
            for f in flat:
                if f.exists():
                    f.rename(self.current / f.name)

    def _readable(self):
        import h5py

        try:
            with h5py.File(self.current / self.WEIGHTS, "r"):
                pass
            json.loads((self.current / self.METADATA).read_text())["epoch"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return True

    def _save_model(self):
        shutil.rmtree(self.next, ignore_errors=True)
        self.next.mkdir(parents=True)
        self.model.save_weights(str(self.next / self.WEIGHTS), overwrite=True)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        (self.next / self.METADATA).write_text(json.dumps(metadata))

    def commit(self):
        """Swap the backup staged in ``next/`` in (see the class)."""
        if not self.next.exists():
            return
        if self.current.exists():
            self.current.rename(self.previous)
        self.next.rename(self.current)
        shutil.rmtree(self.previous, ignore_errors=True)


class CommitBackup(keras.callbacks.Callback):
    """Last in the callback list: commits the epoch's backup (AtomicBackupAndRestore)."""

    def __init__(self, backup):
        super().__init__()
        self.backup = backup

    def on_epoch_end(self, epoch, logs=None):
        self.backup.commit()


class WholeFileCSVLogger(keras.callbacks.Callback):
    """Keras' CSVLogger, written whole each epoch (the rows so far, through a temporary
    name and a rename).

    CSVLogger keeps the file open and appends in place: ``kill -9`` (or a full disk) at
    the end of an epoch left ``history_full.csv`` at 0 bytes, and every rerun died in
    pandas' EmptyDataError. Here the file on disk is always the last complete epoch's.
    With ``append``, rows already logged (an interrupted run being resumed) are kept.
    """

    def __init__(self, path, append=False):
        super().__init__()
        self.path, self.append = Path(path), append

    def on_train_begin(self, logs=None):
        from ripik_clf import workdir as wd

        self.rows = wd.read_history(self.path).to_dict("records") if self.append else []

    def on_epoch_end(self, epoch, logs=None):
        import pandas as pd

        from ripik_clf.atomic import atomic_write_csv

        row = {"epoch": epoch, **{k: _scalar(v) for k, v in (logs or {}).items()}}
        self.rows = [r for r in self.rows if r.get("epoch") != epoch] + [row]
        atomic_write_csv(pd.DataFrame(self.rows), self.path)


def _scalar(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


class BestModelCheckpoint(keras.callbacks.Callback):
    """The model of the best epoch so far (``monitor`` at its maximum, above
    ``threshold``), saved whole through a temporary name and a rename.

    Keras' ModelCheckpoint saves in place: killed mid-save it left a 0-byte
    ``full_best.keras`` that the phase's end then failed to load.
    """

    def __init__(self, path, monitor, threshold):
        super().__init__()
        self.path, self.monitor, self.best = Path(path), monitor, threshold

    def on_epoch_end(self, epoch, logs=None):
        from ripik_clf.locks import save_model_atomically

        score = (logs or {}).get(self.monitor)
        if score is not None and float(score) > self.best:
            self.best = float(score)
            save_model_atomically(self.model, self.path)
