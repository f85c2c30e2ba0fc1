"""The command line's human output: tables and the lines of ``probe``, ``status``, ``push``,
``speedtest`` and ``check``. Each function prints one command's result, given as the dict (or
record) the command's ``--json`` prints; nothing here reads a file or the network.
"""

from __future__ import annotations

from pathlib import Path

import click

from agent.salvage import salvage_summary
from kit.words import plural, thin_watch

# -- probe and status -------------------------------------------------------------------------

def targets(rows: list[dict], dns: list[dict]) -> None:
    """The echo targets and the DNS lookups of a round (``probe``, ``status``)."""
    table(["role", "target", "method", "replies", "loss", "rtt avg", "jitter"],
          [[t["role"] or "", t["target"], t["method"], f"{t['received']}/{t['sent']}",
            num(t["loss_pct"], "%"), num(t["rtt_avg_ms"], " ms"), num(t["jitter_ms"], " ms")]
           for t in rows])
    if dns:
        click.echo("")
        table(["name", "server", "resolved", "time", "error"],
              [[d["name"], d["server"] or "", "yes" if d["success"] else "NO", num(d["rtt_ms"], " ms"),
                d["error"] or ""] for d in dns])


def probe(out: dict) -> None:
    click.echo(f"line: {out['status']}" + (f" ({out['cause']})" if out["cause"] else "")
               + f"   round took {out['duration_s']:.2f} s")
    targets(out["targets"], out["dns"])
    for e in out["errors"]:
        click.echo(f"error: {e}")


def services(rows: list[dict]) -> None:
    """``linewatch services``: each site's or endpoint's check, the step that failed and how."""
    if not rows:
        click.echo("no sites or endpoints configured ([services] urls, vpn)")
        return
    table(["target", "kind", "result", "dns", "connect", "tls", "http", "note"],
          [[r["target"], r["kind"], "ok" if r["ok"] else f"{r['step']}: {r['how']}",
            num(r.get("dns_ms"), " ms"), num(r.get("connect_ms"), " ms"), num(r.get("tls_ms"), " ms"),
            num(r.get("http_ms"), " ms") + (f" ({r['status_code']})" if "status_code" in r else ""),
            _service_note(r)] for r in rows])


def _service_note(r: dict) -> str:
    if r.get("control_tls"):
        return "a neutral name passed: blocked by name (SNI)"
    if r.get("how") == "mismatch":
        return "the second resolver answered otherwise"
    if r.get("how") == "bogon":
        return "answered with an address no site has"
    if r.get("vpn_ms") is not None:
        return f"the VPN server answered in {r['vpn_ms']:,.1f} ms"
    if r.get("kind") == "throttle" and "ratio" in r:
        return (f"{r['kbps']:,.0f} kbit/s with this name, {r['control_kbps']:,.0f} with a "
                f"neutral one ({r['ratio']:.2f})")
    if r.get("how") == "control":
        return "the neutral download failed: nothing to compare with (check throttle_url)"
    if r.get("how") == "keys":
        return "not checked: its keys could not be read (services.vpn)"
    if r.get("kind") == "wireguard" and r.get("how") == "timeout":
        return "no answer: blocked on the way, or the server does not know these keys"
    if r.get("kind") == "wireguard" and r.get("how") == "malformed":
        return "an answer not made for these keys: check the PresharedKey"
    return ""


