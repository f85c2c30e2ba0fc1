"""The synthetic fleet (tests/fleet.py) as agents with ``influx.send = "summaries"`` send it:
``hourly`` rows, ``outage`` rows and ``speedtest`` rows, at any cadence, fast enough for
10,000 agents x 90 days at 10 s rounds.

tests/hourlyfleet.py makes the same ``hourly`` rows by running :func:`kit.hourly.summarise` over
every raw row of an agent (exact, but 259,000 rounds an agent-month in Python). Here each agent's
plan (``Fleet._plan``: its watched rounds, which failed and how, which pool entry each round's
ping drew, its episodes) is reduced per UTC hour with numpy instead: the round's hour for the
round counts, the ping's own time (round + ping offset) for the ping counts, the 144 distinct
answering ping entries of the agent (128 clean, 16 lossy) counted per hour, from which the RTT
histogram, the extremes and the exact nearest-rank p50/p95 follow; the episodes split at the
hours' edges by :func:`kit.hourly.overlap`. The row has exactly summarise's fields, in its order;
the values are summarise's too except for the order of float additions in ``loss_pct_sum``
(:func:`check` compares both on a few agents).

Beside them, one ``daily`` row per agent and UTC day (time: the day's start), the merge of that
day's hourly rows as the agent writes it (``observed_s``, ``hours``, the latency sums, the day's
extremes, the histogram, the hours and the histogram packed; :meth:`SummaryFleet.daily_rows`),
checked by :func:`check` against the agent's merge (``kit.hourly.day_fields``) of summarise's rows.

    SummaryFleet(agents, days, start, round_s=10, seed=1)   # a tests.fleet.Fleet whose lines()
                                                             # and write_influx() send summaries
"""

from __future__ import annotations

import math

import numpy as np

from kit import hourly, lineproto
from kit.hourly import HOUR_S, Span
from tests.fleet import HOUR_NS, NS, Fleet

DAY_S, DAILY = hourly.DAY_S, hourly.DAILY
_BUCKET_OF = np.vectorize(hourly.bucket, otypes=[np.int64])


