"""One worker's line from their own store file: the figures of ``linewatch report`` (pure over the
file's rows; stdlib only, since the agent imports it).

The same definitions as the regional statistics, for a single agent:

* observed hours: the agent's probe rounds (time it was watching);
* ``internet_availability`` = 1 - connectivity outage seconds / observed seconds;
* power cuts: power episodes (mains lost while on battery or UPS, or the host went down), merged
  by the regional figures' rule (kit.definitions.joins_previous_cut): one cut seen by the battery
  and the UPS, or a battery that ran flat and took the host down, is one cut, its time counted
  once (the list keeps each episode);
* work-hours minutes: the part of each outage inside the working hours (local time, working
  days);
* ``gaps``: time the agent was not watching (stopped, crashed, machine switched off) and not
  because the power was cut: shown grey, never counted as an outage;
* daily latency: median and 95th percentile of the internet targets' round-trip times, mean loss
  over rounds in which the target answered;
* per-outage evidence: for each connectivity outage, what its rounds recorded (the gateway's and
  each target's echoes sent and answered, each name's lookups and their errors), counted in SQL
  over the outage's span, never loaded row by row;
* ``blocked``: the interference episodes (agent/interference.py): a site or VPN endpoint that
  could not be reached while the line was up, the step that failed and how, and the minutes
  inside work hours.

A window longer than :data:`LONG_WINDOW_S` (and any window older than the raw rows, which
retention drops after 90 days) is read from the agent's hourly summaries (kit.hourly), which are
kept for ever: observed time per hour, daily latency from the merged RTT histograms (within 2 %
of the exact figures), and gaps to the hour (an hour not watched at all). Episodes, speed tests
and the per-outage evidence are read as for a short window.

Who and where the line is (the page's title, line and place) comes from the current config
(:class:`Setup`), not from the rows: the rows' tags are compared with it, and a change inside the
window is listed (``tags_changed``).

Longer than the house's 400 lines: the report's figures come from one store file in one pass, each
section's read beside the figure it makes.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.config import Config
from agent.statekeys import STATE_ISP
from kit import hourly
from kit.definitions import (
    MAX_INTERVAL_S,
    PK_REGIONS,
    WEEKDAYS,
    WORK_DAYS,
    Quality,
    Unit,
    availability,
    joins_previous_cut,
    quantile,
    rank,
)
from kit.storefile import MAX_CAUSE_CHARS, NS, WINDOW_SQL, StoreFile, number_sql, value_sql

# Outages given their per-round evidence, the longest first: a flapping line over 90 days can
# have thousands, and each costs a few indexed queries.
MAX_EVIDENCE = 1000
# An interference episode's details as the agent writes them are short: a longer text, or a
# target longer than a name and port, is not the agent's and is left out.
MAX_DETAILS_CHARS = 4096
MAX_TARGET_CHARS = 300
# Windows longer than this are read from the hourly summaries (a year in well under a second).
LONG_WINDOW_S = 31 * 86400


@dataclass(frozen=True)
class Setup:
    """What the current config says about the line: who and where it is (the page's identity),
    how it is watched (the method) and the plan it is sold as. ``isp`` "auto" is the name the
    agent learnt from speed tests, read from the store; an empty ``agent`` is the rows' latest."""

    agent: str = ""
    region: str = ""
    city: str = ""
    isp: str = ""
    access: str = ""
    account: str = ""
    plan_download_mbps: float = 0.0
    plan_upload_mbps: float = 0.0
    interval_s: float = 10.0
    count: int = 3
    timeout_s: float = 2.0
    gateway: str = "auto"
    targets: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    dns_servers: tuple[str, ...] = ()
    method: str = "auto"
    tcp_port: int = 443
    open_after: int = 3
    close_after: int = 2


def setup_of(cfg: Config) -> Setup:
    """The Setup of a loaded config. The agent id is the configured one, else the one the agent
    keeps in its state dir (read, never created: a report changes nothing)."""
    agent = cfg.agent.id
    if not agent:
        try:
            agent = (cfg.state_dir / "agent_id").read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            agent = ""
    a, p, r = cfg.agent, cfg.probe, cfg.report
    return Setup(agent=agent, region=a.region, city=a.city, isp=a.isp, access=a.access,
                 account=r.account, plan_download_mbps=r.plan_download_mbps,
                 plan_upload_mbps=r.plan_upload_mbps, interval_s=p.interval_s, count=p.count,
                 timeout_s=p.timeout_s, gateway=p.gateway, targets=tuple(p.targets),
                 dns_names=tuple(p.dns_names), dns_servers=tuple(p.dns_servers), method=p.method,
                 tcp_port=p.tcp_port, open_after=cfg.outage.open_after,
                 close_after=cfg.outage.close_after)


def work_overlap(start: float, end: float, zone: ZoneInfo, work: tuple[int, int],
                 days: tuple[str, ...]) -> float:
    """Seconds of [start, end) inside working hours ``work`` (minutes after local midnight) on
    working ``days``, local time. An end before the start is a night shift across midnight
    (20:00-05:00); it belongs to the day it starts on, so Friday 20:00 to Saturday 05:00 counts
    when Friday is a working day."""
    total = 0.0
    # From the day before the start: last night's shift may still run into the span.
    t = datetime.fromtimestamp(start, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    t = (t - timedelta(hours=12)).replace(hour=0)
    while t.timestamp() < end:
        nxt = (t + timedelta(days=1, hours=2)).replace(hour=0)  # the next local midnight
        if WEEKDAYS[t.weekday()] in days:
            a = (t + timedelta(minutes=work[0])).timestamp()
            b = ((t if work[1] > work[0] else nxt) + timedelta(minutes=work[1])).timestamp()
            total += max(0.0, min(end, b) - max(start, a))
        t = nxt
    return total


def summarise(path: str | Path, start: float, end: float, now: float, tz: str = "Asia/Karachi",
              work: tuple[int, int] = (540, 1080),
              work_days: tuple[str, ...] = WORK_DAYS,
              setup: Setup | None = None) -> dict:
    """The line page's dict (agent.report.page.line_report) for the store at ``path``, [start, end).
    (Over 60 lines: most of it is the dict itself, one key a line, the contract of the page.)

    With ``setup`` (the current config), the identity, the method and the plan come from it;
    without, the identity is the tags of the window's latest rows (a volunteer's file read by the
    collector)."""
    zone = ZoneInfo(tz)
    end = min(end, now)
    rows = _Rows.read(path, start, end, now, setup)
    unit, changed = identity(rows.spans, setup, rows.isp_auto)

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, zone).isoformat(timespec="seconds")

    episodes, cut = _episodes(rows, start, end, now, iso)
    observed_s = sum(interval for _, interval in rows.rounds)
    net = [e for e in episodes if e["type"] == "connectivity"]
    power = [e for e in episodes if e["type"] == "power"]
    net_s = sum(e["_e"] - e["_s"] for e in net)
    by_cause: dict[str, float] = {}
    for e in net:
        by_cause[e["cause"]] = by_cause.get(e["cause"], 0.0) + (e["_e"] - e["_s"]) / 60.0
    cuts = cut_spans(power)
    host_down = [(e["_s"], e["_e"]) for e in power if e["cause"] == "host_down"]
    gaps = (_gaps(rows.rounds, start, end, host_down + cut) if rows.hours is None
            else _hour_gaps(rows.rounds, start, end, host_down + cut))
    n_net = sum(1 for typ, *_ in rows.eps if typ == "connectivity")
    line = {
        "generated_at": iso(now), "timezone": tz,
        "agent": unit.agent if unit else "", "region": unit.region if unit else "",
        "region_name": PK_REGIONS.get(unit.region, "") if unit else "",
        "isp": unit.isp if unit else "", "city": unit.city if unit else "",
        "access": unit.access if unit else "",
        "tags_changed": [{"start": iso(a / NS), "end": iso(b / NS), **_tags(u)} for a, b, u in changed],
        "window": {"start": iso(start), "end": iso(end)},
        "observed_h": observed_s / 3600.0,
        "internet_availability": availability(net_s, observed_s),
        "outages": len(net), "outage_min": net_s / 60.0,
        "outage_min_by_cause": dict(sorted(by_cause.items())),
        "power_cuts": len(cuts), "power_cut_min": sum(b - a for a, b in cuts) / 60.0,
        "work_hours_internet_min": sum(work_overlap(e["_s"], e["_e"], zone, work, work_days)
                                       for e in net) / 60.0,
        "work_hours_power_min": sum(work_overlap(a, b, zone, work, work_days) for a, b in cuts) / 60.0,
        "work_hours": f"{work[0] // 60:02d}:{work[0] % 60:02d}-{work[1] // 60:02d}:{work[1] % 60:02d}",
        "episodes": [{k: v for k, v in e.items() if not k.startswith("_")} for e in episodes],
        "gaps": [{"start": iso(a), "end": iso(b)} for a, b in gaps],
        "daily": _daily(rows.rounds, episodes, cuts, rows.pings, start, end, zone, rows.hours),
        "speedtests": [{"time": iso(s.time), "download_bps": s.download_bps,
                        "upload_bps": s.upload_bps} for s in sorted(rows.speeds, key=lambda s: s.time)],
        "probe": _probe(setup, rows.seen),
    }
    blocked = _blocked(rows, start, end, now, iso, zone, work, work_days)
    line["blocked"] = [{k: v for k, v in b.items() if not k.startswith("_")} for b in blocked]
    line["blocked_min"] = sum(b["_e"] - b["_s"] for b in blocked) / 60.0
    line["work_hours_blocked_min"] = sum(b["work_min"] for b in blocked)
    if n_net > MAX_EVIDENCE:
        line["evidence_limit"] = MAX_EVIDENCE
    if rows.hours is not None:
        line["read_from"] = "hourly"   # observed time, latency and gaps from the summaries
    if setup is not None:
        if setup.account:
            line["account"] = setup.account
        plan = {k: v for k, v in (("download_mbps", setup.plan_download_mbps),
                                  ("upload_mbps", setup.plan_upload_mbps)) if v > 0}
        if plan:
            line["plan"] = plan
    return line


@dataclass
class _Rows:
    """What :func:`summarise` reads from the store file for [start, end)."""

    rounds: list
    eps: list          # (type, cause, start_ns, end_ns or None, duration_s), by start
    pings: list
    speeds: list
    spans: list
    isp_auto: str
    seen: dict
    evidence: dict
    hours: list | None = None   # (hour, Histogram, loss_pct_sum, ping_rounds): the summary path
    blocked: list = field(default_factory=list)   # (target, how, cause, start_ns, end_ns or None)

    @classmethod
    def read(cls, path: str | Path, start: float, end: float, now: float,
             setup: Setup | None) -> _Rows:
        f = StoreFile.open(path)
        try:
            hours = _summaries(f, start, end) if _long(f, start, end) else None
            rounds = _round_times(f, start, end) if hours is None else \
                [(h, obs) for h, obs, *_ in hours if obs > 0]
            # Episodes as the agent writes them; a row with a value of another type is left out.
            eps = f.query("SELECT type, cause, start_ns, end_ns, duration_s FROM episodes"
                          " WHERE start_ns < ? AND (end_ns IS NULL OR end_ns >= ?)"
                          " AND typeof(type) = 'text' AND typeof(cause) = 'text'"
                          f" AND length(cause) <= {MAX_CAUSE_CHARS} AND typeof(start_ns) = 'integer'"
                          " AND (end_ns IS NULL OR typeof(end_ns) = 'integer')"
                          " AND typeof(duration_s) IN ('integer', 'real') ORDER BY start_ns",
                          (int(end * NS), int(start * NS)))
            # Interference episodes: the site or endpoint and how it failed, from the details
            # the agent wrote (a bounded JSON object; a row of another shape is left out).
            blocked = f.query(
                "SELECT json_extract(details, '$.target'), json_extract(details, '$.how'), cause,"
                " start_ns, end_ns FROM episodes WHERE type = 'interference' AND start_ns < ?"
                " AND (end_ns IS NULL OR end_ns >= ?) AND typeof(cause) = 'text'"
                f" AND length(cause) <= {MAX_CAUSE_CHARS} AND typeof(start_ns) = 'integer'"
                " AND (end_ns IS NULL OR typeof(end_ns) = 'integer') AND typeof(details) = 'text'"
                f" AND length(details) <= {MAX_DETAILS_CHARS} AND json_valid(details)"
                " AND json_type(details, '$.target') = 'text'"
                f" AND length(json_extract(details, '$.target')) <= {MAX_TARGET_CHARS}"
                " AND coalesce(json_type(details, '$.how'), 'text') = 'text'"
                f" AND length(coalesce(json_extract(details, '$.how'), '')) <= {MAX_CAUSE_CHARS}"
                " ORDER BY start_ns", (int(end * NS), int(start * NS)))
            # The page shows no counts; the file is the worker's own, every agent id in it counts.
            speeds = f.speed_tests(int(start * NS), int(end * NS), Quality(), all_agents=True)
            # The name speedtest.net reported, kept by the speed-test job.
            isp_auto = _state(f, STATE_ISP) if setup and setup.isp == "auto" else ""
            probed = Probed.of(f)
            pings = _pings(f, start, end) if hours is None else []
            return cls(rounds, eps, pings, speeds, f.round_spans(start, end),
                       isp_auto, probed.seen(f, start, end),
                       _all_evidence(f, probed, eps, rounds if hours is None else [], start, end,
                                     now, setup),
                       [(h, hist, ls, n) for h, _, hist, ls, n in hours] if hours is not None
                       else None, blocked)
        finally:
            f.close()


def _episodes(rows: _Rows, start: float, end: float, now: float, iso) -> tuple[list[dict], list]:
    """The window's power, connectivity and agent_gap episodes cut to it (one in progress up to
    now), each with ``_s`` and ``_e`` (its seconds) and its evidence; and the agent gaps' spans."""
    episodes, cut = [], []
    for typ, cause, s_ns, e_ns, _ in rows.eps:
        s = max(start, s_ns / NS)
        e = min(end, (e_ns / NS) if e_ns is not None else now)
        if e <= s or typ not in ("power", "connectivity", "agent_gap"):
            continue
        item = {"type": typ, "cause": cause, "start": iso(s), "end": iso(e),
                "duration_min": (e - s) / 60.0, "_s": s, "_e": e}
        if e_ns is None:
            item["ongoing"] = True
        if (s_ns, typ) in rows.evidence:
            item["evidence"] = rows.evidence[(s_ns, typ)]
        if typ == "agent_gap":
            cut.append((s, e))
        episodes.append(item)
    return episodes, cut


def _blocked(rows: _Rows, start: float, end: float, now: float, iso, zone: ZoneInfo,
             work: tuple[int, int], work_days: tuple[str, ...]) -> list[dict]:
    """The window's interference episodes cut to it (one in progress up to now): the site or
    VPN endpoint, the step that failed (``cause``) and how, the span, and its minutes inside
    work hours."""
    out = []
    for target, how, cause, s_ns, e_ns in rows.blocked:
        s = max(start, s_ns / NS)
        e = min(end, (e_ns / NS) if e_ns is not None else now)
        if e <= s:
            continue
        item = {"target": target, "cause": cause, "how": how or "", "start": iso(s),
                "end": iso(e), "duration_min": (e - s) / 60.0,
                "work_min": work_overlap(s, e, zone, work, work_days) / 60.0, "_s": s, "_e": e}
        if e_ns is None:
            item["ongoing"] = True
        out.append(item)
    return out


def _tags(u: Unit) -> dict:
    return {"agent": u.agent, "region": u.region, "isp": u.isp, "city": u.city, "access": u.access}


def identity(spans: list[tuple[int, int, Unit]], setup: Setup | None,
             isp_auto: str = "") -> tuple[Unit | None, list[tuple[int, int, Unit]]]:
    """The line's unit and the tag changes inside the window.

    The unit is the current config's (``setup``), else the window's latest rows'. The changes are
    the rows' distinct tag sets as (first ns, last ns, unit), earliest first, listed only when
    the rows carry more than one tag set or one that is not the config's; empty otherwise. With
    ``isp = "auto"``, rows written before the first speed test named the ISP carry none: that is
    not a change. The ``site`` tag (which router the agent sat behind) is not part of how the
    page names the line, so it is left out of the comparison."""
    merged: dict[Unit, list[int]] = {}
    for lo, hi, u in ((lo, hi, replace(u, site="")) for lo, hi, u in spans):
        m = merged.setdefault(u, [lo, hi])
        m[0], m[1] = min(m[0], lo), max(m[1], hi)
    runs = sorted(((lo, hi, u) for u, (lo, hi) in merged.items()), key=lambda r: (r[0], r[1]))
    latest = max(runs, key=lambda r: r[1])[2] if runs else None
    if setup is None:
        unit = latest
    else:
        isp = isp_auto if setup.isp == "auto" else setup.isp
        unit = Unit(setup.agent or (latest.agent if latest else ""), setup.region, isp,
                    setup.city, setup.access)
    auto = unit is not None and setup is not None and setup.isp == "auto"
    kinds = {Unit(u.agent, u.region, unit.isp, u.city, u.access) if auto and not u.isp else u
             for _, _, u in runs}
    if len(kinds) > 1 or (kinds and unit is not None and kinds != {unit}):
        return unit, runs
    return unit, []


def _state(f: StoreFile, key: str) -> str:
    if not f.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'state'"):
        return ""  # a file without the agent's state table (only rows handed over)
    rows = f.query("SELECT value FROM state WHERE key = ?", (key,))
    return rows[0][0] if rows and isinstance(rows[0][0], str) else ""


@dataclass(frozen=True)
class Probed:
    """The store's probe series: ping series ids by role and target, dns series ids by name,
    round series ids (a target appears in several series when its other tags changed)."""

    pings: dict[tuple[str, str], tuple[int, ...]]
    methods: dict[int, str]
    dns: dict[str, tuple[int, ...]]
    rounds: tuple[int, ...]

    @classmethod
    def of(cls, f: StoreFile) -> Probed:
        pings: dict[tuple[str, str], list[int]] = {}
        methods = {}
        for sid, tags in f.series("ping").items():
            role, target = str(tags.get("role") or ""), str(tags.get("target") or "")
            if role in ("gateway", "internet") and target:
                pings.setdefault((role, target), []).append(sid)
                methods[sid] = str(tags.get("method") or "")
        dns: dict[str, list[int]] = {}
        for sid, tags in f.series("dns").items():
            if tags.get("name"):
                dns.setdefault(str(tags["name"]), []).append(sid)
        return cls({k: tuple(v) for k, v in pings.items()}, methods,
                   {k: tuple(v) for k, v in dns.items()}, tuple(f.series("round")))

    def seen(self, f: StoreFile, start: float, end: float) -> dict:
        """What was probed inside [start, end): gateways, internet targets, echo methods, names."""
        a, b = int(start * NS), int(end * NS)

        def any_row(sids) -> bool:
            return any(f.query("SELECT 1 FROM samples WHERE series_id = ? AND time_ns >= ?"
                               " AND time_ns < ? LIMIT 1", (sid, a, b)) for sid in sids)

        live = {k: [sid for sid in v if any_row([sid])] for k, v in self.pings.items()}
        return {"gateways": sorted(t for (r, t), v in live.items() if r == "gateway" and v),
                "targets": sorted(t for (r, t), v in live.items() if r == "internet" and v),
                "methods": sorted({self.methods[sid] for v in live.values() for sid in v} - {""}),
                "dns_names": sorted(n for n, v in self.dns.items() if any_row(v))}

    def evidence(self, f: StoreFile, a: int, b: int, order: tuple[str, ...] = ()) -> dict:
        """What the rounds in [a, b) ns recorded: their statuses counted, echoes sent and
        answered per gateway and per internet target (in the configured ``order``, then the
        others), lookups per name with their errors counted."""
        def group(sql: str, sids) -> list[tuple]:
            if not sids:
                return []
            marks = ",".join("?" * len(sids))
            return f.query(sql.format(marks=marks), (*sids, a, b))

        rounds: dict[str, int] = {}
        for status, n in group(f"SELECT {value_sql('status')}, count(*) FROM"
                               " samples WHERE series_id IN ({marks}) AND time_ns >= ?"
                               " AND time_ns < ? GROUP BY 1", self.rounds):
            rounds[str(status)] = rounds.get(str(status), 0) + n
        echoes: dict[str, list[dict]] = {"gateway": [], "internet": []}
        rank = {t: i for i, t in enumerate(order)}
        for (role, target), sids in sorted(self.pings.items(),
                                           key=lambda kv: (rank.get(kv[0][1], len(rank)), kv[0][1])):
            # total(): a float sum, which no hand-made row can overflow.
            (n, sent, got), = group(
                f"SELECT count(*), total({number_sql('sent')}), total({number_sql('received')})"
                " FROM samples WHERE series_id IN ({marks}) AND time_ns >= ? AND time_ns < ?", sids)
            if n:
                echoes[role].append({"target": target, "rounds": n, "sent": _whole(sent),
                                     "received": _whole(got)})
        dns = []
        for name, sids in sorted(self.dns.items()):
            queries, ok, errors = 0, 0, {}
            for success, error, n in group(
                    f"SELECT {value_sql('success')}, {value_sql('error')}, count(*) FROM samples"
                    " WHERE series_id IN ({marks}) AND time_ns >= ? AND time_ns < ? GROUP BY 1, 2",
                    sids):
                queries += n
                if success:
                    ok += n
                elif error:
                    errors[str(error)] = errors.get(str(error), 0) + n
            if queries:
                dns.append({"name": name, "queries": queries, "ok": ok,
                            "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1]))})
        return {"rounds": dict(sorted(rounds.items())), **echoes, "dns": dns}


def _all_evidence(f: StoreFile, probed: Probed, eps, rounds: list[tuple[float, float]],
                  start: float, end: float, now: float, setup: Setup | None) -> dict:
    """Evidence for the connectivity outages of ``eps`` (the :data:`MAX_EVIDENCE` longest), by
    (start ns, type).

    The span read is the outage's, clipped to the window and shifted back by half a round
    interval: an outage runs from its first failed round to its first good one, and a round's
    echoes are timed a little after the round itself, so [start, end) less half a round holds
    exactly the outage's rounds (a good round between failed ones included, the good round that
    ended it left out), whatever the clocks' jitter."""
    net = [(s_ns, e_ns) for typ, _c, s_ns, e_ns, _d in eps if typ == "connectivity"]
    clipped = []
    for s_ns, e_ns in net:
        s = max(start, s_ns / NS)
        e = min(end, (e_ns / NS) if e_ns is not None else now)
        if e > s:
            clipped.append((e - s, s_ns, s, e))
    clipped.sort(key=lambda c: -c[0])
    times = [t for t, _ in rounds]
    order = setup.targets if setup else ()
    out = {}
    for _len, s_ns, s, e in clipped[:MAX_EVIDENCE]:
        i = bisect.bisect_left(times, s)
        near = rounds[min(i, len(rounds) - 1)][1] if rounds else (setup.interval_s if setup else 10.0)
        if not isinstance(near, (int, float)) or not 0 < near <= MAX_INTERVAL_S:
            # a hand-made row's interval (absurd, or none): the agent's default
            near = 10.0
        half = near / 2
        out[(s_ns, "connectivity")] = probed.evidence(f, int((s - half) * NS), int((e - half) * NS),
                                                      order)
    return out


def _whole(v: float) -> int:
    """A count summed by SQLite's total() as an int (0 when a hand-made row made it infinite)."""
    return int(v) if math.isfinite(v) else 0


def _probe(setup: Setup | None, seen: dict) -> dict:
    """How the line was watched, for the page's method: the current config's probe settings
    (when known) and what the window's rows show was probed."""
    out = {"seen": seen}
    if setup is not None:
        out.update(interval_s=setup.interval_s, count=setup.count, timeout_s=setup.timeout_s,
                   gateway=setup.gateway, targets=list(setup.targets),
                   dns_names=list(setup.dns_names), dns_servers=list(setup.dns_servers),
                   method=setup.method, tcp_port=setup.tcp_port, open_after=setup.open_after,
                   close_after=setup.close_after)
    return out


def _round_times(f: StoreFile, start: float, end: float) -> list[tuple[float, float]]:
    out = []
    for sid in f.series("round"):
        for t, interval in f.query(f"SELECT time_ns, {number_sql('interval_s')} FROM samples"
                                   f" WHERE {WINDOW_SQL}", (sid, int(start * NS), int(end * NS))):
            if interval is not None and interval > 0:
                out.append((t / NS, float(interval)))
    return sorted(out)


def _pings(f: StoreFile, start: float, end: float) -> list[tuple[float, float | None, float]]:
    out = []
    for sid, tags in f.series("ping").items():
        if tags.get("role") != "internet":
            continue
        for t, rtt, loss in f.query(
                f"SELECT time_ns, {number_sql('rtt_avg_ms')}, {number_sql('loss_pct')} FROM samples"
                f" WHERE {WINDOW_SQL}", (sid, int(start * NS), int(end * NS))):
            if loss is not None and loss < 100:
                out.append((t / NS, float(rtt) if rtt is not None else None, float(loss)))
    return out


def _long(f: StoreFile, start: float, end: float) -> bool:
    """Whether the window is read from the hourly summaries: longer than LONG_WINDOW_S, or
    starting before the file's first round, when the file holds summaries at all."""
    if not f.series(hourly.MEASUREMENT):
        return False
    if end - start > LONG_WINDOW_S:
        return True
    firsts = [f.query("SELECT min(time_ns) FROM samples WHERE series_id = ? AND"
                      " typeof(time_ns) = 'integer'", (sid,))[0][0] for sid in f.series("round")]
    first = min((t for t in firsts if t is not None), default=None)
    return first is None or first / NS > start + 3600


def _summaries(f: StoreFile, start: float, end: float) -> list[tuple]:
    """``(hour, observed_s, Histogram, loss_pct_sum, ping_rounds)`` of every hourly row dated in
    [start, end), oldest first; rows of one hour under several tag sets are added up. A row
    whose fields are not a JSON object, or whose observed_s is not a number in [0, 3600], is left
    out, and so is a histogram count that is not a whole number >= 0 (the file is untrusted)."""
    by_hour: dict[int, list] = {}
    for sid in f.series(hourly.MEASUREMENT):
        for t, text in f.query(f"SELECT time_ns, fields FROM samples WHERE {WINDOW_SQL}",
                               (sid, int(start * NS), int(end * NS))):
            try:
                fields = json.loads(text)
            except (TypeError, ValueError, RecursionError):
                continue
            if not isinstance(fields, dict):
                continue
            obs, ls, n = (hourly.finite(fields.get(k)) for k in ("observed_s", "loss_pct_sum",
                                                               "ping_rounds"))
            if obs is None or not 0 <= obs <= MAX_INTERVAL_S:
                continue
            h = int(t // NS // 3600 * 3600)
            hist = hourly.Histogram.from_fields(fields)
            acc = by_hour.get(h)
            if acc is None:
                acc = by_hour[h] = [h, 0.0, hist, 0.0, 0]
            else:
                acc[2].merge(hist)   # the hour under another tag set
            acc[1] += obs
            acc[3] += ls or 0.0
            acc[4] += int(n) if n is not None and n >= 0 else 0
    return [tuple(v) for _, v in sorted(by_hour.items())]


def _gaps(rounds, start: float, end: float,
          explained: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Stretches longer than three round intervals with no round, less the parts a power cut
    (host down) explains: the agent was not watching."""
    raw = []
    prev = start
    for t, interval in rounds + [(end, 0.0)]:
        if t - prev > 3 * max(interval, 1.0) or (t == end and end - prev > 3 * 60):
            raw.append((prev, t))
        prev = max(prev, t + interval)
    return _unexplained(raw, explained)


def _hour_gaps(hours: list[tuple[float, float]], start: float, end: float,
               explained: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The summary path's gaps, to the hour: the window's hours with no time watched (no
    summary, or one under a minute), joined, less the parts a power cut explains."""
    watched = {int(h) for h, obs in hours if obs >= 60}
    raw: list[tuple[float, float]] = []
    h = int(start // 3600 * 3600)
    while h < end:
        if h not in watched:
            a, b = max(start, h), min(end, h + 3600)
            if raw and raw[-1][1] == a:
                raw[-1] = (raw[-1][0], b)
            else:
                raw.append((a, b))
        h += 3600
    return _unexplained(raw, explained)


def _unexplained(raw: list[tuple[float, float]],
                 explained: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for a, b in raw:
        pieces = [(a, b)]
        for x, y in explained:
            nxt = []
            for p, q in pieces:
                if y <= p or x >= q:
                    nxt.append((p, q))
                    continue
                if x > p:
                    nxt.append((p, x))
                if y < q:
                    nxt.append((y, q))
            pieces = nxt
        out += [(p, q) for p, q in pieces if q - p >= 60]
    return out


def cut_spans(power: list[dict]) -> list[tuple[float, float]]:
    """The power episodes' time ranges, one per cut: merged by kit.definitions.joins_previous_cut,
    the rule the regional figures use."""
    out: list[list] = []   # [start, end, latest end of its episodes that are not host_down]
    for e in sorted(power, key=lambda e: (e["_s"], -e["_e"])):
        if out and joins_previous_cut(out[-1][1], out[-1][2], e["_s"], e["cause"]):
            out[-1][1] = max(out[-1][1], e["_e"])
        else:
            out.append([e["_s"], e["_e"], None])
        if e["cause"] != "host_down":
            out[-1][2] = e["_e"] if out[-1][2] is None else max(out[-1][2], e["_e"])
    return [(a, b) for a, b, _ in out]


def _daily(rounds, episodes, cuts, pings, start, end, zone, hours=None) -> list[dict]:
    days = []
    t = datetime.fromtimestamp(start, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    while t.timestamp() < end:
        nxt = (t + timedelta(days=1, hours=2)).replace(hour=0)
        days.append((t, max(start, t.timestamp()), min(end, nxt.timestamp())))
        t = nxt
    out = []
    times = [ts for ts, _ in rounds]          # sorted: each day's rounds by bisection
    hour_times = [h for h, *_ in hours] if hours is not None else []
    for d, a, b in days:
        obs = sum(i for _, i in rounds[bisect.bisect_left(times, a):bisect.bisect_left(times, b)])

        net = sum(max(0.0, min(b, e["_e"]) - max(a, e["_s"]))
                  for e in episodes if e["type"] == "connectivity")
        pw = sum(max(0.0, min(b, e) - max(a, s)) for s, e in cuts)
        if hours is None:
            rtts = [r for ts, r, _ in pings if a <= ts < b and r is not None]
            losses = [lo for ts, _, lo in pings if a <= ts < b]
            p50, p95 = quantile(rtts, 0.5), quantile(rtts, 0.95)
            loss = sum(losses) / len(losses) if losses else None
        else:
            # The day's hours merged (a day in a zone a whole number of hours from UTC is whole
            # hours; elsewhere an hour counts in the day it starts in).
            hist, loss_sum, n = hourly.Histogram(), 0.0, 0
            for _, hh, ls, k in hours[bisect.bisect_left(hour_times, a):
                                      bisect.bisect_left(hour_times, b)]:
                hist.merge(hh)
                loss_sum += ls
                n += k
            total = hist.total
            p50 = hist.at(rank(0.5, total)) if total else None
            p95 = hist.at(rank(0.95, total)) if total else None
            loss = loss_sum / n if n else None
        out.append({"day": d.date().isoformat(),
                    "observed_h": obs / 3600.0,
                    "availability": max(0.0, 1.0 - net / obs) if obs else None,
                    "outage_min": net / 60.0, "power_min": pw / 60.0,
                    "rtt_p50_ms": p50, "rtt_p95_ms": p95, "loss_pct": loss})
    return out

