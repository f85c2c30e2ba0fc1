"""One worker's line from their own store file: the figures of ``linewatch report`` (pure over the
file's rows; stdlib only, since the agent imports it).

The same definitions as the regional statistics, for a single agent:

* observed hours: the agent's probe rounds (time it was watching);
* ``internet_availability`` = 1 - connectivity outage seconds / observed seconds;
* power cuts: power episodes (mains lost while on battery or UPS, or the host went down), merged
  by the regional figures' rule (collector.model.joins_previous_cut): one cut seen by the battery
  and the UPS, or a battery that ran flat and took the host down, is one cut, its time counted
  once (the list keeps each episode);
* work-hours minutes: the part of each outage inside the working hours (local time, working
  days);
* ``gaps``: time the agent was not watching (stopped, crashed, machine switched off) and not
  because the power was cut: shown grey, never counted as an outage;
* daily latency: median and 95th percentile of the internet targets' round-trip times, mean loss
  over rounds in which the target answered.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.config import PK_REGIONS
from collector.model import Quality, joins_previous_cut, quantile
from collector.storefile import NS, StoreFile

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def work_overlap(start: float, end: float, zone: ZoneInfo, work: tuple[int, int],
                 days: tuple[str, ...]) -> float:
    """Seconds of [start, end) inside working hours ``work`` (minutes after local midnight) on
    working ``days``, local time."""
    total = 0.0
    t = datetime.fromtimestamp(start, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    while t.timestamp() < end:
        if WEEKDAYS[t.weekday()] in days:
            a = (t + timedelta(minutes=work[0])).timestamp()
            b = (t + timedelta(minutes=work[1])).timestamp()
            total += max(0.0, min(end, b) - max(start, a))
        t = (t + timedelta(days=1, hours=2)).replace(hour=0)  # the next local midnight
    return total


def summarise(path: str | Path, start: float, end: float, now: float, tz: str = "Asia/Karachi",
              work: tuple[int, int] = (540, 1080),
              work_days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")) -> dict:
    """The line page's dict (collector.page.line_report) for the store at ``path``, [start, end)."""
    zone = ZoneInfo(tz)
    end = min(end, now)
    f = StoreFile.open(path)
    try:
        rounds = _round_times(f, start, end)
        eps = f.query("SELECT type, cause, start_ns, end_ns, duration_s FROM episodes"
                   " WHERE start_ns < ? AND (end_ns IS NULL OR end_ns >= ?) ORDER BY start_ns",
                   (int(end * NS), int(start * NS)))
        pings = _pings(f, start, end)
        speeds = f.speed_tests(int(start * NS), int(end * NS), Quality())  # the page shows no counts
        spans = f.round_spans(start, end)
    finally:
        f.close()
    unit = spans[-1][2] if spans else None

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, zone).isoformat(timespec="seconds")

    episodes, cut = [], []
    for typ, cause, s_ns, e_ns, dur in eps:
        s = max(start, s_ns / NS)
        e = min(end, (e_ns / NS) if e_ns is not None else now)
        if e <= s or typ not in ("power", "connectivity", "agent_gap"):
            continue
        item = {"type": typ, "cause": cause, "start": iso(s), "end": iso(e),
                "duration_min": (e - s) / 60.0, "_s": s, "_e": e}
        if e_ns is None:
            item["ongoing"] = True
        if typ == "agent_gap":
            cut.append((s, e))
        episodes.append(item)
    observed_s = sum(interval for _, interval in rounds)
    net = [e for e in episodes if e["type"] == "connectivity"]
    power = [e for e in episodes if e["type"] == "power"]
    net_s = sum(e["_e"] - e["_s"] for e in net)
    by_cause: dict[str, float] = {}
    for e in net:
        by_cause[e["cause"]] = by_cause.get(e["cause"], 0.0) + (e["_e"] - e["_s"]) / 60.0
    cuts = cut_spans(power)
    host_down = [(e["_s"], e["_e"]) for e in power if e["cause"] == "host_down"]
    gaps = _gaps(rounds, start, end, host_down + cut)

    line = {
        "generated_at": iso(now), "timezone": tz,
        "agent": unit.agent if unit else "", "region": unit.region if unit else "",
        "region_name": PK_REGIONS.get(unit.region, "") if unit else "",
        "isp": unit.isp if unit else "", "city": unit.city if unit else "",
        "access": unit.access if unit else "",
        "window": {"start": iso(start), "end": iso(end)},
        "observed_h": observed_s / 3600.0,
        "internet_availability": (max(0.0, 1.0 - net_s / observed_s) if observed_s else None),
        "outages": len(net), "outage_min": net_s / 60.0,
        "outage_min_by_cause": dict(sorted(by_cause.items())),
        "power_cuts": len(cuts), "power_cut_min": sum(b - a for a, b in cuts) / 60.0,
        "work_hours_internet_min": sum(work_overlap(e["_s"], e["_e"], zone, work, work_days)
                                       for e in net) / 60.0,
        "work_hours_power_min": sum(work_overlap(a, b, zone, work, work_days) for a, b in cuts) / 60.0,
        "work_hours": f"{work[0] // 60:02d}:{work[0] % 60:02d}-{work[1] // 60:02d}:{work[1] % 60:02d}",
        "episodes": [{k: v for k, v in e.items() if not k.startswith("_")} for e in episodes],
        "gaps": [{"start": iso(a), "end": iso(b)} for a, b in gaps],
        "daily": _daily(rounds, episodes, cuts, pings, start, end, zone),
        "speedtests": [{"time": iso(s.time), "download_bps": s.download_bps,
                        "upload_bps": s.upload_bps} for s in sorted(speeds, key=lambda s: s.time)],
    }
    return line


