"""User-facing errors: bad input ends a command with one line and exit status 2.

Every CLI entry point wraps its work in :func:`exit_on_user_error`, so a missing
file or a malformed argument never shows a traceback, while real bugs still do;
an interrupt (Ctrl-C) ends it with one line and exit status 130.
"""

import contextlib
import logging
import os
import signal
import sys

from genmnist import import_tensorflow


class UserError(Exception):
    """A problem the user can fix (bad path, bad file, bad flag). Message is one line."""


INTERRUPTED = 130  # the shell's status for a process ended by SIGINT


@contextlib.contextmanager
def exit_on_user_error(prog, interrupted=None):
    """``interrupted``: what an interrupt that reaches this far leaves behind and what to do, for its line."""
    try:
        yield
    except UserError as err:
        _last_word()
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _last_word()
        print(f"\n{prog}: interrupted" + (f"; {interrupted}" if interrupted else ""), file=sys.stderr)
        sys.exit(INTERRUPTED)


def _last_word():
    """The line about to be printed ends the command: TensorFlow's warnings as its objects are torn down
    (say, of the values a refused checkpoint restore left) would only bury it."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def quiet_interrupts(prog):
    """Until a CLI's own handling takes over: Ctrl-C or SIGTERM (say, while TensorFlow imports) ends in one line."""
    terminal = os.dup(2)  # genmnist.import_tensorflow points fd 2 at a file while TensorFlow loads

    def stop(signum, frame):
        os.write(terminal, f"\n{prog}: interrupted while starting; nothing was written\n".encode())
        # Nothing to clean up yet, and a SystemExit raised inside TensorFlow's import can leave the
        # interpreter waiting on threads the import started: leave at once.
        os._exit(INTERRUPTED)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def sigterm_as_interrupt():
    """``kill`` (SIGTERM) ends a command as Ctrl-C does: its cleanup runs and it says so in one line (exit 130)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)


@contextlib.contextmanager
def starting(prog, as_script):
    """Load TensorFlow, and in the block the modules built on it; run by ``python -m`` (``as_script``), an
    interrupt meanwhile ends the process in one line.  Afterwards ``kill`` ends the command as Ctrl-C does."""
    if as_script:
        quiet_interrupts(prog)
    import_tensorflow()
    yield
    sigterm_as_interrupt()
