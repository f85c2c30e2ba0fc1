"""A deterministic synthetic fleet of linewatch agents, with its ground truth (tests and benches).

``Fleet(agents, days, start)`` describes volunteers' agents across Pakistan's regions and produces,
agent by agent and lazily, the rows each agent would have written (docs/metrics.md: ``round``,
``ping``, ``outage``, ``speedtest``), plus the truth a collector should recover from them:

* observed time: each agent watches from when it joined (some join on day 2 or later) to the end,
  except while its owner switched it off (some nights, a few hours: no rows and no episode: not an
  outage) and, for a Raspberry Pi without a UPS, while a power cut held the host down;
* power cuts: each region has a daily load-shedding schedule in PKT (Asia/Karachi, UTC+5); agents
  are grouped in feeders whose cuts start at the same minute (each agent within +-90 s) and last
  about as long: regional power events. Feeders skip some days; short trips (a few seconds to
  four minutes) happen too;
* connectivity: isolated outages (causes isp, lan, dns; 20 s .. 60 min, about a third momentary)
  and about one ISP-wide failure per (region, ISP) per week that hits most of its agents within
  two minutes: regional ISP events.

What each kind of device records (as the agent does, docs/metrics.md):

* ``laptop``: a cut is a ``power`` episode (``ac_lost``, source ``battery``, polled every 5 s); the
  router dies, so the rounds fail (cause ``lan``) from the cut to the router's reboot, and that
  connectivity episode has cause ``power`` when the laptop was already on battery at its first
  failed round.
* ``ups``: ``ac_lost``, source ``ups``; the router is on the UPS, so the line stays up.
* ``pi`` (no UPS): the host dies. No rounds, no pings during the cut; after the boot the agent
  records ``host_down`` (source ``host``) from its last heartbeat (its last round) to the boot time.

Rows follow the agent's rules exactly: a connectivity episode opens after 3 consecutive down
rounds, starts at the first and ends at the first of 2 good rounds (so at a 300 s cadence nothing
shorter than about 10 minutes becomes an episode, and that is the agent's behaviour, not a bug
here); a round that lost one or two of its 3 echoes is ``degraded`` (loss >= 20 %), and three in a
row make a ``degraded`` episode (not an outage). Lines are encoded with the agent's own
:mod:`kit.lineproto` functions; a test checks them byte for byte against
:class:`kit.lineproto.Encoder` run over :meth:`Fleet.samples` stored as the store keeps them.
Ping values come from per-agent pools made with the agent's :func:`agent.probes.stats.echo_stats`
(128 distinct answers per agent, drawn at random each round): cheap enough for 1,000 agents x 30
days, and still random from one round to the next.

To keep the truth exact, a trouble that would touch the edge of a watch period (the owner switched
the machine off mid-outage, the fleet's end) is left out for that agent: every episode is closed
and observed (``end_observed`` true), and nothing is written past the fleet's end.

Everything is drawn from ``random.Random`` seeded with strings (sha512 of the seed text): same
arguments, same bytes, in any process.

Speed tests run at the agent's schedule (exponential, 6 h mean, clamped 36 min .. 15 h) and pause
the rounds while they run (the agent's ``rounds_paused``: a gap of two or three rounds at 10 s);
a test due while a connectivity episode is open is a ``skipped`` row (reason ``outage``), about
2 % fail (``download_failed``).

``routers=True`` gives agents of one feeder and ISP one ``site`` tag (one router); their
outages are still drawn per agent, so the truth's agent counts are not a line's.

``bad=True`` adds, in the rows themselves (so they go through InfluxDB or the store), records a
collector must refuse or repair; :meth:`Fleet.truth` lists them under ``"bad"`` (one of each
kind in :data:`BAD_KINDS`, each on its own agent where the fleet has enough):

* ``negative_duration``: an extra connectivity outage row with ``duration_s`` -120;
* ``future_start``: a connectivity outage row starting 2 days 3 hours after the fleet's end (in
  the future when the fleet ends now; InfluxDB 1.x stores it);
* ``overlapping_power``: a second ``ac_lost``/battery row starting halfway through a laptop's
  longest power episode and lasting as long (two overlapping power episodes of one agent: the
  collector merges them into one interruption, counted as power_merged);
* ``negative_rtt``: one ping row with ``rtt_avg_ms`` -5.0;
* ``huge_download``: one ok speed test with ``download_bps`` 1e13 (10 Tbit/s);
* ``unknown_region``: one agent tagged ``region=PK-XX`` on all its rows;
* ``flooding``: one agent's round rows written 10 times (copies at +1 ms .. +9 ms, each with its
  ``interval_s``), so its rounds claim 10x the time it really watched.

API::

    f = Fleet(agents=20, days=3, start=utc_midnight(t), round_s=10, seed=1, bad=False)
    f.units()                  # [kit.definitions.Unit]
    f.samples(i)               # agent i's rows (agent.model.Sample), in the order it writes them
    f.episodes(i)              # its agent.model.Episode objects (for a store)
    f.lines(agents=None, chunk=20_000, workers=1)   # line protocol, bytes chunks
    f.write_influx(url, database, threads=2, workers=1)
    f.write_store(i, state_dir)                      # one volunteer's store file
    f.truth()                  # observed time, episodes, regional events, bad records
    f.dataset(start, end)      # kit.records.Dataset straight from the truth
    Fleet.episode_dataset(1_000_000)                 # a big Dataset for the statistics alone
"""

from __future__ import annotations

import gzip
import http.client
import math
import queue
import random
import threading
import time
import urllib.parse
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from agent.jobs.context import episode_sample
from agent.model import Episode as AgentEpisode, Sample, from_ns, to_ns
from agent.probes.stats import echo_stats
from agent.speedplan import next_interval_s
from kit import lineproto
from kit.definitions import Unit
from kit.records import Dataset, Episode, ObsHour, PingDay, SpeedTest

NS = 1_000_000_000
HOUR_NS = 3600 * NS
DAY_NS = 86400 * NS
PKT_NS = 5 * HOUR_NS                 # Asia/Karachi: UTC+5, no DST
POLL_NS = 5 * NS                     # power.poll_s
OPEN_AFTER, CLOSE_AFTER = 3, 2       # [outage] defaults
MOMENTARY_MAX_S = 300.0
MARGIN_ROUNDS = 3                    # troubles this close to a watch edge are left out
TARGET = "1.1.1.1"
FLOOD_COPIES = 10

# -- the country -----------------------------------------------------------------------------------
# region: (weight, cities (canonical, spellings...), ISPs with weights, cuts per day (min, max),
#          cut length in minutes, PKT start hours the feeders' slots come from, P(feeder skips a day))
REGIONS: dict[str, dict] = {
    "PK-PB": dict(weight=40,
                  cities=[("Lahore", "لاہور"), ("Faisalabad",), ("Rawalpindi",), ("Multan", "ملتان")],
                  isps={"PTCL": 35, "StormFiber": 15, "Nayatel": 10, "Jazz": 15, "Zong": 15,
                        "Wateen Telecom": 10},
                  cuts=(1, 2), minutes=60, hours=(8, 11, 14, 17, 20, 23), skip=0.2),
    "PK-SD": dict(weight=25, cities=[("Karachi", "کراچی"), ("Hyderabad",), ("Sukkur",)],
                  isps={"PTCL": 30, "StormFiber": 20, "Cyber Net, Karachi": 15, "Jazz": 15, "Zong": 10,
                        "Wateen Telecom": 10},
                  cuts=(2, 2), minutes=60, hours=(7, 10, 13, 16, 19, 22), skip=0.1),
    "PK-KP": dict(weight=12, cities=[("Peshawar", "پشاور"), ("Abbottabad",), ("Mardan",)],
                  isps={"PTCL": 35, "Zong": 25, "Jazz": 25, "Nayatel": 15},
                  cuts=(3, 3), minutes=90, hours=(6, 9, 12, 15, 18, 21), skip=0.1),
    "PK-BA": dict(weight=5, cities=[("Quetta", "کوئٹہ"), ("Gwadar",)],
                  isps={"PTCL": 50, "Zong": 25, "Jazz": 25},
                  cuts=(2, 3), minutes=120, hours=(5, 9, 13, 17, 21), skip=0.1),
    "PK-IS": dict(weight=8, cities=[("Islamabad", "اسلام آباد")],
                  isps={"Nayatel": 45, "PTCL": 25, "StormFiber": 10, "Zong": 10, "Jazz": 10},
                  cuts=(1, 1), minutes=60, hours=(10, 15, 20), skip=0.85),
    "PK-GB": dict(weight=5, cities=[("Gilgit",), ("Skardu",)],
                  isps={"PTCL": 50, "Zong": 25, "Jazz": 25},
                  cuts=(2, 2), minutes=120, hours=(6, 12, 18), skip=0.2),
    "PK-JK": dict(weight=5, cities=[("Muzaffarabad",), ("Mirpur",)],
                  isps={"PTCL": 40, "Zong": 30, "Jazz": 30},
                  cuts=(2, 2), minutes=60, hours=(9, 14, 19), skip=0.2),
}
REGION_CODES = tuple(REGIONS)
ACCESS = {"PTCL": {"dsl": 60, "fibre": 40}, "StormFiber": {"fibre": 1}, "Nayatel": {"fibre": 1},
          "Wateen Telecom": {"fibre": 1}, "Cyber Net, Karachi": {"fibre": 1}, "Jazz": {"mobile": 1},
          "Zong": {"mobile": 1}}