def _round_times(f: StoreFile, start: float, end: float) -> list[tuple[float, float]]:
    out = []
    for sid in f.series("round"):
        for t, interval in f.query("SELECT time_ns, json_extract(fields, '$.interval_s') FROM samples"
                                " WHERE series_id = ? AND time_ns >= ? AND time_ns < ?",
                                (sid, int(start * NS), int(end * NS))):
            if isinstance(interval, (int, float)) and interval > 0:
                out.append((t / NS, float(interval)))
    return sorted(out)


def _pings(f: StoreFile, start: float, end: float) -> list[tuple[float, float | None, float]]:
    out = []
    for sid, tags in f.series("ping").items():
        if tags.get("role") != "internet":
            continue
        for t, rtt, loss in f.query(
                "SELECT time_ns, json_extract(fields, '$.rtt_avg_ms'), json_extract(fields, '$.loss_pct')"
                " FROM samples WHERE series_id = ? AND time_ns >= ? AND time_ns < ?",
                (sid, int(start * NS), int(end * NS))):
            if isinstance(loss, (int, float)) and loss < 100:
                out.append((t / NS, float(rtt) if isinstance(rtt, (int, float)) else None, float(loss)))
    return out


def _gaps(rounds, start: float, end: float, explained: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Stretches longer than three round intervals with no round, less the parts a power cut
    (host down) explains: the agent was not watching."""
    raw = []
    prev = start
    for t, interval in rounds + [(end, 0.0)]:
        if t - prev > 3 * max(interval, 1.0) or (t == end and end - prev > 3 * 60):
            raw.append((prev, t))
        prev = max(prev, t + interval)
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
    """The power episodes' time ranges, one per cut: merged by collector.model.joins_previous_cut,
    the rule the regional figures use."""
    out: list[list] = []
    for e in sorted(power, key=lambda e: (e["_s"], -e["_e"])):
        if out and joins_previous_cut(out[-1][1], out[-1][2], e["_s"], e["cause"]):
            out[-1][1] = max(out[-1][1], e["_e"])
            out[-1][2] = e["cause"]
        else:
            out.append([e["_s"], e["_e"], e["cause"]])
    return [(a, b) for a, b, _ in out]


def _daily(rounds, episodes, cuts, pings, start, end, zone) -> list[dict]:
    days = []
    t = datetime.fromtimestamp(start, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    while t.timestamp() < end:
        nxt = (t + timedelta(days=1, hours=2)).replace(hour=0)
        days.append((t, max(start, t.timestamp()), min(end, nxt.timestamp())))
        t = nxt
    out = []
    for d, a, b in days:
        obs = sum(i for ts, i in rounds if a <= ts < b)

        net = sum(max(0.0, min(b, e["_e"]) - max(a, e["_s"])) for e in episodes if e["type"] == "connectivity")
        pw = sum(max(0.0, min(b, e) - max(a, s)) for s, e in cuts)
        rtts = [r for ts, r, _ in pings if a <= ts < b and r is not None]
        losses = [lo for ts, _, lo in pings if a <= ts < b]
        out.append({"day": d.date().isoformat(),
                    "observed_h": obs / 3600.0,
                    "availability": max(0.0, 1.0 - net / obs) if obs else None,
                    "outage_min": net / 60.0, "power_min": pw / 60.0,
                    "rtt_p50_ms": quantile(rtts, 0.5), "rtt_p95_ms": quantile(rtts, 0.95),
                    "loss_pct": sum(losses) / len(losses) if losses else None})
    return out