def status(st: dict, state_dir: Path) -> None:
    """``linewatch status`` (:func:`agent.status.collect`'s dict)."""
    _agent(st)
    if st["targets"] or st["dns"]:
        click.echo("")
        targets(st["targets"], st["dns"])
    _power(st["power"])
    click.echo("")
    if st["episodes_in_progress"]:
        for ep in st["episodes_in_progress"]:
            if ep["type"] == "interference":
                click.echo(f"BLOCKED while the line is up: {ep.get('target', '?')} "
                           f"({ep['cause']}: {ep.get('how', '?')}), since {ep['start']}")
                continue
            click.echo(f"IN PROGRESS: {ep['type']} episode, cause {ep['cause']}, since {ep['start']}"
                       f" ({dur(ep['duration_s'])})")
        if all(ep["type"] == "interference" for ep in st["episodes_in_progress"]):
            click.echo("no outage in progress")
    else:
        click.echo("no outage in progress")
    av = st["availability_24h_pct"]
    warn = thin_watch(st["watched_h_24h"]) if av is not None else None
    thin = f"; {warn}" if warn else ""
    click.echo(f"availability, last 24 h: {'n/a' if av is None else f'{av:.2f} %'}"
               f"  ({plural(st['rounds_24h'], 'round')}, {dur(st['outage_s_24h'])} in outages{thin})")
    s = st["store"]
    if s is None:
        click.echo(f"store: none yet in {state_dir}")
    else:
        fw = (f"{s['backlog_rows']} not yet forwarded" if st["forward"]["enabled"]
              else "forwarding off")
        if s.get("kept_local_rows"):
            fw += f", {s['kept_local_rows']} kept here only (influx.send = \"summaries\")"
        click.echo(f"store: {s['path']}  {s['bytes'] / 1e6:.1f} MB, {plural(s['rows'], 'row')}, {fw}")
    _forward(st["forward"])
    _speedtests(st["speedtest"])
    _alerts(st.get("alerts"))


def _alerts(al: dict | None) -> None:
    if not al or not al["channels"]:
        return
    parts = []
    for name, n in al["channels"].items():
        extra = [f"{n['queued']} waiting"] if n["queued"] else []
        extra += [f"{n['refused']} refused"] if n["refused"] else []
        parts.append(f"{name} ({n['sent']} sent{', ' + ', '.join(extra) if extra else ''})")
    click.echo("alerts: " + "; ".join(parts) + ("; heartbeat on" if al["heartbeat"] else "")
               + "  (`linewatch alerts list`)")


def _agent(st: dict) -> None:
    """Who the agent is, whether it runs, its last round and the store's trouble."""
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
        click.echo(f"WARNING: store cannot be written since {when(trouble['since'])}: "
                   f"{trouble['reason']} (rounds wait in memory; free some space)")
    rec = st["store_recovered"]
    if rec:
        click.echo(f"the store was damaged and replaced on {when(rec['time'])}: the old file is "
                   f"{rec['moved_to']}; {salvage_summary(rec.get('tables') or {})[0]}")


def _power(pw: dict) -> None:
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


def _speedtests(sp: dict) -> None:
    if not sp["enabled"]:
        click.echo("speed tests: off (speedtest.enabled = false)")
        return
    last = sp["last"]
    if last is None:
        click.echo("speed tests: none yet")
    elif last["status"] == "ok":
        click.echo(f"last speed test {last['time'][:16].replace('T', ' ')} UTC: down "
                   f"{last['download_bps'] / 1e6:.1f} Mbit/s, up {last['upload_bps'] / 1e6:.1f} Mbit/s, "
                   f"ping {num(last.get('ping_ms'), ' ms')} ({last.get('server_name') or sp['server']})")
    else:
        click.echo(f"last speed test {last['time'][:16].replace('T', ' ')} UTC FAILED: {last.get('error')}")
    nxt = f"next test {when(sp['next'])}" if sp["next"] else "next test not planned yet (the agent plans it)"
    click.echo(f"  {nxt}; data used this month {sp['month_used_mb']:.0f} of "
               f"{sp['monthly_budget_mb']:.0f} MB")
    skip = sp["last_skip"]
    if skip and (last is None or skip["time"] > last["time"]):
        click.echo(f"  last skipped {skip['time'][:16].replace('T', ' ')} UTC: {skip.get('error_detail')}")