class SummaryFleet(Fleet):
    """The fleet's agents sending only summaries, episodes and speed tests (bad=False only)."""

    def summary_rows(self, i: int) -> list[tuple[int, dict]]:
        """Agent ``i``'s ``hourly`` rows: (hour start in s, fields), sorted by hour."""
        p = self._plan(i)
        R, base = self.R, p.base
        if p.ranges:
            ks = np.concatenate([np.arange(k0, k1, dtype=np.int64) for k0, k1 in p.ranges])
        else:
            ks = np.zeros(0, dtype=np.int64)
        t = base + ks * R
        h_round = t // HOUR_NS
        h_ping = (t + p.ping_off) // HOUR_NS
        # the round's code: 0 up, 1 degraded, 2 down with the ping answering (dns), 3 down dead
        code = np.zeros(len(ks), dtype=np.int8)
        if p.special:
            sk = np.fromiter(p.special.keys(), dtype=np.int64, count=len(p.special))
            sc = np.fromiter(({"degraded": 1, "dns": 2, "lan": 3, "isp": 3}[c]
                              for c in p.special.values()), dtype=np.int8, count=len(p.special))
            pos = np.searchsorted(ks, sk)
            ok = pos < len(ks)
            ok[ok] &= ks[pos[ok]] == sk[ok]
            code[pos[ok]] = sc[ok]
        j = np.frombuffer(p.idx, dtype=np.uint16)[ks].astype(np.int64) if len(ks) else ks
        # ping entry: 0..127 clean (up, dns), 128..143 lossy (degraded), 144 dead (lan, isp)
        entry = np.where(code == 1, 128 + (j & 15), np.where(code == 3, 144, j & 127))
        pools = p.pools
        ents = pools["ping_up"] + pools["ping_lossy"]
        rtt = np.array([e[2] for e in ents], dtype=float)
        loss = np.array([e[3] for e in ents] + [100.0], dtype=float)
        recv = np.array([e[4] for e in ents] + [0], dtype=np.int64)
        order = np.argsort(rtt, kind="stable")          # entries by RTT
        buckets = _BUCKET_OF(rtt[order])
        ub, inv = np.unique(buckets, return_inverse=True)

        hr, r_at = np.unique(h_round, return_inverse=True)
        n_rounds = np.bincount(r_at, minlength=len(hr))
        n_online = np.bincount(r_at, weights=(code <= 1), minlength=len(hr)).astype(np.int64)
        n_degr = np.bincount(r_at, weights=(code == 1), minlength=len(hr)).astype(np.int64)
        hp, p_at = np.unique(h_ping, return_inverse=True)
        counts = np.zeros((len(hp), 145), dtype=np.int64)
        np.add.at(counts, (p_at, entry), 1)
        answered = counts[:, :144]
        srt = answered[:, order]                         # counts by entry, entries by RTT
        cum = np.cumsum(srt, axis=1)
        n_ans = cum[:, -1] if len(hp) else np.zeros(0, dtype=np.int64)
        hist = np.zeros((len(hp), len(ub)), dtype=np.int64)
        np.add.at(hist, (slice(None), inv), srt)

        def rank(pct: float) -> np.ndarray:
            k = np.floor(n_ans * pct / 100.0 + 0.5).astype(np.int64) - 1
            return rtt[order][np.argmax(cum > k[:, None], axis=1)]

        p50, p95 = rank(50), rank(95)
        lo = rtt[order][np.argmax(srt > 0, axis=1)]
        hi = rtt[order][143 - np.argmax(srt[:, ::-1] > 0, axis=1)]
        sent = counts.sum(axis=1) * 3
        received = counts @ recv
        loss_sum = answered @ loss[:144]

        rows: dict[int, dict] = {}

        def row(h: int) -> dict:
            f = rows.get(h)
            if f is None:
                f = dict.fromkeys(hourly.SECONDS_FIELDS, 0.0)
                f.update(dict.fromkeys(hourly.COUNT_FIELDS, 0))
                rows[h] = f
            return f

        rs = self.round_s
        for h, n, on, dg in zip(hr.tolist(), n_rounds.tolist(), n_online.tolist(), n_degr.tolist()):
            f = row(h * HOUR_S)
            f["rounds"] = n
            f["observed_s"], f["online_s"], f["degraded_s"] = n * rs, on * rs, dg * rs
        ping_part: dict[int, int] = {}
        for x, h in enumerate(hp.tolist()):
            f = row(h * HOUR_S)
            f["echoes_sent"], f["echoes_received"] = int(sent[x]), int(received[x])
            f["ping_rounds"] = int(n_ans[x])
            ping_part[h * HOUR_S] = x
        for ep in self.episodes(i):
            if ep.end is None:
                continue
            sp = Span(ep.type, ep.cause, str(ep.details.get("source", "")), ep.start.timestamp(),
                      ep.end.timestamp())
            name = hourly.episode_field(sp)
            if name is None:
                continue
            for h in hourly.hours_of(sp.start, sp.end):
                row(h)[name] += hourly.overlap(sp.start, sp.end, h)
        out = []
        for h in sorted(rows):
            f = rows[h]
            x = ping_part.get(h)
            f["loss_pct_sum"] = float(loss_sum[x]) if x is not None else 0.0
            n = int(n_ans[x]) if x is not None else 0
            f["rtt_count"] = n
            if n:
                f["rtt_min_ms"], f["rtt_max_ms"] = float(lo[x]), float(hi[x])
                f["rtt_p50_ms"], f["rtt_p95_ms"] = float(p50[x]), float(p95[x])
                f.update({hourly.field_name(int(b)): int(c)
                          for b, c in zip(ub.tolist(), hist[x].tolist()) if c})
            f["summary_version"] = hourly.VERSION
            out.append((h, f))
        return out

    def emitted(self, i: int) -> list[tuple[str, dict, dict, int]]:
        """Agent ``i``'s outage and speedtest rows as its store holds them: (measurement, tags,
        fields, time in ns), oldest first."""
        p = self._plan(i)
        out = [(s.measurement, s.tags, s.fields, s.time_ns)
               for s in (self._emit_sample(p, ev) for ev in p.emit)]
        return sorted(out, key=lambda r: r[3])

    @staticmethod
    def daily_rows(rows: list[tuple[int, dict]],
                   others: list[tuple[str, dict, dict, int]] | None = None
                   ) -> list[tuple[int, dict]]:
        """The ``daily`` rows of one agent's hourly ``rows`` (sorted by hour): (day start in s,
        fields), the fields in the contract's order; with its outage and speedtest rows
        (``others``, :meth:`emitted`) packed (kit.hourly.pack_rows), a day with such rows and
        no hour getting a row too."""
        days: dict[int, list] = {}
        for r in others or ():
            days.setdefault(r[3] // NS // DAY_S * DAY_S, []).append(r)
        rows = sorted(rows + [(d, None) for d in days if d not in {h - h % DAY_S for h, _ in rows}],
                      key=lambda r: r[0])
        out: list[tuple[int, dict]] = []
        for h, f in rows:
            day = h - h % DAY_S
            if not out or out[-1][0] != day:
                out.append((day, {"observed_s": 0.0, "hours": 0, "rtt_count": 0, "ping_rounds": 0,
                                  "loss_pct_sum": 0.0, "hist": {}, "per_hour": [0.0] * 24}))
            if f is None:
                continue
            d = out[-1][1]
            d["per_hour"][h % DAY_S // HOUR_S] += f["observed_s"]
            d["hours"] += 1
            for k in ("observed_s", "rtt_count", "ping_rounds", "loss_pct_sum"):
                d[k] += f[k]
            if f["rtt_count"]:
                d["rtt_min_ms"] = min(d.get("rtt_min_ms", math.inf), f["rtt_min_ms"])
                d["rtt_max_ms"] = max(d.get("rtt_max_ms", -math.inf), f["rtt_max_ms"])
            hist = d["hist"]
            for k, v in f.items():
                if k.startswith(hourly.PREFIX):
                    hist[k] = hist.get(k, 0) + v
        for day, d in out:
            hist, per_hour = d.pop("hist"), d.pop("per_hour")
            d.update(sorted(hist.items()))
            d["observed_hours"] = hourly.pack_hours(per_hour)
            d["rtt_buckets"] = hourly.pack_buckets({hourly.bucket_of_field(k): n
                                                    for k, n in hist.items()})
            if others is not None:
                d["outages"], d["speed_tests"] = hourly.pack_rows(day, days.get(day, ()))
            d["summary_version"] = hourly.VERSION
        return out

    def _agent_chunks(self, i: int, chunk: int) -> list[tuple[bytes, int]]:
        """Agent ``i``'s lines as a summaries agent sends them: its hourly rows, its daily
        rows, then its outage and speedtest rows (Fleet.lines and Fleet.write_influx go through
        here)."""
        p = self._plan(i)
        key = lineproto.series_key(hourly.MEASUREMENT, p.spec.tags) + " "
        rows = self.summary_rows(i)
        lines = [f"{key}{lineproto.field_set(f)} {h * NS}\n" for h, f in rows]
        key = lineproto.series_key(DAILY, p.spec.tags) + " "
        lines += [f"{key}{lineproto.field_set(f)} {d * NS}\n"
                  for d, f in self.daily_rows(rows, self.emitted(i))]
        lines += [self._emit_line(p, ev) for ev in p.emit]
        out = []
        for k in range(0, len(lines), chunk):
            part = lines[k:k + chunk]
            out.append(("".join(part).encode(), len(part)))
        return out


def check(fleet: SummaryFleet, agents: int = 3) -> dict:
    """Compare :meth:`SummaryFleet.summary_rows` with tests/hourlyfleet.py (summarise over every
    raw row) on the first ``agents`` agents: same hours, same fields, same values (floats within
    1e-9 relative); and the daily rows (:meth:`SummaryFleet.daily_rows`) with the merge of
    summarise's rows by the agent's ``kit.hourly.day_fields``. Returns {"agents", "rows",
    "daily_rows", "merge", "mismatches": [...]} (at most 20 listed)."""
    from tests.hourlyfleet import hourly_samples

    merge = hourly.day_fields
    bad: list[str] = []
    rows = days = 0

    def compare(what: str, fast: dict, slow: dict) -> None:
        if set(fast) != set(slow):
            bad.append(f"{what}: times differ: {sorted(set(fast) ^ set(slow))[:5]}")
        for h in sorted(set(fast) & set(slow)):
            a, b = fast[h], slow[h]
            if list(a) != list(b):
                bad.append(f"{what} at {h}: fields {list(a)} != {list(b)}")
                continue
            for k in a:
                x, y = a[k], b[k]
                if isinstance(x, str) and isinstance(y, str):
                    if x != y:
                        bad.append(f"{what} at {h}: {k} {x[:60]!r} != {y[:60]!r}")
                    continue
                if type(x) is not type(y) or not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9):
                    bad.append(f"{what} at {h}: {k} {x!r} != {y!r}")

    for i in range(min(agents, fleet.n)):
        hours = fleet.summary_rows(i)
        slow = {int(s.time.timestamp()): s.fields for s in hourly_samples(fleet, i)}
        rows += len(slow)
        compare(f"agent {i} hourly", dict(hours), slow)
        by_day: dict[int, list] = {}
        for h in sorted(slow):
            by_day.setdefault(h - h % DAY_S, []).append((h, slow[h]))
        days += len(by_day)
        others = fleet.emitted(i)
        for d in {r[3] // NS // DAY_S * DAY_S for r in others}:
            by_day.setdefault(d, [])
        compare(f"agent {i} daily", dict(fleet.daily_rows(hours, others)),
                {d: merge(fs, hourly.pack_rows(d, [r for r in others
                                                   if r[3] // NS // DAY_S * DAY_S == d]))
                 for d, fs in by_day.items()})
    return {"agents": min(agents, fleet.n), "rows": rows, "daily_rows": days,
            "merge": f"{merge.__module__}.{merge.__name__}", "mismatches": bad[:20],
            "n_mismatches": len(bad)}