DEVICES = {"laptop": 55, "ups": 25, "pi": 20}
# access: (median RTT to 1.1.1.1 in ms: low, high), per-echo lognormal sigma, per-echo loss,
#         download Mbit/s choices (fixed plans) or (median, sigma) for mobile, upload share
LINES = {"fibre": dict(rtt=(12.0, 35.0), sigma=0.12, loss=0.003, plans=(20, 30, 50, 100), up=(0.4, 0.95)),
         "dsl": dict(rtt=(25.0, 55.0), sigma=0.18, loss=0.006, plans=(4, 8, 15), up=(0.08, 0.15)),
         "mobile": dict(rtt=(45.0, 110.0), sigma=0.35, loss=0.02, plans=None, up=(0.2, 0.5))}
REMOTE = {"PK-BA": 20.0, "PK-GB": 25.0, "PK-JK": 10.0}  # extra ms to the nearest Cloudflare site
SERVERS = {  # speedtest.net servers near each region: (id, name, sponsor)
    "PK-PB": [("12345", "Lahore", "PTCL"), ("24569", "Lahore", "Nayatel"), ("28012", "Faisalabad", "Wateen")],
    "PK-SD": [("13220", "Karachi", "StormFiber"), ("17390", "Karachi", "PTCL")],
    "PK-KP": [("25330", "Peshawar", "Zong"), ("12345", "Lahore", "PTCL")],
    "PK-BA": [("31050", "Quetta", "PTCL"), ("13220", "Karachi", "StormFiber")],
    "PK-IS": [("24570", "Islamabad", "Nayatel"), ("19880", "Islamabad", "Jazz")],
    "PK-GB": [("24570", "Islamabad", "Nayatel")],
    "PK-JK": [("24570", "Islamabad", "Nayatel"), ("19880", "Islamabad", "Jazz")],
}
ISOLATED_PER_DAY = 0.4
CAUSE_WEIGHTS = {"isp": 55, "lan": 30, "dns": 15}
CAUSE_PRIORITY = {"lan": 0, "isp": 1, "dns": 2}  # a round sees the most local failure
CAUSE_ORDER = ("lan", "isp", "dns", "unknown")    # agent.outage's tie-break
BAD_KINDS = ("negative_duration", "future_start", "overlapping_power", "negative_rtt", "huge_download",
             "unknown_region", "flooding")


def utc_midnight(t: float) -> int:
    """The UTC midnight at or before ``t`` (seconds since 1970)."""
    return int(t) // 86400 * 86400


def _pick(rng: random.Random, weights: dict):
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _poisson(rng: random.Random, lam: float) -> int:
    n, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return n
        n += 1


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def _nearest_rank(sorted_values: list[float], pct: float) -> float | None:
    """InfluxQL's percentile(): the nearest-rank value (None for no values)."""
    if not sorted_values:
        return None
    i = int(math.floor(len(sorted_values) * pct / 100.0 + 0.5)) - 1
    return sorted_values[min(max(i, 0), len(sorted_values) - 1)]


# -- the fleet's members and events ----------------------------------------------------------------
@dataclass(frozen=True)
class AgentSpec:
    index: int
    agent: str
    region: str          # as tagged (the bad "PK-XX" agent included)
    home: str            # the real region (its feeder's schedule)
    city: str
    city_key: str        # canonical city (لاہور and Lahore are one place)
    isp: str
    access: str
    device: str
    feeder: int
    join_ns: int
    switches_off: bool
    site: str = ""       # with routers=True: the router it shares with agents of its feeder and ISP

    @property
    def tags(self) -> dict[str, str]:
        tags = {"agent": self.agent, "region": self.region, "city": self.city, "isp": self.isp,
                "access": self.access}
        if self.site:
            tags["site"] = self.site
        return tags

    @property
    def unit(self) -> Unit:
        return Unit(self.agent, self.region, self.isp, self.city, self.access, self.site)


@dataclass(frozen=True)
class PowerEvent:
    """A feeder's cut: scheduled load-shedding or a short trip. Agents see it within +-90 s."""

    feeder: int
    region: str
    start_ns: int
    duration_s: float
    kind: str            # "scheduled" | "trip"


@dataclass(frozen=True)
class IspEvent:
    """An ISP failing across a region; most of its agents there lose the line within 2 minutes."""

    region: str
    isp: str
    start_ns: int
    duration_s: float


@dataclass
class _Plan:
    """One agent's whole history, before any row is formatted."""

    spec: AgentSpec
    base: int                                   # t_k = base + k * R (ns), the round grid
    ping_off: int                               # a ping's time after its round's (ns)
    ranges: list[tuple[int, int]]               # watched rounds [k0, k1), sorted
    special: dict[int, str]                     # k -> "lan" | "isp" | "dns" | "degraded" | "badping"
    idx: array                                  # per k: random pool choices (16 bits)
    episodes: list[AgentEpisode]                # real ones, in the order they closed
    emit: list[tuple[int, str, object]]         # (emit time ns, kind, payload): outage, speedtest rows
    speeds: list[tuple[int, float, float]]      # successful tests: (time ns, download, upload)
    pools: dict[str, list]                      # name -> [(fields, field set, rtt_avg, loss, received)]
    flood: bool = False
    host_down_s: float = 0.0
    off_s: float = 0.0
    bad: list[dict] = field(default_factory=list)
    bad_ids: set = field(default_factory=set)   # ids of injected (bad) episodes
    off: list = field(default_factory=list)     # [a, b) ns: switched off by the owner
    cuts: list = field(default_factory=list)    # (a, b, PowerEvent): cuts while the machine was on


