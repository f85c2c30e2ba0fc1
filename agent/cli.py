"""The ``linewatch`` command line. Commands stay thin: parse, call, print.

Human output is a table; ``--json`` output is stable for scripts (field names are a contract).
Exit codes: 0 fine, 1 a check or command failed, 2 bad configuration or usage.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from agent import __version__
from kit import definitions
from kit.errors import ConfigError, LinewatchError, os_error_line
from kit.secret import redact_value
from agent.status import dns_row, episode_json, iso, ping_row
from kit.words import plural, thin_watch

config_option = click.option(
    "--config", "config_path", metavar="PATH", envvar=None,
    help="Config file (default: $LINEWATCH_CONFIG, else the platform config dir).")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


def _load(config_path):
    from agent import config

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
                import traceback

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
    from agent.probes.registry import check_method_available
    from agent.runner import Agent

    import psutil

    psutil.PROCFS_PATH = cfg.agent.procfs  # the host root the agent reads (as --path.procfs)
    from agent.lock import AgentLock, AgentRunning

    try:
        lock = AgentLock(cfg.state_dir).acquire()
    except AgentRunning as exc:
        _fail(str(exc))
    try:
        check_method_available(cfg)
        agent = Agent(cfg, lock=lock)
    except LinewatchError as exc:
        lock.release()
        _fail(str(exc))
    from agent import config

    try:
        agent.run(load_config=lambda: config.load(config_path))  # SIGHUP reads the same file again
    finally:
        lock.release()


# -- probe --------------------------------------------------------------------------------------

@main.command()
@config_option
@json_option
def probe(config_path, as_json):
    """Run one probe round now and print it (nothing is stored)."""
    cfg = _load(config_path)
    from agent.clock import SystemClock
    from agent.round import Prober
    from agent.probes.registry import real_probes
    from agent.jobs.context import base_tags

    prober = Prober(cfg, real_probes(cfg), SystemClock(), base_tags(cfg, cfg.agent.id or "-"))
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
        return
    click.echo(f"line: {rnd.status}" + (f" ({rnd.cause})" if rnd.cause else "")
               + f"   round took {rnd.duration_s:.2f} s")
    _print_targets(out["targets"], out["dns"])
    for e in rnd.errors:
        click.echo(f"error: {e}")


def _print_targets(targets, dns) -> None:
    rows = [[t["role"] or "", t["target"], t["method"], f"{t['received']}/{t['sent']}",
             _num(t["loss_pct"], "%"), _num(t["rtt_avg_ms"], " ms"), _num(t["jitter_ms"], " ms")]
            for t in targets]
    _table(["role", "target", "method", "replies", "loss", "rtt avg", "jitter"], rows)
    if dns:
        click.echo("")
        _table(["name", "server", "resolved", "time", "error"],
               [[d["name"], d["server"] or "", "yes" if d["success"] else "NO", _num(d["rtt_ms"], " ms"),
                 d["error"] or ""] for d in dns])


# -- status -------------------------------------------------------------------------------------

@main.command()
@config_option
@json_option
def status(config_path, as_json):
    """What the agent sees now: targets, the episode in progress, 24 h availability, the store."""
    cfg = _load(config_path)
    from agent.status import collect

    try:
        st = collect(cfg)
    except LinewatchError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(st, indent=2, ensure_ascii=False))
        return
    a = st["agent"]
    click.echo(f"agent {a['id'] or '(no id yet)'}  {a.get('region') or ''} {a.get('city') or ''} "
               f"{a.get('isp') or ''}".rstrip())
    running = {True: f"agent running (pid {st['pid']})" if st["pid"] else "agent running",
               False: "agent NOT running",
               None: "agent state unknown (cannot read its lock file)"}[st["running"]]
    lr = st["last_round"]
    if lr is None:
        click.echo(f"{running}; no round recorded yet"
                   + ("" if st["running"] else ": start it with `linewatch run`"))
    else:
        click.echo(f"{running}; last round {lr['age_s']:.0f} s ago: line {lr['status']}"
                   + (f" ({lr['cause']})" if lr.get("cause") else ""))
    trouble = st["store_trouble"]
    if trouble:
        click.echo(f"WARNING: store cannot be written since {_when(trouble['since'])}: "
                   f"{trouble['reason']} (rounds wait in memory; free some space)")
    rec = st["store_recovered"]
    if rec:
        from agent.salvage import salvage_summary

        click.echo(f"the store was damaged and replaced on {_when(rec['time'])}: the old file is "
                   f"{rec['moved_to']}; {salvage_summary(rec.get('tables') or {})[0]}")
    if st["targets"] or st["dns"]:
        click.echo("")
        _print_targets(st["targets"], st["dns"])
    pw = st["power"]
    parts = []
    for r in pw["sensors"]:
        charge = f" {r['charge_pct']:.0f} %" if r.get("charge_pct") is not None else ""
        parts.append(f"{r['source']}{charge}")
    label = {"mains": "mains", "battery": "ON BATTERY", "ups": "ON UPS BATTERY",
             "unknown": "no power sensor"}[pw["state"]]
    click.echo(f"power: {label}" + (f" ({', '.join(parts)})" if parts else ""))
    for source, message in pw["warnings"].items():
        click.echo(f"WARNING: {source} sensor: {message}")
    if pw["host_down_pending_time_sync"]:
        click.echo("the host rebooted without a clean exit: the power cut is recorded once the clock syncs")
    click.echo("")
    if st["episodes_in_progress"]:
        for ep in st["episodes_in_progress"]:
            click.echo(f"IN PROGRESS: {ep['type']} episode, cause {ep['cause']}, since {ep['start']}"
                       f" ({_dur(ep['duration_s'])})")
    else:
        click.echo("no outage in progress")
    av = st["availability_24h_pct"]
    warn = thin_watch(st["watched_h_24h"]) if av is not None else None
    thin = f"; {warn}" if warn else ""
    click.echo(f"availability, last 24 h: {'n/a' if av is None else f'{av:.2f} %'}"
               f"  ({plural(st['rounds_24h'], 'round')}, {_dur(st['outage_s_24h'])} in outages{thin})")
    s = st["store"]
    if s is None:
        click.echo(f"store: none yet in {cfg.state_dir}")
    else:
        fw = (f"{s['backlog_rows']} not yet forwarded" if st["forward"]["enabled"]
              else "forwarding off")
        click.echo(f"store: {s['path']}  {s['bytes'] / 1e6:.1f} MB, {plural(s['rows'], 'row')}, {fw}")
    _print_forward(st["forward"])
    _print_speedtest(st["speedtest"])


def _print_speedtest(sp: dict) -> None:
    if not sp["enabled"]:
        click.echo("speed tests: off (speedtest.enabled = false)")
        return
    last = sp["last"]
    if last is None:
        click.echo("speed tests: none yet")
    elif last["status"] == "ok":
        click.echo(f"last speed test {last['time'][:16].replace('T', ' ')} UTC: down "
                   f"{last['download_bps'] / 1e6:.1f} Mbit/s, up {last['upload_bps'] / 1e6:.1f} Mbit/s, "
                   f"ping {_num(last.get('ping_ms'), ' ms')} ({last.get('server_name') or sp['server']})")
    else:
        click.echo(f"last speed test {last['time'][:16].replace('T', ' ')} UTC FAILED: {last.get('error')}")
    nxt = f"next test {_when(sp['next'])}" if sp["next"] else "next test not planned yet (the agent plans it)"
    click.echo(f"  {nxt}; data used this month {sp['month_used_mb']:.0f} of "
               f"{sp['monthly_budget_mb']:.0f} MB")
    skip = sp["last_skip"]
    if skip and (last is None or skip["time"] > last["time"]):
        click.echo(f"  last skipped {skip['time'][:16].replace('T', ' ')} UTC: {skip.get('error_detail')}")


def _print_forward(fw: dict) -> None:
    if not fw["enabled"]:
        click.echo("forwarding: off (influx.url is not set; the local store keeps everything)")
        return
    server = fw.get("server") or {}
    where = fw["url"] + (f" ({server['target']}, version {server.get('version') or 'not given'})"
                         if server.get("target") else "")
    label = {"ok": "ok", "idle": "not tried yet", "retrying": "RETRYING", "stopped": "STOPPED"}[fw["state"]]
    click.echo(f"forwarding to {where}: {label}")
    age = fw["oldest_unsent_age_s"]
    click.echo(f"  backlog: {fw['backlog_rows']} rows" + (f", oldest {_dur(age)} old" if age else "")
               + (f"; last success {fw['last_success'][:19].replace('T', ' ')} UTC"
                  if fw.get("last_success") else ""))
    if fw["stopped_reason"]:
        click.echo(f"  stopped: {fw['stopped_reason']}")
        click.echo("  fix the token, bucket or URL (`linewatch check` says which), then restart the "
                   "agent or run `linewatch push`")
    err = fw.get("last_error")
    if err and fw["state"] != "ok":
        code = f"HTTP {err['status']}" if err.get("status") else "no answer"
        click.echo(f"  last error {err['time'][:19].replace('T', ' ')} UTC: {code}: {err['message']}")
        if fw.get("next_try"):
            click.echo(f"  next try {fw['next_try'][:19].replace('T', ' ')} UTC")
    if fw["quarantined_rows"]:
        click.echo(f"  {fw['quarantined_rows']} row(s) refused by the server and set aside"
                   " (`linewatch push --requeue` sends them again):")
        for q in fw["quarantined"][:3]:
            click.echo(f"    {q['time'][:19].replace('T', ' ')}  {q['status'] or 'local'}: {q['message']}")


# -- push ---------------------------------------------------------------------------------------

@main.command()
@config_option
@json_option
@click.option("--requeue", is_flag=True,
              help="Send the rows the server refused earlier (quarantined) again.")
def push(config_path, as_json, requeue):
    """Forward the backlog to InfluxDB now, with a progress bar."""
    import time

    cfg = _load(config_path)
    if not cfg.influx.url:
        _fail("influx.url is not set: nothing to forward to", 2)
    from agent.clock import SystemClock
    from agent.forward import PushLock, describe, make_forwarder
    from agent.store import Store

    try:
        store = Store.open(cfg.state_dir, repair=False)  # only `run` repairs a damaged store
    except LinewatchError as exc:
        _fail(str(exc))
    lock = PushLock(cfg.state_dir)
    try:
        if not lock.acquire(wait=False):
            click.echo("the running agent is forwarding; waiting for it to finish its batch", err=True)
            lock.acquire(wait=True)
        requeued = store.requeue_quarantined() if requeue else 0
        try:
            fw = make_forwarder(cfg, store, SystemClock())
        except ConfigError as exc:
            _fail(str(exc), 2)
        rows, _ = store.backlog()
        t0 = time.monotonic()
        show = not as_json and sys.stderr.isatty()
        if show:
            with click.progressbar(length=rows, label="forwarding", file=sys.stderr,
                                   show_pos=True) as bar:
                rep = fw.push(progress=bar.update)
        else:
            rep = fw.push()
        secs = time.monotonic() - t0
        fw.sink.close()
        left, oldest = store.backlog()
        state = fw.state
    finally:
        lock.release()
        store.close()
    out = {"outcome": rep.outcome, "sent": rep.sent, "quarantined": rep.quarantined,
           "requeued": requeued, "requests": rep.requests, "seconds": round(secs, 3),
           "rows_per_s": round(rep.sent / secs) if secs > 0 and rep.sent else None,
           "backlog_rows": left, "oldest_unsent": iso(oldest) if oldest else None,
           "server": state.server or None,
           "error": None if rep.outcome in ("done", "empty") or rep.answer is None else {
               "status": rep.answer.status, "message": rep.answer.message},
           "stopped_reason": state.halted}
    if as_json:
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        if requeued:
            click.echo(f"requeued {plural(requeued, 'quarantined row')}")
        if rep.outcome == "empty":
            click.echo("nothing to forward: the backlog is empty")
        else:
            rate = f" ({out['rows_per_s']} rows/s)" if out["rows_per_s"] else ""
            click.echo(f"sent {plural(rep.sent, 'row')} in {secs:.1f} s{rate} with "
                       f"{plural(rep.requests, 'request')}")
        if rep.quarantined:
            click.echo(f"{plural(rep.quarantined, 'row')} refused by the server and set aside "
                       "(see `linewatch status`)")
        if rep.outcome == "retry":
            click.echo(f"stopped: {describe(rep.answer)}; {plural(left, 'row')} "
                       f"{'stays' if left == 1 else 'stay'} in the store and the agent keeps trying",
                       err=True)
        elif rep.outcome == "halt":
            click.echo(f"stopped: {state.halted}", err=True)
    sys.exit(0 if rep.outcome in ("done", "empty") else 1)


# -- speedtest ----------------------------------------------------------------------------------

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
    import time

    from kit.errors import SourceError
    from kit.files import write_atomic
    from agent.store import DB_NAME
    from agent.report import line, page
    from kit import configkit

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
    from agent import lock
    from agent.store import Store

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


@main.command(name="speedtest")
@config_option
@json_option
@click.option("--force", is_flag=True, help="Run even if it would cross the monthly data budget.")
def speedtest_cmd(config_path, as_json, force):
    """Run one speed test now and record it (skipped when over the data budget)."""
    cfg = _load(config_path)
    logging.basicConfig(level="WARNING", stream=sys.stderr, format="linewatch: %(message)s")
    os.umask(0o077)
    from agent.runner import Agent
    from agent.store import Store

    try:
        # Beside a running agent, as a second writer; only `run` repairs a damaged store.
        agent = Agent(cfg, store=Store.open(cfg.state_dir, repair=False))
    except LinewatchError as exc:
        _fail(str(exc))
    if force:
        used, est = agent.speedtests.budget(agent.clock.now())
        budget = cfg.speedtest.monthly_budget_mb * 1e6
        if used + est > budget:
            click.echo(f"warning: --force: this test may take the month past its data budget "
                       f"({used / 1e6:.0f} MB used of {budget / 1e6:.0f} MB, a test moves about "
                       f"{est / 1e6:.0f} MB)", err=True)
    show = not as_json and sys.stderr.isatty()

    def progress(phase, done, total):
        if show:
            click.echo(f"\r{phase}: {done}/{total} requests   ", nl=False, err=True)
    if show:
        click.echo("measuring (about 30 s) ...", err=True)
    try:
        s = agent.speedtests.measure(force=force, progress=progress)
    finally:
        agent.store.close()
    if show:
        click.echo("", err=True)
    out = {"time": iso(s.time), **s.tags, **s.fields}
    if as_json:
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        f = s.fields
        if f["status"] == "ok":
            click.echo(f"download {f['download_bps'] / 1e6:.2f} Mbit/s   upload {f['upload_bps'] / 1e6:.2f} Mbit/s"
                       f"   ping {_num(f.get('ping_ms'), ' ms')}")
            click.echo(f"server: {f.get('server_name')} ({f.get('server_sponsor')})   moved "
                       f"{(f['bytes_received'] + f['bytes_sent']) / 1e6:.1f} MB in {f['duration_s']:.1f} s")
        elif f["status"] == "skipped":
            click.echo(f"skipped: {f.get('error_detail')}")
        else:
            click.echo(f"failed: {f['error']}: {f.get('error_detail', '')}")
    sys.exit(0 if s.fields["status"] == "ok" else 1)


# -- outages ------------------------------------------------------------------------------------

@main.command()
@config_option
@click.option("--since", default="7d", show_default=True,
              help="How far back: 30m, 12h, 7d, 4w, or a date (2026-11-01).")
@click.option("--type", "types", type=click.Choice(["connectivity", "power", "degraded", "all"]),
              default=None, help="Only this type (default: connectivity and power outages).")
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="CSV output.")
def outages(config_path, since, types, as_json, as_csv):
    """Outage episodes: type, cause, start, end, duration, sustained or momentary."""
    if as_json and as_csv:
        _fail("choose one of --json and --csv", 2)
    cfg = _load(config_path)
    try:
        since_t = parse_since(since, datetime.now(timezone.utc))
    except ValueError as exc:
        _fail(f"--since: {exc}", 2)
    from agent import lock
    from kit.errors import StoreMissing
    from agent.store import Store

    try:
        store = Store.open_readonly(cfg.state_dir, live=lock.holder(cfg.state_dir).running is not False)
    except StoreMissing:
        eps = []  # nothing recorded yet: an empty list, like a quiet week
    else:
        try:
            eps = store.episodes(since=since_t)
        finally:
            store.close()
    wanted = {"all": None, None: {"connectivity", "power"}}.get(types, {types})
    rows = [episode_json(e) for e in eps if wanted is None or e.type in wanted]
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
    _table(["type", "cause", "start (UTC)", "end (UTC)", "duration", "kind"],
           [[r["type"], r["cause"] + (f" ({r['source']})" if r.get("source") else ""),
             r["start"][:19].replace("T", " "),
             (r["end"] or "in progress")[:19].replace("T", " "), _dur(r["duration_s"]),
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
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


# -- check --------------------------------------------------------------------------------------

@main.command()
@config_option
@json_option
def check(config_path, as_json):
    """What works and what does not, each failure with its fix."""
    cfg = _load(config_path)
    from agent.checks import run_checks

    results = run_checks(cfg)
    worst = "ok"
    for r in results:
        if r["result"] == "fail":
            worst = "fail"
        elif r["result"] == "warn" and worst == "ok":
            worst = "warn"
    if as_json:
        click.echo(json.dumps({"result": worst, "checks": results}, indent=2, ensure_ascii=False))
    else:
        for r in results:
            mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}[r["result"]]
            click.echo(f"[{mark}] {r['name']}: {r['detail']}")
            if r.get("fix"):
                for line in r["fix"].splitlines():
                    click.echo(f"         fix: {line}")
    sys.exit(1 if worst == "fail" else 0)


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
    from agent import config
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
        from agent import lock

        held = lock.holder(config.finish(config.parse(text, str(path))).state_dir)
        if held.running and held.pid:
            click.echo(f"the agent running now (pid {held.pid}) picks it up with `systemctl reload "
                       f"linewatch-agent` (as a service) or `kill -HUP {held.pid}` (started by hand)")
        else:
            click.echo("a running agent picks it up with `systemctl reload linewatch-agent` (as a "
                       "service) or `kill -HUP <pid>` (started by hand)")


def _init_label(key: str) -> str:
    from agent import config

    return {
        "region": "Region (a name such as Punjab or KPK, or a code; Enter to skip)",
        "city": "City (Enter to skip)",
        "isp": 'Internet provider ("auto": the name speed tests report; Enter to skip)',
        "access": "Access type (" + ", ".join(definitions.ACCESS_TYPES) + "; Enter to skip)",
    }[key]


def _init_answer(key: str, text: str) -> tuple[str, bool]:
    """(the value for ``agent.<key>``, whether to confirm it) from what was typed; ValueError
    says what is wrong, as a sentence for the user."""
    from agent import config

    if key == "region":
        return definitions.region_code(text)
    value = definitions.access_type(text) if key == "access" else text.strip()
    problem = config.check_value("agent", key, value) if value else None
    if problem:
        raise ValueError(f"{redact_value(text.strip())!r}: {problem}")
    return value, False


def _init_flag(key: str, text: str) -> str:
    """A flag's value; a city given as the region is refused, since a script cannot confirm it."""
    from agent import config

    value, confirm = _init_answer(key, text)
    if confirm:
        name = definitions.PK_REGIONS[value]
        raise ValueError(f"{text.strip()} is a city, not a region; if it is the one in {name}, "
                         f"use --region {value} (or {name})")
    return value


def _init_ask(keys: list[str]) -> dict[str, str]:
    """Ask for each key at its own prompt and ask again until the answer is valid (Enter skips)."""
    from agent import config

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


# -- helpers ------------------------------------------------------------------------------------

def _num(v, unit: str) -> str:
    """A number for a table: sub-10 values (LAN RTTs are often 0.05 ms) keep two decimals."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}{unit}" if abs(v) < 10 else f"{v:.1f}{unit}"
    return f"{v}{unit}"


def _when(t: str | None) -> str:
    """An ISO time as "2026-11-23 10:02 UTC"."""
    return (t or "")[:16].replace("T", " ") + " UTC" if t else "?"


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _table(headers: list[str], rows: list[list]) -> None:
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, r in enumerate(cells):
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            click.echo("  ".join("-" * w for w in widths))


if __name__ == "__main__":  # pragma: no cover
    main()
