"""One writer at a time: a lock per run folder (and per shared workdir artefact).

Two ``train.py --phase head`` on one work directory once both exited 0 and left a corrupt
``head.keras``. Each writer now holds an exclusive ``flock`` on ``<folder>/.lock`` while it
works; a second one stops at once with one line naming the holder. The kernel releases
a flock when its process dies, even by ``kill -9``, so a lock is never left stale.
"""

import fcntl
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ripik_clf.atomic import atomic_write
from ripik_clf.errors import UserError


@contextmanager
def exclusive(folder, what, *, shared=False, name=".lock", wait=False):
    """Hold ``folder``'s lock for the ``with`` block; ``what`` names the work in messages.
    ``shared``: any number of shared holders at once (shards of one job), never beside
    an exclusive one. ``wait``: block until the lock is free (for short critical
    sections that concurrent shards take in turn) instead of refusing.

    Raises:
        UserError: another process holds it (its pid, command and start time named).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / name, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            fcntl.flock(handle, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise UserError(
                f"{folder} is in use by another process ({_holder(handle.read())}): wait "
                f"for it to finish or stop it, then run {what} again"
            ) from None
        if shared:  # the holder's note belongs to the exclusive writer
            yield
            return
        handle.seek(0)
        handle.truncate()
        command = " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200]
        handle.write(json.dumps({"pid": os.getpid(), "command": command, "since": time.time()}))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock


def _holder(text):
    try:
        holder = json.loads(text)
        since = time.strftime("%H:%M:%S", time.localtime(holder["since"]))
        return f"pid {holder['pid']}, `{holder['command']}`, since {since}"
    except (ValueError, KeyError, TypeError):
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
