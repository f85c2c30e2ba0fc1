"""The episodes and speed tests an agent packs into its ``daily`` rows, read back (pure).

An agent packs the day's ``outage`` and ``speedtest`` rows into the day's row
(kit.hourly.pack_rows: fields ``outages`` and ``speed_tests``), so the collector reads one row
per agent-day instead of every episode and test with its tags: for a quarter of 10,000 agents,
6.3 million rows and 570 MB of answer that cost the server 37 s (bench/README.md).

A row covers its agent-day's rows when both fields are packed as the agent writes them. Null (a
version that packs nothing) or ``*`` (kit.hourly.NOT_PACKED: the agent could not pack them
exactly) leave the agent-day to the ``outage`` and ``speedtest`` rows themselves, as does a field
that is not what the agent writes, which is counted (``bad_summary``). An agent-day is covered
only when every one of its daily rows (one per tag set) is. What comes back is what the row
queries give for the same rows (collector.answers.tagged_rows), value for value: a start is the
day's start plus the whole milliseconds packed (what ``epoch=ms`` answers), divided by 1,000 as
the row's time is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import count, repeat
from typing import Any

from kit.definitions import Unit
from kit.hourly import DAY_S, NOT_PACKED
from kit.records import EpisodeColumns, SpeedColumns

_CHARS = b"abcdefghijklmnopqrstuvwxyz0123456789_.:,+-"     # all a packed text holds
NUMBER_CHARS = b"0123456789.e+-,"      # all numbers hold (not "nan", "inf", a name)
_DIGITS = b"0123456789,"
_NAME = re.compile(r"[a-z][a-z0-9_]*")
DAY_MS = DAY_S * 1000
COMMA, COLON = ord(","), ord(":")


class Bad(ValueError):
    """A packed field that is not what an agent writes."""


def covers(outages: object, speeds: object) -> bool | None:
    """Whether a daily row's two fields may cover its agent-day's rows: True (both strings;
    :func:`read` checks them), False (null or not packed: the rows are read as they are), None
    (not what the agent writes: counted, and the rows are read as they are)."""
    if outages is None or speeds is None or outages == NOT_PACKED or speeds == NOT_PACKED:
        return False
    if outages.__class__ is not str or speeds.__class__ is not str:
        return None
    return True


def read(units: Sequence[Unit], who: Sequence[int], days: Sequence[int], outages: Sequence[str],
         speeds: Sequence[str], window: tuple[float, float]
         ) -> tuple[EpisodeColumns | None, SpeedColumns | None]:
    """The episodes and speed tests packed in the rows (each passed :func:`covers`): row ``i``
    is ``units[who[i]]``'s, of the day starting at ``days[i]`` (s). Only those dated in
    ``window`` [start, end) are given, as the row queries ask for no other. Raises
    :class:`Bad` when any text is not what kit.hourly.pack_rows writes: an entry without its
    fields, a name that is not lowercase letters, digits and _, an offset that is not a whole
    number of milliseconds within the day, a value that is not a finite number >= 0 (checked
    over every row at once: a quarter of 10,000 agents is 6 million entries)."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    who_a = np.asarray(who, dtype=np.int64)
    day_ms = np.asarray(days, dtype=np.int64) * 1000
    lo, hi = window[0] * 1000.0, window[1] * 1000.0

    def entries(texts: Sequence[str], width: int, at: int) -> Any:
        """The entries of every row as token columns (each ``width`` long, the offset at
        ``at``), the unit and start of each kept one, and which are kept; None for none."""
        joined = ",".join(t for t in texts if t)
        if not joined:
            return None
        ascii_ = only(joined, _CHARS)
        if ascii_ is None:
            raise Bad("a character no packed text holds")
        # each entry is ``width`` fields: its separators are width - 1 colons, then a comma
        b = np.frombuffer(ascii_, np.uint8)
        sep = b[(b == COLON) | (b == COMMA)]
        n = (sep.size + 1) // width
        if sep.size != n * width - 1 or (sep[width - 1::width] != COMMA).any() \
                or (sep == COMMA).sum() != n - 1:
            raise Bad("an entry without its fields")
        per_row = np.fromiter(map(str.count, texts, repeat(",")), np.int64, len(texts))
        per_row += np.fromiter(map(bool, texts), np.int64, len(texts))
        tok = joined.replace(":", ",").split(",")
        cols = [tok[k::width] for k in range(width)]
        off = digits(",".join(cols[at]), len(cols[at]), 9)
        if off is None:
            raise Bad("an offset that is not whole milliseconds")
        if (off >= DAY_MS).any():
            raise Bad("an offset past the day's end")
        ms = np.repeat(day_ms, per_row) + off
        keep = (ms >= lo) & (ms < hi)
        return cols, np.repeat(who_a, per_row)[keep].astype(np.int32), ms[keep] / 1000.0, keep

    def numbers(col: list[str], keep: Any, optional: bool = False) -> Any:
        """A column of numbers; an empty one (an upload the test did not measure) as NaN when
        ``optional``."""
        if only(",".join(col), NUMBER_CHARS) is None:
            raise Bad("not a number")
        try:
            v = np.array([x or "nan" for x in col] if optional else col, dtype=np.float64)
        except ValueError:
            raise Bad("not a number") from None
        if not ((v >= 0) & np.isfinite(v) | np.isnan(v) & optional).all():
            raise Bad("a value that is not a finite number >= 0")
        return v[keep]

    eps = tests = None
    got = entries(outages, 4, 2)
    if got is not None:
        (typ, cause, _, dur), unit, start, keep = got
        names: dict[str, int] = {}
        t_ix, c_ix = (_indices(col, names)[keep] for col in (typ, cause))
        if not all(map(_NAME.fullmatch, names)):
            raise Bad("a name that is not lowercase letters, digits and _")
        eps = EpisodeColumns(tuple(units), unit, tuple(names), t_ix, c_ix, start,
                             numbers(dur, keep))
    got = entries(speeds, 3, 0)
    if got is not None:
        (_, down, up), unit, start, keep = got
        tests = SpeedColumns(tuple(units), unit, start, numbers(down, keep),
                             numbers(up, keep, optional=True))
    return eps, tests