class Fleet:
    """``agents`` agents over ``days`` days from ``start`` (a UTC midnight, seconds since 1970),
    a round every ``round_s`` seconds. Deterministic in (agents, days, start, round_s, seed, bad)."""

    def __init__(self, agents: int, days: int, start: int, round_s: float = 10, seed: int = 1,
                 bad: bool = False, routers: bool = False) -> None:
        if start % 86400:
            raise ValueError(f"start must be a UTC midnight, got {start}")
        if agents < 1 or days < 1:
            raise ValueError("agents and days must be >= 1")
        self.n = agents
        self.days = days
        self.start = int(start)
        self.end = self.start + days * 86400
        self.start_ns, self.end_ns = self.start * NS, self.end * NS
        self.round_s = float(round_s)
        self.R = int(round(self.round_s * NS))
        if self.R % 1_000_000 or self.R < NS:
            raise ValueError("round_s must be a whole number of milliseconds, >= 1 s")
        self.seed = seed
        self.bad = bad
        self._rng = random.Random(f"linewatch-fleet:{seed}:fleet")
        self.specs = self._make_specs()
        if routers:
            # Agents of one feeder on one ISP sit behind one router: they tag their rows with
            # one site, as agents behind one gateway do. Their troubles stay drawn per agent.
            self.specs = [replace(sp, site=f"r{sp.feeder:03d}{sorted(ACCESS).index(sp.isp)}")
                          for sp in self.specs]
        self.power_events = self._make_power_events()
        self.isp_events = self._make_isp_events()
        self._by_feeder: dict[int, list[PowerEvent]] = {}
        for ev in self.power_events:
            self._by_feeder.setdefault(ev.feeder, []).append(ev)
        self._isp_by_pair: dict[tuple[str, str], list[IspEvent]] = {}
        for ev in self.isp_events:
            self._isp_by_pair.setdefault((ev.region, ev.isp), []).append(ev)
        self.bad_agents: dict[str, int] = self._choose_bad() if bad else {}
        self._plans: dict[int, _Plan] = {}

    # -- the members ---------------------------------------------------------------------------
    def _make_specs(self) -> list[AgentSpec]:
        rng = self._rng
        codes = list(REGIONS)
        raw = []
        for _i in range(self.n):
            region = rng.choices(codes, weights=[REGIONS[c]["weight"] for c in codes])[0]
            spellings = rng.choice(REGIONS[region]["cities"])
            city = spellings[1] if len(spellings) > 1 and rng.random() < 0.3 else spellings[0]
            isp = _pick(rng, REGIONS[region]["isps"])
            access = _pick(rng, ACCESS[isp])
            device = _pick(rng, DEVICES)
            late = rng.random() < 0.12 and self.days >= 2
            join_day = rng.randrange(1, min(self.days, 4)) if late and self.days > 1 else 0
            join_ns = self.start_ns + join_day * DAY_NS + (rng.randrange(6, 20) * HOUR_NS
                                                           + rng.randrange(3600) * NS
                                                           if join_day else 0)
            raw.append((region, city, spellings[0], isp, access, device, join_ns, rng.random() < 0.2))
        # Feeders: agents of one city in groups of about 10, in order of index.
        feeders: dict[tuple[str, str], list[int]] = {}
        for i, r in enumerate(raw):
            feeders.setdefault((r[0], r[2]), []).append(i)
        feeder_of, n_feeders = {}, 0
        for key in sorted(feeders):
            members = feeders[key]
            for j in range(0, len(members), 10):
                for i in members[j:j + 10]:
                    feeder_of[i] = n_feeders
                n_feeders += 1
        self.n_feeders = n_feeders
        self._feeder_region = {feeder_of[i]: raw[i][0] for i in range(self.n)}
        return [AgentSpec(i, f"a{i + 1:04d}", r[0], r[0], r[1], r[2], r[3], r[4], r[5], feeder_of[i], r[6],
                          r[7])
                for i, r in enumerate(raw)]

    def _make_power_events(self) -> list[PowerEvent]:
        rng = random.Random(f"linewatch-fleet:{self.seed}:power")
        out = []
        for f in range(self.n_feeders):
            region = self._feeder_region[f]
            r = REGIONS[region]
            n_cuts = rng.randint(*r["cuts"])
            slots = sorted(rng.sample(r["hours"], min(n_cuts, len(r["hours"]))))
            minute = rng.choice((0, 0, 30))
            for d in range(self.days):
                day_pkt = self.start_ns + d * DAY_NS - PKT_NS   # PKT midnight of that UTC day
                if rng.random() >= r["skip"]:
                    for h in slots:
                        t = day_pkt + (h * 60 + minute) * 60 * NS
                        dur = r["minutes"] * 60 + rng.uniform(-180, 480)
                        if self.start_ns <= t and t + dur * NS < self.end_ns:
                            out.append(PowerEvent(f, region, t, round(dur, 3), "scheduled"))
                for _ in range(_poisson(rng, 0.25)):
                    t = self.start_ns + d * DAY_NS + rng.randrange(86400) * NS
                    dur = rng.uniform(3, 240)
                    if t + dur * NS < self.end_ns:
                        out.append(PowerEvent(f, region, t, round(dur, 3), "trip"))
        out.sort(key=lambda e: (e.start_ns, e.feeder))
        return out

    def _make_isp_events(self) -> list[IspEvent]:
        rng = random.Random(f"linewatch-fleet:{self.seed}:isp")
        pairs = sorted({(s.home, s.isp) for s in self.specs})
        out = []
        for region, isp in pairs:
            for _ in range(_poisson(rng, self.days / 7.0)):
                t = self.start_ns + rng.randrange(self.days * 86400) * NS
                dur = min(180 * 60.0, max(600.0, rng.lognormvariate(math.log(40 * 60), 0.6)))
                if t + int(dur * NS) + 600 * NS < self.end_ns:
                    out.append(IspEvent(region, isp, t, round(dur, 3)))
        out.sort(key=lambda e: (e.start_ns, e.region, e.isp))
        return out

    def _choose_bad(self) -> dict[str, int]:
        """Which agent carries which bad record (distinct agents where the fleet allows)."""
        rng = random.Random(f"linewatch-fleet:{self.seed}:bad")
        order = list(range(self.n))
        rng.shuffle(order)
        chosen: dict[str, int] = {}
        # The overlapping power episodes need a laptop that sees a long cut.
        for i in order:
            if self.specs[i].device == "laptop" and any(
                    e.kind == "scheduled" for e in self._by_feeder.get(self.specs[i].feeder, ())):
                chosen["overlapping_power"] = i
                break
        rest = [i for i in order if i not in chosen.values()] or order
        for j, kind in enumerate(k for k in BAD_KINDS if k not in chosen):
            chosen[kind] = rest[j % len(rest)]
        i = chosen["unknown_region"]
        self.specs[i] = AgentSpec(**{**self.specs[i].__dict__, "region": "PK-XX"})
        return chosen

    # -- public API ----------------------------------------------------------------------------
    def units(self) -> list[Unit]:
        return [s.unit for s in self.specs]

    def samples(self, agent_index: int) -> Iterator[Sample]:
        """One agent's rows as :class:`agent.model.Sample`, in the order the agent writes them:
        each round's ``round`` and ``ping``, an ``outage`` row when its episode closes (stamped
        with the episode's start), a ``speedtest`` row when the test ends (stamped with its
        start)."""
        p = self._plan(agent_index)
        tags = p.spec.tags
        ping_tags = {**tags, "target": TARGET, "method": "icmp_dgram", "role": "internet"}
        R, base, po = self.R, p.base, p.ping_off
        pools, special, idx = p.pools, p.special, p.idx
        emit, e = p.emit, 0
        copies = FLOOD_COPIES if p.flood else 1
        for k0, k1 in p.ranges:
            for k in range(k0, k1):
                t = base + k * R
                while e < len(emit) and emit[e][0] < t:
                    yield self._emit_sample(p, emit[e])
                    e += 1
                rf, pf = self._round_ping(pools, special.get(k), idx[k])
                for c in range(copies):
                    yield Sample("round", tags, rf[0], from_ns(t + c * 1_000_000))
                yield Sample("ping", ping_tags, pf[0], from_ns(t + po))
        for ev in emit[e:]:
            yield self._emit_sample(p, ev)

    def episodes(self, agent_index: int) -> list[AgentEpisode]:
        """One agent's episodes as the agent keeps them in its store (bad ones included)."""
        p = self._plan(agent_index)
        return [payload for _, kind, payload in p.emit if kind == "outage"]

    def lines(self, agents: Iterable[int] | None = None, chunk: int = 20_000,
              workers: int = 1) -> Iterator[bytes]:
        """Line protocol for ``agents`` (default: all), in chunks of about ``chunk`` lines (each
        ends with a newline; one chunk may hold several agents). ``workers`` > 1
        generates agents in that many forked processes; the bytes are the same in the same
        order. Only a few agents' plans are in memory at a time."""
        order = range(self.n) if agents is None else list(agents)
        if workers <= 1:
            parts = (self._agent_chunks(i, chunk) for i in order)
        else:
            import multiprocessing

            pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init,
                                                            initargs=(self,))
            parts = pool.imap(_worker_chunks, [(i, chunk) for i in order], chunksize=1)
        buf: list[bytes] = []
        n = 0
        try:
            for agent_parts in parts:
                for data, lines in agent_parts:
                    buf.append(data)
                    n += lines
                    if n >= chunk:
                        yield b"".join(buf)
                        buf, n = [], 0
            if buf:
                yield b"".join(buf)
        finally:
            if workers > 1:
                pool.terminate()
                pool.join()

    def _agent_chunks(self, i: int, chunk: int) -> list[tuple[bytes, int]]:
        """One agent's lines as (bytes, lines) pieces of about ``chunk`` lines."""
        out, buf, n = [], [], 0
        for part, lines in self._agent_lines(i):
            buf.append(part)
            n += lines
            if n >= chunk:
                out.append(("".join(buf).encode(), n))
                buf, n = [], 0
        if buf:
            out.append(("".join(buf).encode(), n))
        return out

    def write_influx(self, url: str, database: str, *, agents: Iterable[int] | None = None,
                     batch_lines: int = 20_000, threads: int = 2, workers: int = 1,
                     auth: tuple[str, str] | None = None, timeout_s: float = 300.0) -> dict:
        """POST the fleet's lines to InfluxDB 1.x ``/write?db=&precision=ns`` (gzip), ``threads``
        connections in parallel. Returns {"points", "bytes", "gzip_bytes", "requests",
        "seconds", "generate_s"}; raises RuntimeError on any answer but 204."""
        u = urllib.parse.urlsplit(url)
        path = f"/write?{urllib.parse.urlencode({'db': database, 'precision': 'ns'})}"
        headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"}
        if auth:
            import base64
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        work: queue.Queue = queue.Queue(maxsize=threads * 2)
        stats = {"points": 0, "bytes": 0, "gzip_bytes": 0, "requests": 0}
        errors: list[str] = []
        lock = threading.Lock()

        def sender() -> None:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout_s)
            try:
                while True:
                    body = work.get()
                    if body is None:
                        return
                    if errors:
                        continue
                    z = gzip.compress(body, compresslevel=1)
                    conn.request("POST", path, body=z, headers=headers)
                    r = conn.getresponse()
                    text = r.read()
                    if r.status != 204:
                        errors.append(f"HTTP {r.status}: {text[:500]!r}")
                        continue
                    with lock:
                        stats["points"] += body.count(b"\n")
                        stats["bytes"] += len(body)
                        stats["gzip_bytes"] += len(z)
                        stats["requests"] += 1
            except Exception as exc:  # noqa: BLE001 - reported to the caller below
                errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()

        senders = [threading.Thread(target=sender, daemon=True) for _ in range(threads)]
        for w in senders:
            w.start()
        t0 = time.perf_counter()
        gen = 0.0
        try:
            it = self.lines(agents, chunk=batch_lines, workers=workers)
            while not errors:
                g0 = time.perf_counter()
                body = next(it, None)
                gen += time.perf_counter() - g0
                if body is None:
                    break
                work.put(body)
        finally:
            for _ in senders:
                work.put(None)
            for w in senders:
                w.join()
        if errors:
            raise RuntimeError(f"write to {url} failed: {errors[0]}")
        stats["seconds"] = time.perf_counter() - t0
        stats["generate_s"] = gen
        return stats

    def write_store(self, agent_index: int, state_dir: str | Path) -> int:
        """Write one agent's rows and episodes into an agent store in ``state_dir`` (as a
        volunteer's file would hold them, all unsent). Returns the rows written."""
        from agent.store import Store

        store = Store.open(state_dir)
        try:
            batch, n = [], 0
            for s in self.samples(agent_index):
                batch.append(s)
                if len(batch) >= 20_000:
                    store.write(batch)
                    n += len(batch)
                    batch = []
            store.write(batch, episodes=self.episodes(agent_index))
            return n + len(batch)
        finally:
            store.close()

    def truth(self) -> dict:
        """The ground truth. ``agents``: per agent id,

        ``unit``, ``device``, ``join`` (s), ``rounds`` (real rounds, without a flood's copies),
        ``observed_s`` (= rounds x round_s), ``observed_by_hour`` ({UTC hour start (s): s}),
        ``host_down_s`` (a Pi's time down for power cuts: an interruption, not absence),
        ``power_watched_s`` (docs/collector.md: per UTC hour, round time plus host-down time,
        at most the hour; a Pi's last round before a cut covers its interval while the host is
        already down from that heartbeat, so this is less than ``observed_s + host_down_s``),
        ``power_counted_s`` (for each of ``power``, the seconds the collector counts: in each
        hour at most the power-watched time, scaled down in proportion; less than the whole
        when a speed test paused the rounds inside a cut the UPS rode out),
        ``off_s`` (switched off by its owner: absence, never an outage), ``power`` and
        ``connectivity`` (kit.records.Episode, by start), ``degraded`` (episodes, not
        outages), ``speedtests_ok``.

        Fleet-wide: ``rows`` per measurement as written (bad rows included), the regional events
        ``power_events`` (feeders' cuts and trips) and ``isp_events``, and ``bad``:
        {kind: {"count", "agent", ...}} (empty unless bad=True; kinds in :data:`BAD_KINDS`)."""
        agents, rows, bad = {}, {"round": 0, "ping": 0, "outage": 0, "speedtest": 0}, {}
        for i in range(self.n):
            p = self._plan(i)
            agents[p.spec.agent] = self._agent_truth(p)
            n_rounds = agents[p.spec.agent]["rounds"]
            rows["round"] += n_rounds * (FLOOD_COPIES if p.flood else 1)
            rows["ping"] += n_rounds
            rows["outage"] += sum(1 for _, kind, _ in p.emit if kind == "outage")
            rows["speedtest"] += sum(1 for _, kind, _ in p.emit if kind == "speedtest")
            for b in p.bad:
                bad[b["kind"]] = {k: v for k, v in b.items() if k != "kind"}
        return {"start": self.start, "end": self.end, "round_s": self.round_s, "agents": agents, "rows": rows,
                "power_events": list(self.power_events), "isp_events": list(self.isp_events), "bad": bad}

    def _agent_truth(self, p: _Plan) -> dict:
        n_rounds = sum(k1 - k0 for k0, k1 in p.ranges)
        unit = p.spec.unit
        power, conn, degraded = [], [], 0
        for _, kind, ep in p.emit:
            if kind != "outage" or ep.id in p.bad_ids:
                continue
            if ep.type == "degraded":
                degraded += 1
            else:
                (power if ep.type == "power" else conn).append(
                    Episode(unit, ep.type, ep.cause, to_ns(ep.start) / NS, ep.duration_s))
        power.sort(key=lambda e: e.start)
        by_hour = self._obs_hours(p)
        watched = dict(by_hour)
        for e in power:
            if e.cause == "host_down":
                h = int(e.start // 3600 * 3600)
                while h < e.end:
                    watched[h] = watched.get(h, 0.0) + min(e.end, h + 3600) - max(e.start, h)
                    h += 3600
        pieces: dict[int, list[tuple[int, float]]] = {}
        for i, e in enumerate(power):
            h = int(e.start // 3600 * 3600)
            while h < e.end:
                pieces.setdefault(h, []).append((i, min(e.end, h + 3600) - max(e.start, h)))
                h += 3600
        counted = [0.0] * len(power)
        for h, ps in pieces.items():
            total, w = sum(x for _, x in ps), min(3600.0, watched.get(h, 0.0))
            for i, x in ps:
                counted[i] += x * (w / total if total > w else 1.0)
        return {"unit": unit, "device": p.spec.device, "join": p.spec.join_ns / NS, "rounds": n_rounds,
                "observed_s": n_rounds * self.round_s, "observed_by_hour": by_hour,
                "host_down_s": p.host_down_s, "off_s": p.off_s,
                "power_watched_s": sum(min(3600.0, s) for s in watched.values()),
                "power_counted_s": [min(c, e.duration_s) for c, e in zip(counted, power)],
                "power": sorted(power, key=lambda e: e.start),
                "connectivity": sorted(conn, key=lambda e: e.start),
                "degraded": degraded, "speedtests_ok": len(p.speeds)}

    def dataset(self, start: float | None = None, end: float | None = None) -> Dataset:
        """A collector Dataset made from the truth for [start, end) (default: the whole fleet):
        ObsHour per watched hour, power and connectivity episodes that start in the window,
        PingDay per UTC day over the rounds in which the target answered at all (p50/p95 of
        their rtt_avg_ms by InfluxQL's nearest rank, their mean loss_pct, rounds = how many
        such rounds; a bad negative RTT is in them, as it is in the rows), successful
        speed tests. Bad records are not in it: this is what a correct collector recovers."""
        start = self.start if start is None else start
        end = self.end if end is None else end
        s_ns, e_ns = int(start * NS), int(end * NS)
        obs, eps, pings, speeds = [], [], [], []
        for i in range(self.n):
            p = self._plan(i)
            t = self._agent_truth(p)
            unit = t["unit"]
            obs += [ObsHour(unit, h, sec) for h, sec in t["observed_by_hour"].items() if start <= h < end]
            eps += [e for e in t["power"] + t["connectivity"] if start <= e.start < end]
            pings += [d for d in self._ping_days(p) if start <= d.day < end]
            speeds += [SpeedTest(unit, ts / NS, d, u) for ts, d, u in p.speeds if s_ns <= ts < e_ns]
        return Dataset(start=float(start), end=float(end), obs=tuple(obs), episodes=tuple(eps),
                       pings=tuple(pings), speeds=tuple(speeds))

    @staticmethod
    def episode_dataset(n_episodes: int = 1_000_000, agents: int = 1000, days: int = 30, seed: int = 1,
                        start: int = 1_790_812_800) -> Dataset:
        """A Dataset with ``n_episodes`` outage episodes spread over ``agents`` agents (the fleet's
        own units) and ``days`` days, with one ObsHour per agent and hour (a few hours
        unobserved), for benchmarking the statistics alone. About 55 % power (ac_lost or
        host_down), the rest connectivity; about 30 % momentary. An agent's episodes of one type
        never overlap."""
        fleet = Fleet(agents, min(days, 2), start, seed=seed)
        units = fleet.units()
        rng = random.Random(f"linewatch-fleet:{seed}:episodes")
        period = days * 86400
        obs = []
        for u in units:
            off = rng.random() < 0.2
            for h in range(days * 24):
                hour = start + h * 3600
                if off and h % 24 in (20, 21, 22):  # 01:00-04:00 PKT: switched off
                    continue
                obs.append(ObsHour(u, hour, 3600.0))
        eps = []
        per, extra = divmod(n_episodes, agents)
        causes = ("isp", "lan", "dns", "power")
        for a, u in enumerate(units):
            n = per + (1 if a < extra else 0)
            n_power = int(n * 0.55)
            for typ, m in (("power", n_power), ("connectivity", n - n_power)):
                if not m:
                    continue
                slot = period / m
                host = u.agent[-1] in "02468"
                for j in range(m):
                    d = (rng.uniform(5, 290) if rng.random() < 0.3
                         else rng.uniform(301, min(7200.0, slot * 0.9)))
                    d = min(d, slot * 0.9)
                    t0 = start + j * slot + rng.uniform(0, slot - d)
                    cause = (("host_down" if host else "ac_lost") if typ == "power"
                             else causes[rng.randrange(4)])
                    eps.append(Episode(u, typ, cause, round(t0, 3), round(d, 3)))
        return Dataset(start=float(start), end=float(start + period), obs=tuple(obs), episodes=tuple(eps))

    # -- one agent's history -------------------------------------------------------------------
    def _plan(self, i: int) -> _Plan:
        p = self._plans.get(i)
        if p is None:
            p = self._make_plan(i)
            if len(self._plans) >= 4:  # a few, for samples() + episodes() on one agent
                self._plans.pop(next(iter(self._plans)))
            self._plans[i] = p
        return p

    def _k_at(self, base: int, t: int) -> int:
        """The first round index k with base + k*R >= t."""
        return _ceil_div(t - base, self.R)

    def _make_plan(self, i: int) -> _Plan:
        spec = self.specs[i]
        rng = random.Random(f"linewatch-fleet:{self.seed}:{i}:plan")
        R = self.R
        base = self.start_ns + rng.randrange(R // 1_000_000) * 1_000_000
        ping_off = rng.randrange(150, 900) * 1000
        k_end = self._k_at(base, self.end_ns)
        k_join = self._k_at(base, spec.join_ns)
        margin_ns = MARGIN_ROUNDS * R

        # 1. When the machine is off: owner's nights, and (Pi) power cuts.
        off: list[tuple[int, int]] = []            # [a, b) ns: no rounds
        if spec.switches_off:
            for d in range(self.days):
                if rng.random() < 0.6:
                    # 00:00-02:30 PKT
                    a = self.start_ns + d * DAY_NS - PKT_NS + DAY_NS + rng.randrange(0, 150) * 60 * NS
                    b = a + rng.randrange(4 * 60, 8 * 60) * 60 * NS
                    off.append((a, b + rng.randrange(20, 90) * NS))   # + boot and agent start
        off = [(a, min(b, self.end_ns)) for a, b in off if a < self.end_ns]
        cuts = []                                  # (a, b, event) as this agent sees them
        for ev in self._by_feeder.get(spec.feeder, ()):
            jit = 90 if ev.kind == "scheduled" else 2
            a = ev.start_ns + rng.randrange(-jit * 1000, jit * 1000 + 1) * 1_000_000
            b = (a + int(ev.duration_s * NS)
                 + rng.randrange(-60_000 if ev.kind == "scheduled" else -2000,
                                 60_001 if ev.kind == "scheduled" else 2001) * 1_000_000)
            b = max(b, a + 1_000_000_000)
            tail = rng.randrange(45, 150) * NS      # router reboot (laptop) / boot + agent start (Pi)
            lo, hi = a - margin_ns - POLL_NS, b + tail + margin_ns + POLL_NS
            if lo < max(spec.join_ns, self.start_ns) or hi > self.end_ns:
                continue
            if any(a2 < hi and lo < b2 for a2, b2 in off):
                continue                           # the machine was off: nothing seen
            if cuts and lo < cuts[-1][4]:
                continue                           # a trip during (or right after) a cut: no news
            cuts.append((a, b, tail, ev, hi))
        pi_gaps = []
        host_down_s = 0.0
        episodes: list[AgentEpisode] = []
        emit: list[tuple[int, str, object]] = []
        if spec.device == "pi":
            for a, b, tail, _ev, _ in cuts:
                k_last = self._k_at(base, a) - 1          # its last round before the cut
                hb = base + k_last * R
                boot = (b // NS + rng.randrange(2, 6)) * NS  # btime: whole seconds
                resume = boot + tail
                pi_gaps.append((a, resume))
                dur = round((boot - hb) / NS, 3)
                ep = AgentEpisode(id=f"power:host:{hb}", type="power", cause="host_down", start=from_ns(hb),
                                  end=from_ns(boot), duration_s=dur, sustained=dur > MOMENTARY_MAX_S,
                                  details={"source": "host", "boot_id": f"{rng.getrandbits(64):016x}"})
                host_down_s += dur
                episodes.append(ep)
                emit.append((boot + 1, "outage", ep))  # at the agent's start, before its first round
        # 2. Watched rounds.
        holes = sorted((self._k_at(base, a), self._k_at(base, b)) for a, b in off + pi_gaps)
        ranges = _subtract([(k_join, k_end)], holes)
        off_s = sum(b - a for a, b in off) / NS

        def inside(ka: int, kb: int) -> bool:
            return any(k0 + MARGIN_ROUNDS <= ka and kb + MARGIN_ROUNDS <= k1 for k0, k1 in ranges)

        # 3. Power episodes (laptop: battery, ups: UPS), polled every 5 s.
        pbase = self.start_ns + rng.randrange(5000) * 1_000_000
        battery: list[tuple[int, int]] = []        # [start, end) ns while on battery
        down: list[tuple[int, int, str]] = []      # connectivity troubles, ns, with the rounds' cause
        if spec.device in ("laptop", "ups"):
            source = "battery" if spec.device == "laptop" else "ups"
            for a, b, tail, _ev, _ in cuts:
                if spec.device == "laptop":
                    ka, kb = self._k_at(base, a), self._k_at(base, b + tail)
                    if not inside(ka, kb):
                        continue
                    down.append((a, b + tail, "lan"))
                p0 = pbase + _ceil_div(a - pbase, POLL_NS) * POLL_NS
                p1 = pbase + _ceil_div(b - pbase, POLL_NS) * POLL_NS
                if p1 <= p0:
                    continue                       # between two polls: never seen
                dur = round((p1 - p0) / NS, 3)
                charge0 = round(rng.uniform(55, 100), 1)
                drain = (0.6 if source == "battery" else 1.0) * dur / 60
                details = {"source": source, "charge_start_pct": charge0,
                           "charge_end_pct": round(max(3.0, charge0 - drain), 1)}
                ep = AgentEpisode(id=f"power:{source}:{p0}", type="power", cause="ac_lost", start=from_ns(p0),
                                  end=from_ns(p1), duration_s=dur, sustained=dur > MOMENTARY_MAX_S,
                                  details=details)
                battery.append((p0, p1))
                episodes.append(ep)
                emit.append((p1, "outage", ep))
        # 4. Connectivity troubles: isolated, and the ISP's regional failures.
        for _ in range(_poisson(rng, ISOLATED_PER_DAY * self.days)):
            a = self.start_ns + rng.randrange(self.days * 86400 * 1000) * 1_000_000
            if rng.random() < 0.35:
                dur = rng.uniform(20, 290)
            else:
                dur = min(3600.0, max(301.0, rng.lognormvariate(math.log(900), 0.7)))
            down.append((a, a + int(dur * NS), _pick(rng, CAUSE_WEIGHTS)))
        for ev in self._isp_by_pair.get((spec.home, spec.isp), ()):
            if rng.random() < 0.85:
                a = ev.start_ns + rng.randrange(120_000) * 1_000_000
                down.append((a, a + int(ev.duration_s * NS) + rng.randrange(-60_000, 60_001) * 1_000_000,
                             "isp"))
        kept = []
        for a, b, cause in down:
            ka, kb = self._k_at(base, a), self._k_at(base, b)
            if kb > ka and inside(ka, kb):
                kept.append((ka, kb, cause))
        # 5. Speed tests (exponential, 6 h mean): skipped near an outage; a test pauses rounds.
        tests = []
        t = max(spec.join_ns, self.start_ns) + int(next_interval_s(rng.random(), 6.0) * NS)
        while t < self.end_ns - 120 * NS:
            dur_s = round(rng.uniform(18, 32), 3)
            kt, kd = self._k_at(base, t), self._k_at(base, t + int(dur_s * NS))
            if inside(kt, kd):
                near = any(ka - 2 <= kd and kt <= kb + 2 for ka, kb, _ in kept)
                tests.append((t, dur_s, "near" if near else ("failed" if rng.random() < 0.02 else "ok"),
                              kt, kd))
            t += int(next_interval_s(rng.random(), 6.0) * NS)
        pauses = [(kt, kd) for _, _, status, kt, kd in tests if status != "near" and kd > kt]
        ranges = _subtract(ranges, pauses)
        # 6. Which rounds failed, and how.
        special: dict[int, str] = {}
        for ka, kb, cause in kept:
            pr = CAUSE_PRIORITY[cause]
            for k in range(ka, kb):
                c = special.get(k)
                if c is None or CAUSE_PRIORITY[c] > pr:
                    special[k] = cause
        line = LINES[spec.access]
        p_degraded = 1 - (1 - line["loss"]) ** 3
        blocked = set()
        for kt, kd in pauses:
            blocked.update(range(kt - 2, kd + 2))
        for k0, k1 in ranges:
            n = k1 - k0 - 2 * MARGIN_ROUNDS
            if n <= 0:
                continue
            for _ in range(_binomial(rng, n, p_degraded)):
                k = k0 + MARGIN_ROUNDS + rng.randrange(n)
                if k not in special and k not in blocked:
                    special[k] = "degraded"
            for _ in range(_poisson(rng, n * self.round_s / (7 * 86400))):  # a loss burst a week
                k = k0 + MARGIN_ROUNDS + rng.randrange(n)
                for kk in range(k, min(k + rng.randint(3, 12), k1 - MARGIN_ROUNDS)):
                    if kk not in special and kk not in blocked:
                        special[kk] = "degraded"
        # 7. The agent's outage tracker over those rounds.
        for ep, close_k in _track(special, base, R, battery):
            episodes.append(ep)
            emit.append((base + close_k * R + 1, "outage", ep))  # with the round that closed it
        # 8. Pools and tests' rows.
        pools = self._pools(rng, spec)
        idx = array("H")
        idx.frombytes(rng.randbytes(2 * max(k_end, 0)))
        # An episode is open (a test is skipped) from its third failed round to its end.
        conn_eps = [(to_ns(ep.start) + (OPEN_AFTER - 1) * R, to_ns(ep.end)) for ep in episodes
                    if ep.type == "connectivity"]
        speeds = []
        server = rng.choice(SERVERS[spec.home])
        distance = round(rng.uniform(2, 400) if server[1] not in spec.city_key else rng.uniform(1, 30), 2)
        plan_mbps = (rng.choice(line["plans"]) if line["plans"] else rng.lognormvariate(math.log(15), 0.5))
        up_share = rng.uniform(*line["up"])
        rtt_med = pools["rtt_median"]
        for t, dur_s, status, _kt, _kd in tests:
            start = from_ns(t)
            if status == "near" and not any(a <= t < b for a, b in conn_eps):
                continue                           # next to a blip: this test is left out
            if status == "near":
                s = Sample("speedtest", {"source": "speedtest.net"},
                           {"status": "skipped", "skip_reason": "outage",
                            "error_detail": "a connectivity outage is in progress"}, start)
            elif status == "failed":
                s = Sample("speedtest", {"source": "speedtest.net"},
                           {"status": "failed", "error": "download_failed",
                            "error_detail": "no byte arrived (the download requests all failed)",
                            "bytes_received": 0, "bytes_sent": 0, "duration_s": round(dur_s / 3, 3)}, start)
            else:
                hour_pkt = ((t + PKT_NS) // HOUR_NS) % 24
                evening = 0.75 if 19 <= hour_pkt <= 23 else 1.0
                dl = plan_mbps * 1e6 * rng.uniform(0.7, 0.98) * evening
                ul = plan_mbps * 1e6 * up_share * rng.uniform(0.8, 1.0)
                dl, ul = round(dl, 3), round(ul, 3)
                s = Sample("speedtest", {"source": "speedtest.net", "server": server[0]},
                           {"status": "ok", "download_bps": dl, "upload_bps": ul,
                            "bytes_received": int(min(409e6, dl * rng.uniform(8, 10) / 8)),
                            "bytes_sent": int(min(152e6, ul * rng.uniform(8, 10) / 8)),
                            "server_name": server[1], "server_sponsor": server[2],
                            "ping_ms": round(rtt_med * rng.uniform(0.9, 1.3), 3),
                            "server_distance_km": distance, "duration_s": dur_s}, start)
                speeds.append((t, dl, ul))
            emit.append((t if status == "near" else t + int(dur_s * NS), "speedtest", s))
        p = _Plan(spec, base, ping_off, ranges, special, idx, episodes, emit, speeds, pools,
                  host_down_s=host_down_s, off_s=off_s, off=off, cuts=[(a, b, ev) for a, b, _, ev, _ in cuts])
        if self.bad:
            self._inject(p, rng)
        p.emit.sort(key=lambda e: e[0])
        return p

    def _pools(self, rng: random.Random, spec: AgentSpec) -> dict:
        line = LINES[spec.access]
        med = rng.uniform(*line["rtt"]) + REMOTE.get(spec.home, 0.0)
        sigma, mu = line["sigma"], math.log(med)

        def rtt() -> float:
            return round(min(450.0, rng.lognormvariate(mu, sigma)), 6)

        def entry(fields: dict) -> tuple:
            return (fields, lineproto.field_set(fields), fields.get("rtt_avg_ms"), fields["loss_pct"],
                    fields.get("received"))

        up = [entry(echo_stats(3, [rtt(), rtt(), rtt()])) for _ in range(128)]
        lossy = []
        for j in range(16):
            got = [rtt(), rtt(), rtt()]
            lost = rng.sample(range(3), 1 if j % 4 else 2)
            lossy.append(entry(echo_stats(3, [None if n in lost else r for n, r in enumerate(got)])))
        dead = entry(echo_stats(3, [None, None, None]))
        R = self.round_s

        def rnd(status: str, duration: float, cause: str | None = None) -> tuple:
            f = {"status": status, "duration_s": round(duration, 4), "interval_s": R, "probe_errors": 0}
            if cause:
                f["cause"] = cause
            return (f, lineproto.field_set(f))

        pools = {"ping_up": up, "ping_lossy": lossy, "ping_dead": [dead],
                 "round_up": [rnd("up", 0.4 + up[j][0]["rtt_max_ms"] / 1000 + rng.uniform(0.001, 0.02))
                              for j in range(16)],
                 "round_degraded": [rnd("degraded", rng.uniform(2.4, 2.6), "loss") for _ in range(4)],
                 "rtt_median": med}
        for cause in ("lan", "isp", "dns"):
            pools[f"round_{cause}"] = [rnd("down", rng.uniform(2.4, 2.8), cause) for _ in range(4)]
        return pools

    @staticmethod
    def _round_ping(pools: dict, code: str | None, j: int) -> tuple[tuple, tuple]:
        """(round entry, ping entry) for one round: its status code and its 16 random bits."""
        if code is None:
            return pools["round_up"][(j >> 7) & 15], pools["ping_up"][j & 127]
        if code == "degraded":
            return pools["round_degraded"][(j >> 7) & 3], pools["ping_lossy"][j & 15]
        if code == "badping":
            return pools["round_up"][(j >> 7) & 15], pools["bad_ping"]
        ping = pools["ping_up"][j & 127] if code == "dns" else pools["ping_dead"][0]
        return pools[f"round_{code}"][(j >> 7) & 3], ping

    def _emit_sample(self, p: _Plan, ev: tuple) -> Sample:
        _, kind, payload = ev
        if kind == "outage":
            return episode_sample(payload, p.spec.tags)
        return payload.with_tags(p.spec.tags)

    def _agent_lines(self, i: int) -> Iterator[tuple[str, int]]:
        """(text, lines) parts for one agent: the hot path of :meth:`lines` (same rows, same
        order as :meth:`samples`, but formatted straight from the pools' encoded field sets)."""
        p = self._plan(i)
        tags = p.spec.tags
        rk = lineproto.series_key("round", tags) + " "
        pk = lineproto.series_key("ping", {**tags, "target": TARGET, "method": "icmp_dgram",
                                           "role": "internet"}) + " "
        R, base, po = self.R, p.base, p.ping_off
        pools, special, idx, flood = p.pools, p.special, p.idx, p.flood
        up_r = [rk + e[1] + " " for e in pools["round_up"]]
        up_p = [pk + e[1] + " " for e in pools["ping_up"]]
        emit = [(t, self._emit_line(p, (t, kind, payload))) for t, kind, payload in p.emit]
        never = 1 << 62
        e, next_emit = 0, (emit[0][0] if emit else never)
        out: list[str] = []
        n = 0
        for k0, k1 in p.ranges:
            for k in range(k0, k1):
                t = base + k * R
                if next_emit < t:
                    while e < len(emit) and emit[e][0] < t:
                        out.append(emit[e][1])
                        e += 1
                        n += 1
                    next_emit = emit[e][0] if e < len(emit) else never
                c = special.get(k)
                if c is None and not flood:
                    j = idx[k]
                    out.append(f"{up_r[(j >> 7) & 15]}{t}\n{up_p[j & 127]}{t + po}\n")
                    n += 2
                else:
                    rf, pf = self._round_ping(pools, c, idx[k])
                    for cc in range(FLOOD_COPIES if flood else 1):
                        out.append(f"{rk}{rf[1]} {t + cc * 1_000_000}\n")
                    out.append(f"{pk}{pf[1]} {t + po}\n")
                    n += (FLOOD_COPIES if flood else 1) + 1
                if n >= 8192:
                    yield "".join(out), n
                    out, n = [], 0
        for _, text in emit[e:]:
            out.append(text)
            n += 1
        if out:
            yield "".join(out), n

    def _emit_line(self, p: _Plan, ev: tuple) -> str:
        s = self._emit_sample(p, ev)
        return lineproto.line(s.measurement, s.tags, s.fields, s.time_ns) + "\n"

    def _obs_hours(self, p: _Plan) -> dict[int, float]:
        out: dict[int, float] = {}
        R, base = self.R, p.base
        for k0, k1 in p.ranges:
            k = k0
            while k < k1:
                t = base + k * R
                h = t // HOUR_NS * HOUR_NS
                kh = min(k1, self._k_at(base, h + HOUR_NS))
                out[h // NS] = out.get(h // NS, 0.0) + (kh - k) * self.round_s
                k = kh
        return dict(sorted(out.items()))

    def _ping_days(self, p: _Plan) -> list[PingDay]:
        days: dict[int, tuple[list, list, list]] = {}
        R, base, po = self.R, p.base, p.ping_off
        for k0, k1 in p.ranges:
            for k in range(k0, k1):
                t = base + k * R + po
                d = t // DAY_NS * DAY_NS // NS
                rtts, losses = days.setdefault(d, ([], []))
                _, pf = self._round_ping(p.pools, p.special.get(k), p.idx[k])
                if pf[0]["received"]:
                    rtts.append(pf[0]["rtt_avg_ms"])
                    losses.append(pf[0]["loss_pct"])
        unit = p.spec.unit
        out = []
        for d in sorted(days):
            rtts, losses = days[d]
            if not losses:
                continue                           # the target never answered that day
            out.append(PingDay(unit, d, _nearest_rank(sorted(rtts), 50), _nearest_rank(sorted(rtts), 95),
                               math.fsum(losses) / len(losses), len(losses)))
        return out

    # -- bad records -----------------------------------------------------------------------------
    def _inject(self, p: _Plan, rng: random.Random) -> None:
        agent = p.spec.agent
        kinds = [k for k, i in self.bad_agents.items() if i == p.spec.index]
        for kind in kinds:
            if kind == "negative_duration":
                k0, k1 = p.ranges[len(p.ranges) // 2]
                t = p.base + (k0 + k1) // 2 * self.R
                ep = AgentEpisode(id=f"connectivity:{t}", type="connectivity", cause="isp", start=from_ns(t),
                                  end=from_ns(t - 120 * NS), duration_s=-120.0, sustained=False,
                                  details={"failed_rounds": 3})
                p.emit.append((t + 60 * NS, "outage", ep))
                p.bad_ids.add(ep.id)
                p.bad.append({"kind": kind, "count": 1, "agent": agent, "episode_id": ep.id,
                              "duration_s": -120.0})
            elif kind == "future_start":
                t = self.end_ns + 2 * DAY_NS + 3 * HOUR_NS
                ep = AgentEpisode(id=f"connectivity:{t}", type="connectivity", cause="isp", start=from_ns(t),
                                  end=from_ns(t + 600 * NS), duration_s=600.0, sustained=True,
                                  details={"failed_rounds": int(600 // self.round_s)})
                p.emit.append((self.end_ns, "outage", ep))
                p.bad_ids.add(ep.id)
                p.bad.append({"kind": kind, "count": 1, "agent": agent, "episode_id": ep.id,
                              "start": t / NS, "days_after_end": 2 + 3 / 24})
            elif kind == "overlapping_power":
                mine = [ep for ep in p.episodes if ep.type == "power"]
                if mine:
                    ref = max(mine, key=lambda e: e.duration_s)
                else:  # nothing seen by this agent: the pair is made up whole
                    k0, k1 = p.ranges[0]
                    t = p.base + (k0 + k1) // 2 * self.R
                    ref = AgentEpisode(id=f"power:battery:{t}", type="power", cause="ac_lost",
                                       start=from_ns(t),
                                       end=from_ns(t + 1800 * NS), duration_s=1800.0, sustained=True,
                                       details={"source": "battery"})
                    p.emit.append((t + 1800 * NS, "outage", ref))
                    p.bad_ids.add(ref.id)
                s_ns = to_ns(ref.start) + int(ref.duration_s * NS) // 2 // 1000 * 1000
                dur = round(ref.duration_s, 3)
                ep = AgentEpisode(id=f"power:battery:{s_ns}", type="power", cause="ac_lost",
                                  start=from_ns(s_ns),
                                  end=from_ns(s_ns + int(dur * NS)), duration_s=dur,
                                  sustained=dur > MOMENTARY_MAX_S, details={"source": "battery"})
                p.emit.append((s_ns + int(dur * NS), "outage", ep))
                p.bad_ids.add(ep.id)
                p.bad.append({"kind": kind, "count": 1, "agent": agent, "episode_ids": [ref.id, ep.id],
                              "overlap_s": round(ref.duration_s / 2, 3), "made_up_both": not mine})
            elif kind == "negative_rtt":
                k0, k1 = p.ranges[len(p.ranges) // 2]
                k = next(k for k in range((k0 + k1) // 2, k1) if k not in p.special)
                fields = dict(p.pools["ping_up"][p.idx[k] & 127][0])
                fields["rtt_avg_ms"] = -5.0
                p.pools["bad_ping"] = (fields, lineproto.field_set(fields), -5.0, fields["loss_pct"], 3)
                p.special[k] = "badping"
                p.bad.append({"kind": kind, "count": 1, "agent": agent,
                              "time": (p.base + k * self.R + p.ping_off) / NS})
            elif kind == "huge_download":
                for j, (t, kind2, s) in enumerate(p.emit):
                    if kind2 == "speedtest" and s.fields["status"] == "ok":
                        p.emit[j] = (t, kind2, Sample(s.measurement, s.tags,
                                                      {**s.fields, "download_bps": 1e13}, s.time))
                        p.speeds = [x for x in p.speeds if x[0] != to_ns(s.time)]
                        p.bad.append({"kind": kind, "count": 1, "agent": agent, "time": s.time.timestamp(),
                                      "download_bps": 1e13})
                        break
                else:
                    raise RuntimeError(f"{agent}: no successful speed test to spoil "
                                       "(a longer fleet is needed)")
            elif kind == "unknown_region":
                p.bad.append({"kind": kind, "count": 1, "agent": agent, "region": "PK-XX",
                              "home": p.spec.home})
            elif kind == "flooding":
                p.flood = True
                n = sum(k1 - k0 for k0, k1 in p.ranges)
                p.bad.append({"kind": kind, "count": 1, "agent": agent, "copies": FLOOD_COPIES,
                              "extra_round_rows": n * (FLOOD_COPIES - 1),
                              "observed_s": n * self.round_s,
                              "apparent_observed_s": n * self.round_s * FLOOD_COPIES})


_WORKER_FLEET: list = []


def _worker_init(fleet: Fleet) -> None:
    _WORKER_FLEET[:] = [fleet]


def _worker_chunks(args: tuple[int, int]) -> list[tuple[bytes, int]]:
    i, chunk = args
    return _WORKER_FLEET[0]._agent_chunks(i, chunk)


def _binomial(rng: random.Random, n: int, p: float) -> int:
    if n * p < 30:
        return _poisson(rng, n * p)
    return max(0, int(round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))))


def _subtract(ranges: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` minus ``holes`` (both [a, b) integer intervals), sorted, empty ones dropped."""
    out = []
    holes = sorted(h for h in holes if h[1] > h[0])
    for a, b in ranges:
        cur = a
        for ha, hb in holes:
            if hb <= cur or ha >= b:
                continue
            if ha > cur:
                out.append((cur, ha))
            cur = max(cur, hb)
        if cur < b:
            out.append((cur, b))
    return out


def _track(special: dict[int, str], base: int, R: int, battery: list[tuple[int, int]]
           ) -> list[tuple[AgentEpisode, int]]:
    """agent.outage.step's hysteresis over the failed and degraded rounds, fed sparsely: every
    special round and the two rounds after each (after two good rounds both streaks are reset,
    so the rounds in between cannot change anything). Returns (episode, closing round k)."""
    feed = sorted(set(special) | {k + d for k in special for d in (1, 2)})
    battery = sorted(battery)
    out = []

    starts = [a for a, _ in battery]

    def on_batt(t: int) -> bool:
        j = bisect_right(starts, t) - 1
        return j >= 0 and t < battery[j][1]

    streaks = {"connectivity": _Streak(), "degraded": _Streak()}
    for k in feed:
        code = special.get(k)
        status = "up" if code in (None, "badping") else ("degraded" if code == "degraded" else "down")
        cause = None if status == "up" else ("loss" if status == "degraded" else code)
        for kind, bad_status in (("connectivity", "down"), ("degraded", "degraded")):
            s = streaks[kind]
            if status == bad_status:
                if not (s.bad or s.open is not None):
                    s.causes = {}
                s.causes[cause] = s.causes.get(cause, 0) + 1
                if s.bad == 0:
                    s.bad_start, s.power_at_start = k, on_batt(base + k * R)
                s.bad += 1
                s.good, s.good_start = 0, None
                if s.open is None and s.bad >= OPEN_AFTER:
                    s.open, s.open_power = s.bad_start, s.power_at_start
            else:
                if s.open is None:
                    if s.bad:
                        streaks[kind] = _Streak()  # a blip shorter than OPEN_AFTER
                    continue
                if s.good == 0:
                    s.good_start = k
                s.good += 1
                s.bad = 0
                if s.good >= CLOSE_AFTER:
                    out.append((_tracked_episode(kind, s, base, R), k))
                    streaks[kind] = _Streak()
    return out


class _Streak:
    __slots__ = ("bad", "bad_start", "causes", "good", "good_start", "open", "open_power", "power_at_start")

    def __init__(self) -> None:
        self.bad, self.bad_start, self.causes, self.power_at_start = 0, None, {}, False
        self.good, self.good_start, self.open, self.open_power = 0, None, None, False


def _tracked_episode(kind: str, s: _Streak, base: int, R: int) -> AgentEpisode:
    t0, t1 = base + s.open * R, base + s.good_start * R
    duration = round((t1 - t0) / NS, 3)
    if s.open_power:
        cause = "power"
    else:
        rank = {c: i for i, c in enumerate(CAUSE_ORDER)}
        cause = min(s.causes, key=lambda c: (-s.causes[c], rank.get(c, len(rank)), c))
    end = from_ns(t1)
    return AgentEpisode(id=f"{kind}:{t0}", type=kind, cause=cause, start=end - timedelta(seconds=duration),
                        end=end, duration_s=duration, sustained=duration > MOMENTARY_MAX_S,
                        details={"failed_rounds": sum(s.causes.values())})


def fleet_start(days: int, now: float | None = None) -> int:
    """The UTC midnight ``days`` days before today's: a fleet from there ends at today's midnight."""
    now = time.time() if now is None else now
    return utc_midnight(now) - days * 86400


__all__ = ["BAD_KINDS", "REGIONS", "AgentSpec", "Fleet", "IspEvent", "PowerEvent", "fleet_start",
           "utc_midnight"]
