"""Files the commands write whole: the HTML reports (``linewatch report``,
``linewatch-collector report``) and the config ``linewatch init`` writes.

:func:`write_atomic` writes a temporary file of a random name in the target's directory
(``mkstemp``: created new, never through a link, readable by us alone until its mode is set),
sets the mode, syncs it to disk, renames it onto the target and syncs the directory. So

* a reader never sees half a file, and a crash (or a full disk) leaves the previous one intact;
* a name planted in a shared directory (a symlink, or another user's file at a guessable
  temporary name) is never opened, so the write cannot be turned onto a file of the planter's
  choosing, and the result is a new file owned by the user who wrote it, with exactly ``mode``;
* a link at the target's own name is replaced, not followed.

The collector uses this module too (the agent never imports the collector).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: str | bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` (str: written as UTF-8), mode exactly ``mode`` whatever
    the umask. An OSError names ``path`` (not the temporary file), which is removed again."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _naming(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            else:  # pragma: no cover - Windows (Python < 3.13)
                os.chmod(tmp, mode)
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _naming(exc, path) from exc
        raise
    sync_dir(directory)


def sync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename in ``directory`` durable (fsync of the directory). Best effort: some file
    systems refuse to sync a directory, and the rename has happened either way."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _naming(exc: OSError, path: Path) -> OSError:
    """The same error, naming the file the user asked for."""
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path)) if exc.errno else exc
