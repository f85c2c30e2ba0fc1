"""The agent's error tree, drawn once here and converted at the boundaries.

    LinewatchError
    ├── ConfigError        bad configuration: names the file, the key and what was expected
    ├── ProbeError         a probe could not run at all (an unreachable target is not an error:
    │   │                  it is a sample with 100 % loss)
    │   └── MethodUnavailable  the chosen echo method is refused by the system (no ICMP permission)
    ├── StoreError         the local store cannot be opened, read or written
    │   ├── StoreCorrupt   the database file is damaged (``run`` moves it aside, keeps what it can
    │   │                  still read and starts a new one; read-only commands only report it)
    │   ├── StoreMissing   no store yet (read-only commands never create one)
    │   └── StoreUnwritable  the disk is full, the file system read-only, the file not writable
    │                      or locked: the agent keeps its rows in memory until it can write again
    └── SourceError        the collector cannot read a source (InfluxDB's /query, an agent's
                           store file): names the source and what went wrong

Library exceptions (OSError, sqlite3.Error, tomllib.TOMLDecodeError) are caught where they occur and
re-raised as one of these with ``raise ... from exc`` so the cause stays visible in tracebacks.
"""

from __future__ import annotations


class LinewatchError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(LinewatchError):
    """A configuration value is missing, unknown or malformed.

    ``str(err)`` is one line: ``FILE: KEY: what was expected, got VALUE``.
    """

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        self.message = message
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + message)


class ProbeError(LinewatchError):
    """A probe could not be carried out (socket refused, bad target), as opposed to a lost echo."""


class MethodUnavailable(ProbeError):
    """The requested echo method is not permitted for this process."""


class StoreError(LinewatchError):
    """The local store cannot be opened, read or written."""


class StoreCorrupt(StoreError):
    """The local store's database file is not a valid SQLite database."""


class StoreMissing(StoreError):
    """There is no store file yet at the path a read-only command was asked to read."""


class StoreUnwritable(StoreError):
    """A write failed for a reason that may pass (disk full, read-only file system, permission,
    I/O error, a lock held too long); ``reason`` is SQLite's error name or the OS error."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class SourceError(LinewatchError):
    """The collector could not read one of its sources; ``str(err)`` names the source."""


def os_error_line(exc: OSError) -> str:
    """One line for an OS error: the path (or paths) and the cause in words, with the usual fix."""
    import errno  # deferred: read only when an OSError is put in words

    where = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    cause = exc.strerror or str(exc)
    hint = {
        errno.EACCES: "run as the user that owns it, or fix its owner or mode (chown, chmod)",
        errno.EPERM: "run as the user that owns it, or fix its owner or mode (chown, chmod)",
        errno.EROFS: "the file system is mounted read-only: remount it read-write or choose "
                     "another path",
        errno.ENOSPC: "the disk is full: free some space",
        errno.EDQUOT: "the disk quota is used up: free some space",
        errno.ENOENT: "check the path (a folder on it may be missing)",
    }.get(exc.errno or 0, "")
    return (f"{where}: " if where else "") + cause + (f" ({hint})" if hint else "")
