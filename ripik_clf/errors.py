"""The one exception type a user should ever see, and the wrapper that prints it."""

import errno
import functools
import sys

# Errors only a write meets: named as such. Others (permission denied, a missing folder,
# a file where a folder must be) may come from a read too: the path and the reason.
WRITE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT}


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2, no traceback."""


def os_error_line(err):
    """An OSError as one line: what failed (a write, when the error says so) and where."""
    where = f"{err.filename}: " if err.filename else ""
    verb = "cannot write " if err.errno in WRITE_ERRORS else ""
    return f"{verb}{where}{err.strerror or err}"


MAX_MESSAGE = 600  # characters: a message that lists user data (rows, names) is cut here


def one_line(message):
    """A message as one line a person reads: at most MAX_MESSAGE characters, the rest
    counted (a CSV of 100,000 duplicate rows once gave one 600 KB line)."""
    message = " ".join(message.split())
    if len(message) <= MAX_MESSAGE:
        return message
    return f"{message[:MAX_MESSAGE]}... ({len(message) - MAX_MESSAGE:,} more characters)"


def exit_on_user_error(main):
    """Decorate a script's ``main`` so a UserError becomes one line on stderr and exit 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {one_line(str(err))}", file=sys.stderr)
            sys.exit(2)
        except OSError as err:
            # A full disk, a read-only folder, a path the system refuses (/proc, a file
            # where a folder must be): the machine's state or the user's path, not a bug.
            # One line naming the file (atomic writes leave no partial file behind).
            print(f"error: {one_line(os_error_line(err))}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
