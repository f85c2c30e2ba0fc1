"""``linewatch-collector``: regional statistics from many agents (thin: parse, call, print).

Commands: ``aggregate`` (table, CSV or JSON), ``report`` (one self-contained HTML page),
``run`` (on a schedule, writes ``regional_*`` measurements back to InfluxDB) and ``check``
(are the sources readable?). ``--config PATH`` is accepted before or after the command.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from kit import configkit
from kit.errors import ConfigError, LinewatchError, SourceError, os_error_line
from kit.secret import redact_value
from collector import config as cconfig

BY_CHOICES = ("region", "isp", "city", "access")


def _config(ctx: click.Context, path: str | None) -> cconfig.CollectorConfig:
    """The config, or one line naming file, key and what was expected, and exit 2 (as the
    agent's commands do: a usage error, not a failed run)."""
    path = path or (ctx.obj or {}).get("config")
    try:
        cfg = cconfig.load(path)
    except ConfigError as exc:
        click.echo(f"linewatch-collector: {exc}", err=True)
        sys.exit(2)
    for message in cconfig.warnings(cfg):
        click.echo(f"warning: {message}", err=True)
    return cfg


def _need_numpy() -> None:
    """The statistics use numpy, which the agent's install leaves out: say how to get it in one
    line instead of ending in an ImportError's traceback."""
    try:
        import numpy  # noqa: F401  (loaded here only to know it is there; the statistics use it)
    except ImportError:
        click.echo("linewatch-collector: the regional statistics need numpy, which is not "
                   f"installed; install it with: {sys.executable} -m pip install numpy", err=True)
        sys.exit(1)


def _by(value: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in keys if k not in BY_CHOICES]
    if bad or not keys or len(set(keys)) != len(keys):
        raise click.BadParameter(f"expected a comma-separated list of {', '.join(BY_CHOICES)}, "
                                 f"got {value!r}", param_hint="--by")
    return keys


def _window(since: str, until: str | None, now: float) -> tuple[float, float]:
    try:
        end = configkit.parse_when(until, now) if until else now
        start = configkit.parse_when(since, end)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from exc
    start = float(int(start // 3600) * 3600)  # whole hours: the sources group by hour
    if start >= end:
        raise click.BadParameter("the window is empty (--since is not before --until)",
                                 param_hint="--since")
    return start, end


def collect(cfg: cconfig.CollectorConfig, start: float, end: float, stores: tuple[str, ...] = (),
            warn=lambda m: click.echo(f"warning: {m}", err=True), cache: str = "use",
            now: float | None = None):
    """Read every configured source for [start, end): (Dataset, Quality, what was read).
    ``cache``: "use", "refresh" (forget what is kept, then keep anew) or "off"."""
    from collector import storefile
    from kit.definitions import Quality

    parts, quality, read = [], Quality(), []
    if cfg.influx.url:
        reader, sink = _reader(cfg)
        kept = _cache(cfg, sink.url) if cache != "off" else None
        if kept is not None and cache == "refresh":
            kept.clear()
        try:
            ds, q = reader.read(start, end, kept, now,
                                settle_s=cfg.collector.cache_settle_days * 86400)
        except SourceError as exc:
            raise SourceError(f"{sink.url}: {sink.redact(str(exc))}") from None
        finally:
            reader.http.close()
            if kept is not None:
                kept.close()
        parts.append(ds)
        quality.merge(q)
        late = (f", {reader.refreshed_days} kept days asked again for rows forwarded late"
                if reader.refreshed_days else "")
        read.append(f"InfluxDB {redact_value(sink.url)} ({reader.queries} queries, {reader.bytes} bytes, "
                    f"{reader.cached_days} days from the cache{late})")
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


def _cache(cfg: cconfig.CollectorConfig, url: str):
    from collector.cache import Cache, default_dir

    where = cfg.collector.cache_dir
    if where == "off":
        return None
    i = cfg.influx
    return Cache.for_source(Path(where) if where else default_dir(), url,
                            i.database or i.bucket, i.retention_policy)


def _reader(cfg: cconfig.CollectorConfig):
    from kit.influx import Sink, load_token
    from collector.influxql import Reader

    token = load_token(cfg.influx, source=cfg.source)
    sink = Sink(cfg.influx, token)
    c = cfg.collector
    return Reader(sink.http("v1"), cfg.influx.database or cfg.influx.bucket,
                  cfg.influx.retention_policy, connect=lambda: sink.http("v1"),
                  parallel=c.parallel_queries, max_answer_mb=c.max_answer_mb,
                  query_timeout_s=c.query_timeout_s), sink


def _aggregate(cfg, since, until, by, period, stores, now=None, cache="use"):
    from collector.stats import aggregate

    now = time.time() if now is None else now
    start, end = _window(since, until, now)
    ds, quality, read = collect(cfg, start, end, stores, cache=cache, now=now)
    result = aggregate(ds, cconfig.settings(cfg), by=by, period=period, now=now,
                       source_quality=quality)
    result["sources"] = read
    return result


def _common(f):
    f = click.option("--config", "config_path", metavar="PATH", help="Collector config (TOML).")(f)
    f = click.option("--cache", type=click.Choice(("use", "refresh", "off")), default="use",
                     show_default=True, help="InfluxDB's closed days from the local cache; "
                     "refresh: ask the server for everything again.")(f)
    f = click.option("--store", "stores", multiple=True, metavar="FILE",
                     help="An agent's store file to read too (repeatable).")(f)
    f = click.option("--period", type=click.Choice(("all", "day", "week", "month")), default="all",
                     show_default=True, help="Cells per whole window, or per day/week/month.")(f)
    f = click.option("--by", "by", default="region,isp", show_default=True,
                     help="Cell keys: region, isp, city, access.")(f)
    f = click.option("--until", default=None, help="Window end: a duration back from now or a "
                     "date (default: now).")(f)
    f = click.option("--since", default="30d", show_default=True,
                     help="Window start: a duration back (30d, 12h, 2w) or a date.")(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", metavar="PATH", help="Collector config (TOML).")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """Regional reliability statistics from many linewatch agents."""
    ctx.obj = {"config": config}


def _run(fn):
    """``fn()``, or its failure as one line (``linewatch-collector: ...``) and exit 1."""
    try:
        return fn()
    except (LinewatchError, ValueError) as exc:
        text = str(exc)
    except OSError as exc:
        text = os_error_line(exc)
    click.echo(f"linewatch-collector: {text}", err=True)
    sys.exit(1)


@main.command("aggregate")
@_common
@click.option("--format", "fmt", type=click.Choice(("table", "csv", "json")), default="table",
              show_default=True)
@click.pass_context
def aggregate_cmd(ctx, cache, config_path, stores, period, by, until, since, fmt):
    """Cells of region x ISP (x period) with their figures and 95 % intervals."""
    from collector import output

    cfg = _config(ctx, config_path)
    _need_numpy()
    result = _run(lambda: _aggregate(cfg, since, until, _by(by), period, stores, cache=cache))
    if fmt == "table":
        click.echo(output.to_table(result), nl=False)
        return
    click.echo(output.to_json(result) if fmt == "json" else output.to_csv(result), nl=False)
    # Scripts read stdout; what was read and the data-quality counts go to stderr.
    click.echo("read: " + "; ".join(result.get("sources", ())), err=True)
    click.echo("data quality: " + "; ".join(output.quality_lines(result["data_quality"])), err=True)


@main.command("report")
@_common
@click.option("--out", required=True, type=click.Path(dir_okay=False, writable=True),
              help="The HTML file to write.")
@click.option("--title", default="", help="The page's title.")
@click.pass_context
def report_cmd(ctx, cache, config_path, stores, period, by, until, since, out, title):
    """One self-contained HTML page to publish: tables, charts, events, method."""
    from collector import regional_page
    from kit.files import write_atomic

    cfg = _config(ctx, config_path)
    _need_numpy()
    result = _run(lambda: _aggregate(cfg, since, until, _by(by), period, stores, cache=cache))
    if title:
        result["title"] = title
    # The published page: readable by all (0644), written whole through a file of a random name.
    _run(lambda: write_atomic(Path(out), regional_page.region_report(result), 0o644))
    shown = sum(1 for c in result["cells"] if not c["suppressed"])
    click.echo(f"wrote {out}: {shown} cell(s) shown, "
               f"{len(result['cells']) - shown} suppressed, {len(result['events'])} regional event(s)")


@main.command("run")
@click.option("--config", "config_path", metavar="PATH", help="Collector config (TOML).")
@click.option("--once", is_flag=True, help="Aggregate and write once, then exit.")
@click.pass_context
def run_cmd(ctx, config_path, once):
    """Every [collector] run_every_min: aggregate the last run_since into run_period cells and
    write them to InfluxDB as regional_* measurements."""
    cfg = _config(ctx, config_path)
    _need_numpy()
    if not cfg.influx.url:
        raise click.ClickException(f"{cfg.source}: influx.url: run writes to InfluxDB; set it")

    def job() -> None:
        try:
            n = write_back(cfg)
            click.echo(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} wrote {n} regional points")
        except (LinewatchError, ValueError) as exc:
            # One failed run never stops the schedule; the next run tries again.
            click.echo(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} run failed: {exc}", err=True)
            if once:
                raise click.ClickException(str(exc)) from exc

    if once:
        job()
        return
    from apscheduler.schedulers.blocking import BlockingScheduler

    sched = BlockingScheduler(timezone="UTC")
    sched.add_job(job, "interval", minutes=cfg.collector.run_every_min, coalesce=True,
                  max_instances=1, misfire_grace_time=300, next_run_time=_now_dt())
    click.echo(f"linewatch-collector: every {cfg.collector.run_every_min} min, "
               f"{cfg.collector.run_period} cells over the last {cfg.collector.run_since}")
    try:
        sched.start()
    except (KeyboardInterrupt, SystemExit):
        pass


def _now_dt():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def write_back(cfg: cconfig.CollectorConfig, now: float | None = None) -> int:
    """One scheduled run: aggregate and write the regional_* points; returns the points written."""
    from kit.influx import Sink, load_token
    from kit.lineproto import line
    from collector.output import regional_points

    c = cfg.collector
    result = _aggregate(cfg, c.run_since, None, ("region", "isp"), c.run_period, (), now)
    points = regional_points(result)
    sink = Sink(cfg.influx, load_token(cfg.influx, source=cfg.source))
    try:
        for i in range(0, len(points), 5000):
            body = "\n".join(line(m, t, f, ns) for m, t, f, ns in points[i:i + 5000]).encode()
            ans = sink.send(body)
            if not ans.ok:
                raise SourceError(f"writing regional points: HTTP {ans.status}: {ans.message}")
    finally:
        sink.close()
    return len(points)


@main.command("check")
@click.option("--config", "config_path", metavar="PATH", help="Collector config (TOML).")
@click.option("--store", "stores", multiple=True, metavar="FILE", help="A store file to check too.")
@click.pass_context
def check_cmd(ctx, config_path, stores):
    """Verify the sources: InfluxDB answers and holds agents' data; store files are readable."""
    from collector.checks import run_checks

    cfg = _config(ctx, config_path)
    rows = run_checks(cfg, stores, time.time())
    width = max(len(r[1]) for r in rows)
    for status, name, detail in rows:
        click.echo(f"{status:<5} {name.ljust(width)}  {detail}")
    if any(r[0] == "FAIL" for r in rows):
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
