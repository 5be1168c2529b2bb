"""The one exception type a user should ever see, and the wrapper that prints it."""

import errno
import functools
import sys

WRITE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM}


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2, no traceback."""


def exit_on_user_error(main):
    """Decorate a script's ``main`` so a UserError becomes one line on stderr and exit 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except OSError as err:
            if err.errno not in WRITE_ERRORS:
                raise
            # A full disk or a read-only folder is the machine's state, not a bug: one
            # line naming the file (atomic writes leave no partial file behind).
            where = f"{err.filename}: " if err.filename else ""
            print(f"error: cannot write {where}{err.strerror}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
