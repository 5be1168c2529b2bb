"""Every file the pipeline writes is written whole or not at all."""

import os
import re
import socket
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
    tmp = temp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:  # name the file the user knows, not the temporary one
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path, text):
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_csv(frame, path):
    """A DataFrame as CSV, without its index."""
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
