"""``linewatch-collector``: regional statistics from many agents (thin: parse, call, print).

Commands: ``aggregate`` (table, CSV or JSON), ``report`` (one self-contained HTML page),
``run`` (on a schedule, writes ``regional_*`` measurements back to InfluxDB) and ``check``
(are the sources readable?). ``--config PATH`` is accepted before or after the command.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from collector import config as cconfig, output, pipeline, regional_page
from collector.checks import run_checks
from collector.settings import PERIODS
from kit.definitions import CELL_KEYS
from kit.errors import ConfigError, LinewatchError, os_error_line
from kit.files import write_atomic


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
        import numpy  # noqa: F401  (deferred: only to know it is there; the statistics load it)
    except ImportError:
        click.echo("linewatch-collector: the regional statistics need numpy, which is not "
                   f"installed; install it with: {sys.executable} -m pip install numpy", err=True)
        sys.exit(1)


def _by(value: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in keys if k not in CELL_KEYS]
    if bad or not keys or len(set(keys)) != len(keys):
        raise click.BadParameter(f"expected a comma-separated list of {', '.join(CELL_KEYS)}, "
                                 f"got {value!r}", param_hint="--by")
    return keys


def _window(since: str, until: str | None, now: float) -> tuple[float, float]:
    try:
        return pipeline.window(since, until, now)
    except pipeline.EmptyWindow as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from exc


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _aggregate(cfg: cconfig.CollectorConfig, since: str, until: str | None, by: str, period: str,
               stores: tuple[str, ...], cache: str) -> dict:
    """The cells of the command's window, or its failure as one line and exit 1."""
    keys = _by(by)
    now = time.time()
    start, end = _window(since, until, now)
    return _run(lambda: pipeline.aggregate(cfg, start, end, keys, period, stores, now, cache,
                                           warn=_warn))


def _common(f):
    f = click.option("--config", "config_path", metavar="PATH", help="Collector config (TOML).")(f)
    f = click.option("--cache", type=click.Choice(("use", "refresh", "off")), default="use",
                     show_default=True, help="InfluxDB's closed days from the local cache; "
                     "refresh: ask the server for everything again.")(f)
    f = click.option("--store", "stores", multiple=True, metavar="FILE",
                     help="An agent's store file to read too (repeatable).")(f)
    f = click.option("--period", type=click.Choice(PERIODS), default="all",
                     show_default=True, help="Cells per whole window, or per day/week/month.")(f)
    f = click.option("--by", "by", default="region,isp", show_default=True,
                     help=f"Cell keys: {', '.join(CELL_KEYS)}.")(f)
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
    cfg = _config(ctx, config_path)
    _need_numpy()
    result = _aggregate(cfg, since, until, by, period, stores, cache)
    if fmt == "table":
        click.echo(output.to_table(result), nl=False)
        return
    click.echo(output.to_json(result) if fmt == "json" else output.to_csv(result), nl=False)
    # Scripts read stdout; what was read and the data-quality counts go to stderr.
    click.echo("read: " + "; ".join(result.get("sources", ())), err=True)
    click.echo("data quality: " + "; ".join(output.quality_lines(result["data_quality"])), err=True)


@main.command("interference")
@click.option("--config", "config_path", metavar="PATH", help="Collector config (TOML).")
@click.option("--store", "stores", multiple=True, metavar="FILE",
              help="An agent's store file to read too (repeatable).")
@click.option("--until", default=None, help="Window end: a duration back from now or a date "
              "(default: now).")
@click.option("--since", default="30d", show_default=True,
              help="Window start: a duration back (30d, 12h, 2w) or a date.")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table",
              show_default=True)
@click.option("--ooni", "ooni_path", metavar="FILE", help="Also write each site check (of "
              "cells at or over the floor) as one line of OONI-style web_connectivity JSON.")
@click.pass_context
def interference_cmd(ctx, config_path, stores, until, since, fmt, ooni_path):
    """Sites and VPN servers blocked while lines were up, per region x ISP x target, with the
    share of lines that found each blocked (95 % interval), how, and regional events."""
    cfg = _config(ctx, config_path)
    start, end = _window(since, until, time.time())

    def work() -> dict:
        if not ooni_path:
            return pipeline.interference(cfg, start, end, stores, warn=_warn)
        # a new file of its own beside the target (0640 whatever was there), renamed into place
        # once whole: a failure leaves no half export, a link at the name is never written
        # through
        target = Path(ooni_path)
        part = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                result = pipeline.interference(cfg, start, end, stores,
                                               ooni=lambda t: f.write(t + "\n"), warn=_warn)
                f.flush()
                os.fsync(f.fileno())
            os.replace(part, target)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return result
    result = _run(work)
    if fmt == "json":
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(output.interference_table(result), nl=False)
    click.echo("read: " + "; ".join(result.get("sources", ())), err=True)
    click.echo("data quality: " + "; ".join(output.quality_lines(result["data_quality"])), err=True)
    if ooni_path:
        click.echo(f"wrote {result['ooni_measurements']:,} measurements to {ooni_path}", err=True)


@main.command("report")
@_common
@click.option("--out", required=True, type=click.Path(dir_okay=False, writable=True),
              help="The HTML file to write.")
@click.option("--title", default="", help="The page's title.")
@click.pass_context
def report_cmd(ctx, cache, config_path, stores, period, by, until, since, out, title):
    """One self-contained HTML page to publish: tables, charts, events, method."""
    cfg = _config(ctx, config_path)
    _need_numpy()
    result = _aggregate(cfg, since, until, by, period, stores, cache)
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
            n = pipeline.write_back(cfg, time.time(), warn=_warn)
            click.echo(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} wrote {n} regional points")
        except (LinewatchError, ValueError) as exc:
            # One failed run never stops the schedule; the next run tries again.
            click.echo(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} run failed: {exc}", err=True)
            if once:
                raise click.ClickException(str(exc)) from exc

    if once:
        job()
        return
    # deferred: APScheduler costs its import only to the long-running `run`
    from apscheduler.schedulers.blocking import BlockingScheduler

    # Ctrl-C stops it even when a shell started it in the background (which ignores SIGINT in
    # its children), and SIGTERM (systemd's stop) stops it the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop)
    sched = BlockingScheduler(timezone="UTC")
    sched.add_job(job, "interval", minutes=cfg.collector.run_every_min, coalesce=True,
                  max_instances=1, misfire_grace_time=300, next_run_time=datetime.now(UTC))
    click.echo(f"linewatch-collector: every {cfg.collector.run_every_min} min, "
               f"{cfg.collector.run_period} cells over the last {cfg.collector.run_since}")
    try:
        sched.start()
    except (KeyboardInterrupt, SystemExit):
        pass


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


@main.command("check")
@click.option("--config", "config_path", metavar="PATH", help="Collector config (TOML).")
@click.option("--store", "stores", multiple=True, metavar="FILE", help="A store file to check too.")
@click.pass_context
def check_cmd(ctx, config_path, stores):
    """Verify the sources: InfluxDB answers and holds agents' data; store files are readable."""
    cfg = _config(ctx, config_path)
    rows = run_checks(cfg, stores, time.time())
    width = max(len(r[1]) for r in rows)
    for status, name, detail in rows:
        click.echo(f"{status:<5} {name.ljust(width)}  {detail}")
    if any(r[0] == "FAIL" for r in rows):
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
