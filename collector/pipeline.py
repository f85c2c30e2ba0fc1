"""The collector's pipeline: read every configured source for a window, aggregate it into cells,
and write the cells back as ``regional_*`` points. The commands (collector.cli) parse, call these
and print.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from collector import config as cconfig, storefile
from collector.apart import describe
from collector.cache import Cache, default_dir
from collector.influxql import Reader
from collector.output import regional_points
from kit import configkit
from kit.definitions import Quality
from kit.errors import SourceError
from kit.influx import Sink, load_token
from kit.lineproto import line
from kit.records import Dataset
from kit.secret import redact_value

WRITE_BATCH = 5000   # regional points per write request
RARE_GC = (100_000, 50, 1_000)   # the cycle collector's thresholds while aggregating
# glibc's malloc: memory blocks at least this large are mapped on their own (given back to the
# system when freed), not carved out of the heap (bench/README.md measures it).
M_MMAP_THRESHOLD = -3
ARRAYS_MAPPED_FROM = 1 << 20


class EmptyWindow(ValueError):
    """--since is not before --until."""


def window(since: str, until: str | None, now: float) -> tuple[float, float]:
    """[start, end) for ``since`` and ``until`` (a duration back from now or a date; ``until``
    None: now), the start taken back to a whole hour (the sources group by hour). Raises
    ValueError for text that is neither, EmptyWindow for an empty window."""
    end = configkit.parse_when(until, now) if until else now
    start = configkit.parse_when(since, end)
    start = float(int(start // 3600) * 3600)
    if start >= end:
        raise EmptyWindow("the window is empty (--since is not before --until)")
    return start, end


def collect(cfg: cconfig.CollectorConfig, start: float, end: float, stores: tuple[str, ...] = (),
            warn: Callable[[str], None] = lambda m: None, cache: str = "use",
            now: float | None = None) -> tuple[Dataset, Quality, list[str]]:
    """Read every configured source for [start, end): (Dataset, Quality, what was read).
    ``cache``: "use", "refresh" (forget what is kept, then keep anew) or "off"; ``warn`` is
    told of each store file that cannot be read."""
    parts, quality, read = [], Quality(), []
    if cfg.influx.url:
        ds, q, said = _read_influx(cfg, start, end, cache, now)
        parts.append(ds)
        quality.merge(q)
        read.append(said)
    paths = tuple(cfg.collector.stores) + tuple(stores)
    if paths:
        files = storefile.expand(paths)
        ds, q = storefile.read_stores(files, start, end, on_error=lambda e: warn(str(e)))
        parts.append(ds)
        quality.merge(q)
        read.append(f"{len(files)} store file(s)")
    if not read:
        raise SourceError("no source: set [influx] url and database, or [collector] stores, "
                          "or pass --store FILE")
    return storefile.merge(start, end, parts), quality, read


def _read_influx(cfg: cconfig.CollectorConfig, start: float, end: float, cache: str,
                 now: float | None) -> tuple[Dataset, Quality, str]:
    """InfluxDB's records for [start, end), through the cache of closed days, and a line on
    what was read."""
    reader, sink = _reader(cfg)
    kept = _cache(cfg, sink.url) if cache != "off" else None
    if kept is not None and cache == "refresh":
        kept.clear()
    try:
        ds, q = reader.read(start, end, kept, now, settle_s=cfg.collector.cache_settle_days * 86400)
    except SourceError as exc:
        raise SourceError(f"{sink.url}: {sink.redact(str(exc))}") from None
    finally:
        reader.http.close()
        if kept is not None:
            kept.close()
    late = (f", {reader.refreshed_days} kept days asked again for rows forwarded late"
            if reader.refreshed_days else "")
    return ds, q, (f"InfluxDB {redact_value(sink.url)} ({reader.queries} queries, {reader.bytes} "
                   f"bytes, {reader.cached_days} days from the cache{late}"
                   f"{describe(reader.apart)})")


def _cache(cfg: cconfig.CollectorConfig, url: str) -> Cache | None:
    where = cfg.collector.cache_dir
    if where == "off":
        return None
    i = cfg.influx
    return Cache.for_source(Path(where) if where else default_dir(), url,
                            i.database or i.bucket, i.retention_policy)


def _reader(cfg: cconfig.CollectorConfig) -> tuple[Reader, Sink]:
    token = load_token(cfg.influx, source=cfg.source)
    sink = Sink(cfg.influx, token)
    c = cfg.collector
    # A query may aggregate for a long while before its first byte: its silences are bounded
    # by the query's own deadline, not by influx.timeout_s (the writes').
    silence = max(cfg.influx.timeout_s, c.query_timeout_s)
    return Reader(sink.http("v1", silence), cfg.influx.database or cfg.influx.bucket,
                  cfg.influx.retention_policy, connect=lambda: sink.http("v1", silence),
                  parallel=c.parallel_queries, max_answer_mb=c.max_answer_mb,
                  query_timeout_s=c.query_timeout_s, processes=c.parse_processes), sink


def aggregate(cfg: cconfig.CollectorConfig, start: float, end: float, by: tuple[str, ...],
              period: str, stores: tuple[str, ...] = (), now: float | None = None,
              cache: str = "use", warn: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """The cells of [start, end) from every configured source (collector.stats.aggregate's
    result), with ``sources``: what was read."""
    # deferred: the statistics load numpy, which `check` does not need and the agent's install
    # leaves out (the commands say how to install it before they get here)
    from collector import stats

    stats.check_by(by)
    settings = cconfig.settings(cfg)
    arrays_mapped()
    with rare_collections():
        cols, checked, quality, read, until = _checked(cfg, start, end, stores, warn, cache,
                                                       now, settings.regions)
        result = stats.aggregate_checked(cols, checked, settings, by, period, until, quality)
    result["sources"] = read
    return result


def arrays_mapped(threshold: int = ARRAYS_MAPPED_FROM) -> bool:
    """Has glibc's malloc map every block of at least ``threshold`` bytes on its own, for the
    rest of the process (whether it could: False where the C library is not glibc). By default
    glibc raises that threshold each time a large block is freed, up to 32 MB, and from then on
    carves the collector's arrays of a few MB (a slice's temporaries, each week's blocks) out of
    its heap, where the holes they leave stay resident: at 10,000 x 90, 100 to 150 MB of the peak.
    Mapped, each is given back when it is freed."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    import ctypes  # deferred: only aggregating calls into the C library

    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


