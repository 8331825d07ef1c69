"""Output files are whole or absent: written under a temporary name beside the target, then renamed.

A full disk, a write error or an interrupt (Ctrl-C, SIGTERM as KeyboardInterrupt) while writing
removes the temporary, so no command leaves half a file or reports output it did not write; an
OSError becomes one UserError line naming the file.
"""

import contextlib
import os
import shutil
import tempfile

from genmnist.errors import UserError


def temporary_name(path):
    """Where ``path`` is written first: ``PATH.tmp.EXT`` (writers that pick the format by the extension still can)."""
    return f"{path}.tmp{os.path.splitext(path)[1]}"


def cannot_write(path, err):
    """The UserError for an OSError while writing ``path``."""
    reason = getattr(err, "strerror", None) or (str(err).splitlines() or [type(err).__name__])[0][:100]
    return UserError(f"could not write {path} ({reason}); nothing half-written was left: "
                     "free space there (or choose another path) and run the command again")


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def replacing(path):
    """Yield the temporary name to write ``path``'s content to; on success it is renamed to ``path``.

    Any failure or interrupt removes the temporary; an OSError becomes a UserError.
    """
    tmp = temporary_name(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        _remove(tmp)
        if isinstance(err, OSError):
            raise cannot_write(path, err) from None
        raise


@contextlib.contextmanager
def filling(directory):
    """Yield a new temporary directory beside ``directory``; on success its files move into ``directory``
    (created if need be; files of the same names are replaced, others kept). Failure: as :func:`replacing`."""
    parent = os.path.dirname(os.path.abspath(directory))
    tmp = None
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=os.path.basename(os.path.abspath(directory)) + ".tmp", dir=parent)
        yield tmp
        os.makedirs(directory, exist_ok=True)
        for name in sorted(os.listdir(tmp)):
            os.replace(os.path.join(tmp, name), os.path.join(directory, name))
        os.rmdir(tmp)
    except BaseException as err:
        if tmp is not None:
            _remove(tmp)
        if isinstance(err, OSError):
            raise cannot_write(directory, err) from None
        raise
