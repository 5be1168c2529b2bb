"""One writer at a time: a lock per run folder (and per shared workdir artefact).

Two ``train.py --phase head`` on one work directory once both exited 0 and left a corrupt
``head.keras``. Each writer now holds an exclusive lock on ``<folder>/.lock`` while it
works; a second one stops at once with one line naming the holder. The locks are the
operating system's (``filelock``: ``flock`` on Linux and macOS, ``msvcrt`` on Windows;
its readers-writer lock rests on SQLite's file locks), released when their process dies,
even by ``kill -9``, so a lock is never left stale.
"""

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, ReadWriteLock, Timeout

from ripik_clf.atomic import atomic_write
from ripik_clf.errors import UserError


@contextmanager
def exclusive(folder, what, *, shared=None, name=".lock", wait=False):
    """Hold ``folder``'s lock ``name`` for the ``with`` block; ``what`` names the work in
    messages. ``shared``: None for a plain exclusive lock; True or False for the two
    sides of a readers-writer lock (any number of shared holders at once, the shards of
    one job, never beside an exclusive one): every holder of such a lock says which side
    it takes. ``wait``: block until the lock is free (for short critical sections that
    concurrent shards take in turn) instead of refusing.

    Raises:
        UserError: another process holds it (its pid, command and start time named).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    note = path if shared is None else path.with_name(f"{name}.holder")
    timeout = -1 if wait else 0
    try:
        lock = _acquired(path, shared, timeout)
    except Timeout:
        raise UserError(
            f"{folder} is in use by another process ({_holder(note)}): wait "
            f"for it to finish or stop it, then run {what} again"
        ) from None
    try:
        if not shared:  # the holder's note belongs to the exclusive writer
            _write_note(note)
        yield
    finally:
        lock.release()


def _acquired(path, shared, timeout):
    """The lock at ``path``, acquired: a plain one (``shared`` None), else a side of
    filelock's readers-writer lock, a SQLite file of its own (``NAME.db``: an older
    version's plain lock file of the same name is no database). A damaged one holds
    nothing worth keeping: it is made anew. Separate instances: the shards of a test
    share one process."""
    import sqlite3

    if shared is None:
        lock = FileLock(path)
        lock.acquire(timeout=timeout)
        return lock
    database = path.with_name(path.name + ".db")

    def side():
        lock = ReadWriteLock(database, is_singleton=False)
        (lock.acquire_read if shared else lock.acquire_write)(timeout=timeout)
        return lock

    try:
        return side()
    except sqlite3.DatabaseError:  # not a database: made anew, once
        database.unlink(missing_ok=True)
        return side()


def _write_note(path):
    command = " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200]
    try:  # beside the lock's own bytes (Windows locks a file's bytes against readers)
        Path(path).write_text(json.dumps({"pid": os.getpid(), "command": command,
                                          "since": time.time()}))  # fmt: skip
    except OSError:
        pass  # a note is a courtesy: without it the holder is "unknown"


def _holder(note):
    try:
        holder = json.loads(Path(note).read_text())
        since = time.strftime("%H:%M:%S", time.localtime(holder["since"]))
        return f"pid {holder['pid']}, `{holder['command']}`, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def save_model_atomically(model, path):
    """``model.save(path)`` through a temporary name and a rename: a reader (or a crash,
    or a full disk) never sees a half-written model file."""
    atomic_write(path, model.save)


def load_model_file(path):
    """``keras.models.load_model(path)``, with a damaged or foreign file (cut short, not a
    zip, of another Keras version) as one line naming it and the repair."""
    import zipfile

    import keras

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no model file at {path}")
    repair = "train its phase again (train.py --phase PHASE --run RUN --overwrite)"
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a whole .keras file (cut short or not a model): {repair}")
    try:
        return keras.models.load_model(path)
    except Exception as err:  # noqa: BLE001 - Keras raises many types for a bad file
        why = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise UserError(f"{path} cannot be loaded as a Keras model ({why}): {repair}") from None
