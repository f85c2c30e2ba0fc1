"""The agent's error tree, drawn once here and converted at the boundaries.

    LinewatchError
    ├── ConfigError        bad configuration: names the file, the key and what was expected
    ├── ProbeError         a probe could not run at all (an unreachable target is not an error:
    │   │                  it is a sample with 100 % loss)
    │   └── MethodUnavailable  the chosen echo method is refused by the system (no ICMP permission)
    ├── StoreError         the local store cannot be opened or written
    │   └── StoreCorrupt   the database file is damaged (it is moved aside and a new one started)
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


class SourceError(LinewatchError):
    """The collector could not read one of its sources; ``str(err)`` names the source."""
