"""The ``linewatch`` command line. Commands stay thin: parse, call, print.

Human output is a table (:mod:`agent.show`); ``--json`` output is stable for scripts (field names
are a contract). Exit codes: 0 fine, 1 a check or command failed, 2 bad configuration or usage.

The commands that only read the store (``status``, ``outages``, ``init``) load no probe, no job
and no HTTP client: those imports are deferred to the commands that measure or send, each with a
comment saying so.

Longer than the house's 400 lines: one command group of many thin commands (their output is in
agent/show.py).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import sys
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from agent import __version__, config, lock, show, status as status_mod
from agent.clock import SystemClock
from agent.status import dns_row, iso, ping_row
from kit import configkit, definitions
from kit.errors import ConfigError, LinewatchError, SourceError, os_error_line
from kit.secret import redact_value
from kit.words import plural, thin_watch

config_option = click.option(
    "--config", "config_path", metavar="PATH", envvar=None,
    help="Config file (default: $LINEWATCH_CONFIG, else the platform config dir).")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


def _load(config_path):
    try:
        return config.load(config_path)
    except ConfigError as exc:
        click.echo(f"linewatch: {exc}", err=True)
        sys.exit(2)


def _fail(message: str, code: int = 1):
    click.echo(f"linewatch: {message}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Every command's OS and store errors end as one line and exit 1, never a traceback
    (``linewatch --debug COMMAND`` shows the traceback as well)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader went away (`linewatch status | head`): nothing to say, and nowhere to.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(1)
        except (OSError, LinewatchError) as exc:
            if ctx.params.get("debug"):
                traceback.print_exc()
            text = os_error_line(exc) if isinstance(exc, OSError) else str(exc)
            click.echo(f"linewatch: {text}", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="linewatch")
@click.option("--debug", is_flag=True, help="Show the Python traceback of an error as well.")
def main(debug) -> None:
    """linewatch: measure your internet line and power, record outages and their causes."""


# -- run ----------------------------------------------------------------------------------------

@main.command()
@config_option
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def run(config_path, log_level):
    """Run the agent in the foreground (SIGTERM or Ctrl-C stops it cleanly)."""
    cfg = _load(config_path)
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.umask(0o077)  # everything the agent writes is private to its user
    # deferred: the jobs, the probes and psutil (about 1.7 MB, 50 ms) load for the agent only
    import psutil

    from agent.probes.registry import check_method_available
    from agent.runner import Agent

    psutil.PROCFS_PATH = cfg.agent.procfs  # the host root the agent reads (as --path.procfs)
    try:
        held = lock.AgentLock(cfg.state_dir).acquire()
    except lock.AgentRunning as exc:
        _fail(str(exc))
    try:
        check_method_available(cfg)
        agent = Agent(cfg, lock=held)
    except LinewatchError as exc:
        held.release()
        _fail(str(exc))
    try:
        agent.run(load_config=lambda: config.load(config_path))  # SIGHUP reads the same file again
    finally:
        held.release()


# -- probe --------------------------------------------------------------------------------------

@main.command()
@config_option
@json_option
def probe(config_path, as_json):
    """Run one probe round now and print it (nothing is stored)."""
    cfg = _load(config_path)
    # deferred: the prober and the probes (about 0.5 MB) load for the commands that measure
    from agent.jobs.context import base_tags
    from agent.probes.registry import round_probes
    from agent.round import Prober

    clock = SystemClock()
    prober = Prober(cfg, round_probes(cfg, clock), clock, base_tags(cfg, cfg.agent.id or "-"))
    try:
        rnd = prober.run()
    finally:
        prober.close()
    out = {
        "status": rnd.status, "cause": rnd.cause, "duration_s": round(rnd.duration_s, 3),
        "targets": [ping_row(s) for s in rnd.samples if s.measurement == "ping"],
        "dns": [dns_row(s) for s in rnd.samples if s.measurement == "dns"],
        "errors": list(rnd.errors),
    }
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        show.probe({**out, "duration_s": rnd.duration_s})


@main.command()
@config_option
@json_option
def services(config_path, as_json):
    """Check the sites and VPN endpoints of [services] now and print how each went (nothing is
    stored). Exit 1 when any check failed."""
    cfg = _load(config_path)
    # deferred: the checks (and OpenSSL) load only for the command that runs them
    from agent.jobs.services import configured_targets
    from agent.probes.dns import system_servers
    from agent.probes.services import Checker, check_all, wireguard_keys

    sv = cfg.services
    targets = configured_targets(sv)
    for t in targets:
        if t.kind == "wireguard":
            try:
                wireguard_keys(t)
            except ValueError as exc:
                _fail(str(ConfigError(cfg.source, "services.vpn",
                                      f"the keys for {t.target}: {exc}")), 2)
    servers = list(cfg.probe.dns_servers)
    try:
        checker = Checker(system_servers=lambda: servers or system_servers(),
                          resolver=sv.resolver, control_sni=sv.control_sni, ca_file=sv.ca_file,
                          timeout_s=sv.timeout_s, clock=SystemClock(), config_file=cfg.source,
                          throttle_bytes=sv.throttle_bytes)
    except ConfigError as exc:
        _fail(str(exc), 2)
    rows = [{"time": iso(s.time), **s.tags, **s.fields}
            for s in check_all(checker, targets, parallel=8)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        show.services(rows)
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


# -- status -------------------------------------------------------------------------------------

@main.command()
@config_option
@json_option
def status(config_path, as_json):
    """What the agent sees now: targets, the episode in progress, 24 h availability, the store."""
    cfg = _load(config_path)
    try:
        st = status_mod.collect(cfg)
    except LinewatchError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(st, indent=2, ensure_ascii=False))
    else:
        show.status(st, cfg.state_dir)


# -- push ---------------------------------------------------------------------------------------

@main.command()
@config_option
@json_option
@click.option("--requeue", is_flag=True,
              help="Send the rows the server refused earlier (quarantined) again.")
def push(config_path, as_json, requeue):
    """Forward the backlog to InfluxDB now, with a progress bar."""
    cfg = _load(config_path)
    if not cfg.influx.url:
        _fail("influx.url is not set: nothing to forward to", 2)
    # deferred: the forwarder (about 0.7 MB, 40 ms) loads only to push
    from agent.jobs.push import push_now

    def bar(rows: int):
        return click.progressbar(length=rows, label="forwarding", file=sys.stderr, show_pos=True)

    def waiting() -> None:
        click.echo("the running agent is forwarding; waiting for it to finish its batch", err=True)

    try:
        done = push_now(cfg, requeue=requeue, waiting=waiting,
                        bar=bar if not as_json and sys.stderr.isatty() else None)
    except ConfigError as exc:
        _fail(str(exc), 2)
    if as_json:
        click.echo(json.dumps(done.to_json(), indent=2, ensure_ascii=False))
    else:
        show.pushed(done)
    sys.exit(0 if done.report.outcome in ("done", "empty") else 1)


# -- report -------------------------------------------------------------------------------------

@main.command()
@config_option
@click.option("--since", default="7d", show_default=True,
              help="Window start: a duration back (7d, 24h, 2w) or a date (2026-11-01).")
@click.option("--until", default=None, help="Window end (default: now).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The HTML file to write.")
@click.option("--timezone", "tz", default="Asia/Karachi", show_default=True,
              help="Time zone of the page's times and working hours.")
@click.option("--work-hours", default="09:00-18:00", show_default=True,
              help="Working hours (local), for the minutes lost within them; a night shift "
                   "crosses midnight: 20:00-05:00.")
def report(config_path, since, until, out, tz, work_hours):
    """Write one self-contained HTML page about this line (outages, power cuts, latency, speed)
    to attach to a complaint to your ISP. Made from the local store; nothing is sent anywhere."""
    # deferred: the line report (its figures, its page, the store-file reader) and kit.files
    # (tempfile, bz2, lzma) load for this command only
    from agent.report import line, page
    from agent.store import DB_NAME, Store
    from kit.files import write_atomic

    cfg = _load(config_path)
    now = time.time()
    try:
        end = configkit.parse_when(until, now) if until else now
        start = configkit.parse_when(since, end)
    except ValueError as exc:
        _fail(str(exc), 2)
    try:
        work = configkit.parse_work_hours(work_hours, overnight=True)
    except ValueError as exc:
        _fail(f"--work-hours {work_hours}: {exc}", 2)
    try:
        configkit.check_zone(tz)
    except ValueError as exc:
        _fail(f"--timezone {tz}: {exc}", 2)
    if start >= end:
        _fail("the window is empty (--since is not before --until)", 2)
    # The store is checked the way every read-only command checks it: a damaged one is named
    # with what to do, and nothing beside it is created or changed.
    Store.open_readonly(cfg.state_dir, live=lock.holder(cfg.state_dir).running is not False).close()
    try:
        data = line.summarise(cfg.state_dir / DB_NAME, start, end, now, tz, work,
                              setup=line.setup_of(cfg))
    except SourceError as exc:
        _fail(f"{exc} (has the agent run with this config?)" if "not a linewatch store" in str(exc)
              else str(exc))
    # The page describes one person's line and working day: readable by its owner only (0600).
    write_atomic(Path(out), page.line_report(data), 0o600)
    avail = data["internet_availability"]
    thin = thin_watch(data["observed_h"]) if avail is not None else None
    click.echo(f"wrote {out}: {data['observed_h']:.1f} h watched, "
               + (f"internet available {avail * 100:.3f} %" + (f" ({thin})" if thin else "") + ", "
                  if avail is not None else "")
               + f"{plural(data['outages'], 'outage')}, {plural(data['power_cuts'], 'power cut')}")
    if data["tags_changed"]:
        click.echo("note: the agent's tags changed inside the window; the page names the line as "
                   "configured now and lists the tags the rows carried")


# -- speedtest ----------------------------------------------------------------------------------

@main.command(name="speedtest")
@config_option
@json_option
@click.option("--force", is_flag=True, help="Run even if it would cross the monthly data budget.")
def speedtest_cmd(config_path, as_json, force):
    """Run one speed test now and record it (skipped when over the data budget)."""
    cfg = _load(config_path)
    logging.basicConfig(level="WARNING", stream=sys.stderr, format="linewatch: %(message)s")
    os.umask(0o077)
    # deferred: the speed-test job (about 0.3 MB) loads only to run a test
    from agent.jobs.speedtests import standalone

    try:
        job = standalone(cfg)  # beside a running agent, as a second writer
    except LinewatchError as exc:
        _fail(str(exc))
    try:
        if force and (warning := job.over_budget(job.clock.now())):
            click.echo(f"warning: --force: {warning}", err=True)
        shown = not as_json and sys.stderr.isatty()

        def progress(phase, done, total):
            if shown:
                click.echo(f"\r{phase}: {done}/{total} requests   ", nl=False, err=True)
        if shown:
            click.echo("measuring (about 30 s) ...", err=True)
        s = job.measure(force=force, progress=progress)
    finally:
        job.store.close()
    if shown:
        click.echo("", err=True)
    if as_json:
        click.echo(json.dumps({"time": iso(s.time), **s.tags, **s.fields}, indent=2, ensure_ascii=False))
    else:
        show.speedtest(s.fields)
    sys.exit(0 if s.fields["status"] == "ok" else 1)


# -- outages ------------------------------------------------------------------------------------

@main.command()
@config_option
@click.option("--since", default="7d", show_default=True,
              help="How far back: 30m, 12h, 7d, 4w, or a date (2026-11-01).")
@click.option("--type", "types", type=click.Choice(["connectivity", "power", "degraded",
                                                   "interference", "all"]),
              default=None, help="Only this type (default: connectivity and power outages).")
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="CSV output.")
def outages(config_path, since, types, as_json, as_csv):
    """Outage episodes: type, cause, start, end, duration, sustained or momentary."""
    if as_json and as_csv:
        _fail("choose one of --json and --csv", 2)
    cfg = _load(config_path)
    try:
        since_t = parse_since(since, datetime.now(UTC))
    except ValueError as exc:
        _fail(f"--since: {exc}", 2)
    wanted = {"all": None, None: {"connectivity", "power"}}.get(types, {types})
    rows = status_mod.episodes_since(cfg, since_t, wanted)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    cols = ["type", "cause", "start", "end", "duration_s", "sustained"]
    if as_csv:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        click.echo(buf.getvalue(), nl=False)
        return
    if not rows:
        click.echo(f"no episodes since {iso(since_t)}")
        return
    show.table(["type", "cause", "start (UTC)", "end (UTC)", "duration", "kind"],
               [[r["type"], r["cause"] + (f" ({r['source']})" if r.get("source") else "")
                 + (f" ({r['target']}: {r['how']})" if r.get("target") else ""),
                 r["start"][:19].replace("T", " "),
                 (r["end"] or "in progress")[:19].replace("T", " "), show.dur(r["duration_s"]),
                 "sustained" if r["sustained"] else "momentary"] for r in rows])


_SINCE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime) -> datetime:
    """``7d`` -> now minus 7 days; ``2026-11-01`` (UTC) or a full ISO time as given."""
    m = _SINCE.match(text.strip().lower())
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"expected a span such as 30m, 12h, 7d, 4w or an ISO date, got {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


# -- check --------------------------------------------------------------------------------------

@main.command()
@config_option
@json_option
def check(config_path, as_json):
    """What works and what does not, each failure with its fix."""
    cfg = _load(config_path)
    # deferred: the checks pull in every probe and the TLS stack (about 6.5 MB), for check only
    from agent.checks import run_checks, worst

    results = run_checks(cfg)
    result = worst(results)
    if as_json:
        click.echo(json.dumps({"result": result, "checks": results}, indent=2, ensure_ascii=False))
    else:
        show.checks(results)
    sys.exit(1 if result == "fail" else 0)


# -- alerts -------------------------------------------------------------------------------------

@main.group()
def alerts() -> None:
    """Alerts: send a test message to every channel, or list what the outbox holds."""


@alerts.command(name="test")
@config_option
@json_option
def alerts_test(config_path, as_json):
    """Send a test message to every channel of [[alerts.channels]] now, and say how each went.
    Exit 1 when any failed."""
    cfg = _load(config_path)
    if not cfg.alerts.channels:
        _fail(f"{cfg.source}: no [[alerts.channels]] to test", 2)
    # deferred: the channels and their HTTP, SMTP and D-Bus clients load for this command only
    from agent.alerts.channels import test_all

    rows = test_all(cfg)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        show.alert_tests(rows)
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


@alerts.command(name="list")
@config_option
@json_option
@click.option("--last", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="How many of the newest alerts to list.")
def alerts_list(config_path, as_json, last):
    """The alert outbox: per channel, how many alerts were sent, wait, were replaced, refused or
    expired, and the newest alerts with what the channel answered."""
    cfg = _load(config_path)
    out = status_mod.alert_outbox(cfg, last)
    if as_json:
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        show.alert_outbox(out)


# -- init ---------------------------------------------------------------------------------------

@main.command()
@config_option
@click.option("--region", help="Province or territory: a name (Punjab, KPK) or an ISO 3166-2 code (PK-PB).")
@click.option("--city", help="City or town.")
@click.option("--isp", help="Internet provider's name.")
@click.option("--access", help="Access type (fibre, dsl, cable, mobile, hotspot, ...).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(config_path, region, city, isp, access, force):
    """Write a commented config file; asks for region, city, ISP and access type."""
    # deferred: tempfile pulls in shutil, bz2 and lzma (0.6 MB), which the other commands never need
    from kit.files import write_atomic

    path, _ = config.resolve_path(config_path)
    if path.exists() and not force:
        _fail(f"{path} exists; use --force to overwrite it", 1)
    given = {"region": region, "city": city, "isp": isp, "access": access}
    chosen = {}
    for key, text in given.items():  # flags first: a bad one fails before any question
        if text is not None:
            try:
                chosen[key] = _init_flag(key, text)
            except ValueError as exc:
                _fail(f"--{key}: {exc}", 2)
    if sys.stdin.isatty():
        chosen.update(_init_ask([k for k, v in given.items() if v is None]))
    chosen = {k: v for k, v in chosen.items() if v}
    text = config.example_toml({"agent": chosen})
    try:
        config.parse(text, str(path))  # the answers are validated like any config
    except ConfigError as exc:
        _fail(str(exc), 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text, 0o600)  # a link planted at its name is replaced, never written through
    click.echo(f"wrote {path}")
    if sys.platform != "win32":  # no SIGHUP there
        held = lock.holder(config.finish(config.parse(text, str(path))).state_dir)
        if held.running and held.pid:
            click.echo(f"the agent running now (pid {held.pid}) picks it up with `systemctl reload "
                       f"linewatch-agent` (as a service) or `kill -HUP {held.pid}` (started by hand)")
        else:
            click.echo("a running agent picks it up with `systemctl reload linewatch-agent` (as a "
                       "service) or `kill -HUP <pid>` (started by hand)")


def _init_label(key: str) -> str:
    return {
        "region": "Region (a name such as Punjab or KPK, or a code; Enter to skip)",
        "city": "City (Enter to skip)",
        "isp": 'Internet provider ("auto": the name speed tests report; Enter to skip)',
        "access": "Access type (" + ", ".join(definitions.ACCESS_TYPES) + "; Enter to skip)",
    }[key]


def _init_answer(key: str, text: str) -> tuple[str, bool]:
    """(the value for ``agent.<key>``, whether to confirm it) from what was typed; ValueError
    says what is wrong, as a sentence for the user."""
    if key == "region":
        return definitions.region_code(text)
    value = definitions.access_type(text) if key == "access" else text.strip()
    problem = config.check_value("agent", key, value) if value else None
    if problem:
        raise ValueError(f"{redact_value(text.strip())!r}: {problem}")
    return value, False


def _init_flag(key: str, text: str) -> str:
    """A flag's value; a city given as the region is refused, since a script cannot confirm it."""
    value, confirm = _init_answer(key, text)
    if confirm:
        name = definitions.PK_REGIONS[value]
        raise ValueError(f"{text.strip()} is a city, not a region; if it is the one in {name}, "
                         f"use --region {value} (or {name})")
    return value


def _init_ask(keys: list[str]) -> dict[str, str]:
    """Ask for each key at its own prompt and ask again until the answer is valid (Enter skips)."""
    out: dict[str, str] = {}
    city = ""  # a city typed as the region is offered as the city
    for key in keys:
        if key == "region":
            click.echo("Regions: " + ", ".join(f"{k} {v}" for k, v in definitions.PK_REGIONS.items()))
        offered = city if key == "city" else ""
        label = "City" if offered else _init_label(key)
        while True:
            text = click.prompt(label, default=offered, show_default=bool(offered))
            try:
                value, confirm = _init_answer(key, text)
            except ValueError as exc:
                click.echo(f"  {exc}")
                continue
            if confirm:
                name = definitions.PK_REGIONS[value]
                if not click.confirm(f"  {text.strip()} is in {name} ({value}). Use {value}?",
                                     default=True):
                    continue
                city = text.strip()
            out[key] = value
            break
    return out


if __name__ == "__main__":  # pragma: no cover
    main()