def _forward(fw: dict) -> None:
    if not fw["enabled"]:
        click.echo("forwarding: off (influx.url is not set; the local store keeps everything)")
        return
    server = fw.get("server") or {}
    where = fw["url"] + (f" ({server['target']}, version {server.get('version') or 'not given'})"
                         if server.get("target") else "")
    label = {"ok": "ok", "idle": "not tried yet", "retrying": "RETRYING", "stopped": "STOPPED"}[fw["state"]]
    click.echo(f"forwarding to {where}: {label}")
    age = fw["oldest_unsent_age_s"]
    click.echo(f"  backlog: {fw['backlog_rows']} rows" + (f", oldest {dur(age)} old" if age else "")
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


# -- push, speedtest, check ---------------------------------------------------------------------

def pushed(done) -> None:
    """``linewatch push`` (a :class:`agent.jobs.push.Pushed`)."""
    rep, left = done.report, done.backlog_rows
    if done.requeued:
        click.echo(f"requeued {plural(done.requeued, 'quarantined row')}")
    if rep.outcome == "empty":
        click.echo("nothing to forward: the backlog is empty")
    else:
        rows_per_s = done.to_json()["rows_per_s"]
        rate = f" ({rows_per_s} rows/s)" if rows_per_s else ""
        click.echo(f"sent {plural(rep.sent, 'row')} in {done.seconds:.1f} s{rate} with "
                   f"{plural(rep.requests, 'request')}")
    if rep.quarantined:
        click.echo(f"{plural(rep.quarantined, 'row')} refused by the server and set aside "
                   "(see `linewatch status`)")
    if rep.outcome == "retry":
        click.echo(f"stopped: {done.answer()}; {plural(left, 'row')} "
                   f"{'stays' if left == 1 else 'stay'} in the store and the agent keeps trying",
                   err=True)
    elif rep.outcome == "halt":
        click.echo(f"stopped: {done.state.halted}", err=True)


def speedtest(f: dict) -> None:
    """One speed test's fields."""
    if f["status"] == "ok":
        click.echo(f"download {f['download_bps'] / 1e6:.2f} Mbit/s"
                   f"   upload {f['upload_bps'] / 1e6:.2f} Mbit/s"
                   f"   ping {num(f.get('ping_ms'), ' ms')}")
        click.echo(f"server: {f.get('server_name')} ({f.get('server_sponsor')})   moved "
                   f"{(f['bytes_received'] + f['bytes_sent']) / 1e6:.1f} MB in {f['duration_s']:.1f} s")
    elif f["status"] == "skipped":
        click.echo(f"skipped: {f.get('error_detail')}")
    else:
        click.echo(f"failed: {f['error']}: {f.get('error_detail', '')}")


def alert_tests(rows: list[dict]) -> None:
    """``linewatch alerts test``: each channel and how its test message went."""
    table(["channel", "kind", "result", "detail"],
          [[r["channel"], r["kind"], "sent" if r["ok"] else "FAILED", r["detail"]] for r in rows])


def alert_outbox(out: dict) -> None:
    """``linewatch alerts list``: the outbox per channel, then the newest alerts."""
    if not out["channels"]:
        click.echo("no alerts yet")
        return
    states = ["queued", "sent", "replaced", "refused", "expired"]
    table(["channel", *states], [[c, *(str(n[s]) for s in states)]
                                 for c, n in out["channels"].items()])
    click.echo("")
    table(["channel", "event", "state", "tries", "settled (UTC)", "answer"],
          [[a["channel"], a["event"], a["state"], str(a["attempts"]),
            (a["done"] or "")[:19].replace("T", " "), a["note"]] for a in out["alerts"]])


def checks(results: list[dict]) -> None:
    for r in results:
        mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}[r["result"]]
        click.echo(f"[{mark}] {r['name']}: {r['detail']}")
        if r.get("fix"):
            for line in r["fix"].splitlines():
                click.echo(f"         fix: {line}")


# -- cells ---------------------------------------------------------------------------------------

def num(v, unit: str) -> str:
    """A number for a table: sub-10 values (LAN RTTs are often 0.05 ms) keep two decimals."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}{unit}" if abs(v) < 10 else f"{v:.1f}{unit}"
    return f"{v}{unit}"


def when(t: str | None) -> str:
    """An ISO time as "2026-11-23 10:02 UTC"."""
    return (t or "")[:16].replace("T", " ") + " UTC" if t else "?"


def dur(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def table(headers: list[str], rows: list[list]) -> None:
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, r in enumerate(cells):
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            click.echo("  ".join("-" * w for w in widths))