def digits(text: str, n: int, most: int) -> Any:
    """The ``n`` whole numbers of ``text``, joined by commas, each of 1 to ``most`` ASCII
    digits, as int64; None when the text is not exactly that. numpy reads them in C, after
    each is checked here: its reader would also take a sign, a space or an empty last one."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    if most > 18:           # numpy would saturate a 19-digit number at int64's end, silently
        raise ValueError(f"digits: at most 18 digits can be read exactly, not {most}")
    ascii_ = only(text, _DIGITS) if text else None
    if ascii_ is None:
        return None
    b = np.frombuffer(ascii_, np.uint8)
    comma = np.flatnonzero(b == COMMA)
    if comma.size != n - 1:
        return None
    runs = np.diff(comma, prepend=-1, append=b.size) - 1
    if runs.min() < 1 or runs.max() > most:
        return None
    out: Any = np.fromstring(text, sep=",", dtype=np.int64)
    return out


def _indices(col: Sequence[str], names: dict[str, int]) -> Any:
    """Each text's index in ``names``, new ones added in the order they first appear (a dict
    lookup per distinct text, not per entry)."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    seen: dict[str, int] = {}      # text -> where it first appears
    at = np.fromiter(map(seen.setdefault, col, count()), np.int64, len(col))
    table = np.zeros(len(col), dtype=np.int32)
    table[np.fromiter(seen.values(), np.int64, len(seen))] = [
        names.setdefault(v, len(names)) for v in seen]
    return table[at]


def only(text: str, chars: bytes) -> bytes | None:
    """``text`` as ASCII bytes when it holds none but ``chars``, else None (bytes.translate
    deletes the allowed ones in C: 8x faster than a regular expression's search here)."""
    if not text.isascii():
        return None
    b = text.encode("ascii")
    return None if b.translate(None, chars) else b
