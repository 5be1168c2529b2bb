"""Every file the pipeline writes is written whole or not at all; files that must change
together (a submission, its side files, its report and the record of the ensemble that
made it) are published together (:func:`publication`)."""

import contextlib
import contextvars
import json
import os
import re
import socket
import sys
import threading
from pathlib import Path

TEMP_MARK = ".tmp-"  # in the name of a file being written (cleaned up if a run was killed)


def host_name():
    """This machine's name, as safe file-name characters (at most 32)."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:32] or "host"


def temp_name(path):
    """A hidden name beside ``path``, unique to this host, process and thread (the
    feature cache saves from a thread pool, two images of one content are one entry, and
    shards on machines sharing a file system can have equal process ids), keeping its
    extension (Keras and numpy choose the format from it)."""
    path = Path(path)
    writer = f"{host_name()}-{os.getpid()}-{threading.get_native_id()}"
    return path.with_name(f".{path.stem}{TEMP_MARK}{writer}{path.suffix}")


_WRITER = re.compile(re.escape(TEMP_MARK) + r"(?P<host>.+)-(?P<pid>\d+)-(?P<thread>\d+)(\.[^.]*)?$")


def temp_writer(name):
    """``(host, pid)`` of the writer a temporary file's name holds (None: not one)."""
    match = _WRITER.search(name)
    return (match["host"], int(match["pid"])) if match else None


def atomic_write(path, write):
    """Call ``write(tmp)`` to write ``path``'s content under a temporary name, then rename
    it to ``path``. A reader never sees half a file; on any failure (a full disk, a
    read-only folder, a kill between the two) ``path`` keeps its old content and the
    temporary file is removed (a kill leaves it for the next run's clean-up)."""
    publishing = _PUBLICATION.get()
    if publishing is not None:  # staged now, renamed with the others at the end
        return publishing.stage(path, write)
    tmp = temp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:  # name the file the user knows, not the temporary one
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        tmp.unlink(missing_ok=True)


def note_unsaved(what, root, errors):
    """A derived cache (features, predictions) is a saving, never a requirement: when
    its entries cannot be written (a read-only or full disk, a file where its folder
    should be), the stage goes on with what it computed and says so in one line."""
    if errors:
        print(f"warning: {len(errors)} {what} not saved in the cache {root} ({errors[0]}): "
              "computed and used; the next run computes them again", file=sys.stderr)  # fmt: skip


def forget(entry):
    """Remove a damaged cache entry if possible (a read-only cache keeps it: it is
    checked, and refused, again on every read)."""
    try:
        Path(entry).unlink(missing_ok=True)
    except OSError:
        pass


def atomic_write_text(path, text):
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_csv(frame, path):
    """A DataFrame as CSV, without its index."""
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


# --- several files published as one ---------------------------------------------------

STAGED_MARK = ".staged"  # a file written for a publication, renamed when it commits
_PUBLICATION = contextvars.ContextVar("publication", default=None)


class Publication:
    """Files staged under names beside their targets, then renamed onto them after a
    journal listing every rename is written: a kill during the renames is finished by
    :func:`finish_publication` (the next reader or writer), so a reader sees the old set
    or the new one, never a mix."""

    def __init__(self, journal):
        self.journal, self.staged = Path(journal), {}

    def stage(self, path, write):
        path = Path(path)
        staged = path.with_name(f".{path.name}{STAGED_MARK}")  # one per target: a
        try:  # killed run's leftover is overwritten, never published without a journal
            write(staged)
        except OSError as err:
            staged.unlink(missing_ok=True)
            raise OSError(err.errno, err.strerror, str(path)) from err
        self.staged[path] = staged

    def commit(self):
        from ripik_clf.errors import UserError

        for path in self.staged:  # a rename onto a folder would fail halfway through
            if path.is_dir():
                self.abort()
                raise UserError(f"{path} is a folder: nothing was written (name a file)")
        pairs = [[str(staged), str(path)] for path, staged in self.staged.items()]
        try:
            atomic_write_text(self.journal, json.dumps(pairs))  # the commit point
        except OSError:  # a full disk before it: the old set stands, the new is dropped
            self.abort()
            raise
        finish_publication(self.journal)

    def abort(self):
        for staged in self.staged.values():
            staged.unlink(missing_ok=True)


@contextlib.contextmanager
def publication(journal):
    """Every :func:`atomic_write` in the block (this thread) is staged; when the block
    ends they are published together (on an error, none is)."""
    publishing = Publication(journal)
    token = _PUBLICATION.set(publishing)
    try:
        yield publishing
    except BaseException:
        publishing.abort()
        raise
    finally:
        _PUBLICATION.reset(token)
    publishing.commit()


def written(path):
    """Where ``path``'s newest content is: its staged file while a publication in this
    thread holds one (a page embedding a figure just drawn), else the path."""
    publishing = _PUBLICATION.get()
    return publishing.staged.get(Path(path), Path(path)) if publishing else Path(path)


def finish_publication(journal):
    """Finish a publication a kill interrupted (rename what is still staged), then drop
    its journal. True when there was one."""
    journal = Path(journal)
    try:
        pairs = json.loads(journal.read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        pairs = None
    if not _journal_pairs(pairs):  # written whole, so edited by hand: not ours to follow
        print(f"warning: {journal} is not a publication journal: set aside", file=sys.stderr)
        journal.replace(journal.with_name(journal.name + ".damaged"))
        return False
    for staged, path in pairs:
        try:
            os.replace(staged, path)
        except FileNotFoundError:
            pass  # renamed already (before the kill, or by a reader finishing it too)
    journal.unlink(missing_ok=True)
    return True


def _journal_pairs(pairs):
    return isinstance(pairs, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
        and STAGED_MARK in Path(p[0]).name for p in pairs
    )  # fmt: skip