def given_back() -> bool:
    """Has glibc's malloc give back to the system the free pages inside its heap (whether it
    could: False where the C library is not glibc): the read leaves about 90 MB of them at
    10,000 x 90, which the statistics would not otherwise reuse."""
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    import ctypes  # deferred: as in arrays_mapped

    trim.argtypes = [ctypes.c_size_t]
    return bool(trim(0))


def _glibc(name: str) -> Any:
    """glibc's function ``name`` through ctypes, or None where the C library is another."""
    import ctypes  # deferred: as in arrays_mapped

    try:
        return getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None


@contextmanager
def rare_collections() -> Iterator[None]:
    """Python's cycle collector run rarely while the sources' answers become records and
    columns: a quarter of 10,000 agents is millions of lists and records, none in a cycle, and
    at the interpreter's thresholds a young collection runs every 700 containers made, to find
    nothing to free (bench/README.md measures the run with and without). Reference counting
    frees everything as before; the thresholds come back on the way out."""
    old = gc.get_threshold()
    gc.set_threshold(RARE_GC[0], RARE_GC[1], RARE_GC[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _checked(cfg: cconfig.CollectorConfig, start: float, end: float, stores: tuple[str, ...],
             warn: Callable[[str], None], cache: str, now: float | None,
             regions: Iterable[str]) -> tuple[Any, Quality, Quality, list[str], float]:
    """The window's records, checked (collector.clean): (columns, what the checks counted, what
    the sources counted, what was read, "now"). The records are let go on return, before any
    figure is made: a quarter of 10,000 agents holds 1 GB of them."""
    # deferred: the checks load numpy, as the statistics do (see aggregate)
    from collector.clean import clean_taken

    ds, quality, read = collect(cfg, start, end, stores, warn=warn, cache=cache, now=now)
    until = ds.end if now is None else now
    box = [ds]
    del ds     # clean_taken lets the records go as it turns them into columns
    given_back()     # what the read freed in the heap (its answers' small objects)
    cols, checked = clean_taken(box, regions, until)
    given_back()
    return cols, checked, quality, read, until


def write_back(cfg: cconfig.CollectorConfig, now: float,
               warn: Callable[[str], None] = lambda m: None) -> int:
    """One scheduled run: aggregate the last ``run_since`` into ``run_period`` cells of region x
    ISP and write their ``regional_*`` points; returns the points written. Raises SourceError
    when the server refuses a batch."""
    c = cfg.collector
    start, end = window(c.run_since, None, now)
    result = aggregate(cfg, start, end, ("region", "isp"), c.run_period, (), now, warn=warn)
    points = regional_points(result)
    sink = Sink(cfg.influx, load_token(cfg.influx, source=cfg.source))
    try:
        for i in range(0, len(points), WRITE_BATCH):
            body = "\n".join(line(m, t, f, ns) for m, t, f, ns in points[i:i + WRITE_BATCH]).encode()
            ans = sink.send(body)
            if not ans.ok:
                raise SourceError(f"writing regional points: HTTP {ans.status}: {ans.message}")
    finally:
        sink.close()
    return len(points)


def interference(cfg: cconfig.CollectorConfig, start: float, end: float,
                 stores: tuple[str, ...] = (), ooni: Callable[[str], None] | None = None,
                 warn: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Blocking across agents for [start, end) (collector.interference): the cells of region
    x ISP x target, the regional interference events and the data quality, from every
    configured source; with ``ooni``, each site check of a cell at or over the floor is given
    to it as one JSON line (OONI's measurement format)."""
    from agent import __version__ as version  # deferred: the version, for the export
    from collector import interference as itf  # deferred: this command's own module

    settings = cconfig.settings(cfg)
    regions = set(settings.regions)
    quality, read = Quality(), []
    days: list[itf.CheckDay] = []
    blocked: list[itf.Blocked] = []
    rows: list[itf.CheckRow] = []
    if cfg.influx.url:
        reader, sink = _reader(cfg)
        try:
            step = 7 * 86400.0
            for a in range(int(start), int(end), int(step)):
                z = min(end, a + step)
                days += itf.days_from(reader.query(itf.day_query(a, z), 'the "service" query'),
                                      regions, quality)
                blocked += itf.blocked_from(reader.query(itf.episode_query(a, z),
                                                         'the interference query'),
                                            regions, quality)
                if ooni is not None:
                    rows += itf.rows_from(reader.query(itf.row_query(a, z),
                                                       'the "service" rows query'),
                                          regions, quality)
        finally:
            sink.close()
        read.append(f"InfluxDB {redact_value(sink.url)}")
    paths = tuple(cfg.collector.stores) + tuple(stores)
    if paths:
        files = storefile.expand(paths)
        for p in files:
            try:
                got_days, got_blocked, got_rows = itf.read_store(str(p), start, end, regions,
                                                                 quality)
            except SourceError as exc:
                warn(str(exc))
                quality.rejected["unreadable_store"] += 1
                quality.unreadable.append(str(exc))
                continue
            days += got_days
            blocked += got_blocked
            rows += got_rows
        read.append(f"{len(files)} store file(s)")
    if not read:
        raise SourceError("no source: set [influx] url and database, or [collector] stores, "
                          "or pass --store FILE")
    days = itf.merge_days(days)
    result = itf.aggregate(days, blocked, settings, start, end, quality)
    result["sources"] = read
    if ooni is not None:
        lines: dict[tuple[str, str, str], set[str]] = {}
        for day in days:
            if day.kind == "site" and day.checks:
                lines.setdefault((day.region, day.isp, day.target), set()).add(day.agent)
        n = 0
        for text in itf.ooni_lines(sorted(rows, key=lambda r: r.time),
                                   {k: len(v) for k, v in lines.items()}, settings,
                                   software_version=version):
            ooni(text)
            n += 1
        result["ooni_measurements"] = n
    return result
