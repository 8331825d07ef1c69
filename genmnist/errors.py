"""User-facing errors: bad input ends a command with one line and exit status 2.

Every CLI entry point wraps its work in :func:`exit_on_user_error`, so a missing
file or a malformed argument never shows a traceback, while real bugs still do.
"""

import contextlib
import sys


class UserError(Exception):
    """A problem the user can fix (bad path, bad file, bad flag). Message is one line."""


@contextlib.contextmanager
def exit_on_user_error(prog):
    try:
        yield
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
