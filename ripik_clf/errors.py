"""The one exception type a user should ever see, and the wrapper that prints it."""

import functools
import sys


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
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
