"""One definition per figure and per word: the vocabularies, the rules and the figures that the
agent's `status`, the worker's line report, the collector and the dashboard builder all use.

* Vocabularies: location tags (:data:`LOCATION_TAGS`, :data:`CELL_KEYS`), regions
  (:data:`PK_REGIONS`, :func:`region_code`), access types, episode types and causes
  (:data:`POWER_CAUSES`, :data:`INTERNET_CAUSES`), weekdays, the reasons a record is rejected
  (:class:`Quality`).
* Rules: when a power episode joins the cut before it (:func:`joins_previous_cut`), which rows
  come from a clock that was never set (:data:`CLOCK_SET`), the longest a round may cover.
* Figures: :func:`availability` (docs/methodology.md says which rule and why), the percentiles
  (:func:`quantile` for our own figures, :func:`nearest_rank` where a figure must match InfluxQL's
  ``PERCENTILE``).
* :class:`Unit`: one agent in one place, as its location tags put it.

Pure and stdlib-only: the agent imports it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kit.configkit import show

# -- location tags ------------------------------------------------------------------------------

# The tags every row of an agent carries besides its id, in the order `status` and the config show
# them; ``site`` (the line the agent watches) is derived, not configured.
PLACE_TAGS: tuple[str, ...] = ("region", "city", "isp", "access")
# Every tag that places a row: the agent, where it is, the line it watches.
LOCATION_TAGS: tuple[str, ...] = ("agent", "region", "isp", "city", "access", "site")
# The tags that can define a cell, in the order the collector's --by accepts them.
CELL_KEYS: tuple[str, ...] = ("region", "isp", "city", "access")

# Pakistan's ISO 3166-2 codes; any other well-formed ISO 3166-2 code is accepted too.
PK_REGIONS: dict[str, str] = {
    "PK-PB": "Punjab",
    "PK-SD": "Sindh",
    "PK-KP": "Khyber Pakhtunkhwa",
    "PK-BA": "Balochistan",
    "PK-IS": "Islamabad Capital Territory",
    "PK-GB": "Gilgit-Baltistan",
    "PK-JK": "Azad Jammu and Kashmir",
}
ACCESS_TYPES: tuple[str, ...] = (
    "fibre", "dsl", "cable", "mobile", "hotspot", "wireless", "satellite", "other",
)
ECHO_METHODS: tuple[str, ...] = ("auto", "icmp_dgram", "icmp_raw", "tcp")

REGION_RE = re.compile(r"^[A-Z]{2}-[A-Z0-9]{1,3}$")


# -- regions and access types as people type them -------------------------------------------

# What people type for a region, compared without case, spaces or punctuation ("Khyber-Pakhtunkhwa"
# = "khyber pakhtunkhwa"): names, old names, abbreviations, the code without "PK-", Urdu names.
_PK_NAMES: dict[str, tuple[str, ...]] = {
    "PK-PB": ("punjab", "pb", "پنجاب"),
    "PK-SD": ("sindh", "sind", "sd", "سندھ"),
    "PK-KP": ("khyberpakhtunkhwa", "khyberpakhtoonkhwa", "pakhtunkhwa", "kpk", "kp", "nwfp",
              "northwestfrontierprovince", "خیبرپختونخوا"),
    "PK-BA": ("balochistan", "baluchistan", "ba", "بلوچستان"),
    "PK-IS": ("islamabad", "islamabadcapitalterritory", "ict", "isb", "is", "اسلامآباد"),
    "PK-GB": ("gilgitbaltistan", "gb", "northernareas", "گلگتبلتستان"),
    "PK-JK": ("azadjammuandkashmir", "azadjammukashmir", "azadkashmir", "ajk", "jk", "آزادکشمیر"),
}
# Cities name their province only with the user's yes: a Hyderabad may be in India.
_PK_CITIES: dict[str, tuple[str, ...]] = {
    "PK-SD": ("karachi", "hyderabad", "sukkur", "larkana", "کراچی", "حیدرآباد"),
    "PK-PB": ("lahore", "faisalabad", "rawalpindi", "multan", "gujranwala", "sialkot", "bahawalpur",
              "sargodha", "لاہور", "فیصلآباد", "راولپنڈی", "ملتان"),
    "PK-KP": ("peshawar", "mardan", "abbottabad", "پشاور"),
    "PK-BA": ("quetta", "کوئٹہ"),
    "PK-GB": ("gilgit", "skardu"),
    "PK-JK": ("muzaffarabad", "mirpur"),
}
_NAME_TO_CODE = {n: c for c, names in _PK_NAMES.items() for n in names}
_CITY_TO_CODE = {n: c for c, names in _PK_CITIES.items() for n in names}
_ACCESS_ALIASES = {"fiber": "fibre", "ftth": "fibre", "adsl": "dsl", "vdsl": "dsl"}


def pk_codes_named() -> str:
    """"PK-BA Balochistan, PK-GB Gilgit-Baltistan, ...", for messages."""
    return ", ".join(f"{c} {PK_REGIONS[c]}" for c in sorted(PK_REGIONS))


def _name_key(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.casefold())


def region_code(text: str) -> tuple[str, bool]:
    """The ISO 3166-2 code for a region as people type it, and whether to ask before using it.

    ``"PK-PB"``, ``"pk-pb"``, ``"Punjab"``, ``"KPK"``, ``"Islamabad"``: the code, no question.
    A major city (``"Karachi"``) gives its province's code with ``True``: the caller confirms.
    Another country's well-formed code is taken as it is. ``""`` gives ``("", False)``.
    Raises ValueError (a sentence for the user) for anything else, and for a ``PK-`` code that is
    not in ISO 3166-2:PK."""
    text = text.strip()
    if not text:
        return "", False
    upper = text.upper()
    if REGION_RE.match(upper):
        if upper.startswith("PK-") and upper not in PK_REGIONS:
            raise ValueError(f"{text} is not one of Pakistan's ISO 3166-2 codes ({pk_codes_named()})")
        return upper, False
    key = _name_key(text)
    if key in _NAME_TO_CODE:
        return _NAME_TO_CODE[key], False
    if key.startswith("pk") and f"PK-{key[2:].upper()}" in PK_REGIONS:  # "PK PB", "pkpb"
        return f"PK-{key[2:].upper()}", False
    if key in _CITY_TO_CODE:
        return _CITY_TO_CODE[key], True
    raise ValueError(f"{show(text)} is not a region linewatch knows: expected a province or territory "
                     "(Punjab, Sindh, KPK, Balochistan, Islamabad, GB, AJK) or an ISO 3166-2 code "
                     "(" + ", ".join(sorted(PK_REGIONS)) + ")")


def access_type(text: str) -> str:
    """One of ACCESS_TYPES for an access type typed in any case (``"DSL"``, ``"Fiber"``);
    ``""`` stays empty. Raises ValueError (a sentence for the user) for anything else."""
    value = text.strip().lower()
    value = _ACCESS_ALIASES.get(value, value)
    if value and value not in ACCESS_TYPES:
        raise ValueError(f"{show(text.strip())} is not an access type: one of " + ", ".join(ACCESS_TYPES))
    return value


# -- episodes -------------------------------------------------------------------------------------

EPISODE_TYPES: tuple[str, ...] = ("power", "connectivity")
# Causes of power episodes: the AC adapter or UPS lost mains; the host itself went down (a gap in
# its heartbeat).
POWER_CAUSES: tuple[str, ...] = ("ac_lost", "host_down")
# Causes of connectivity episodes, as the agent records them (docs/metrics.md, outage.cause).
INTERNET_CAUSES: tuple[str, ...] = ("power", "lan", "isp", "dns", "unknown")
CAUSES_BY_TYPE: dict[str, tuple[str, ...]] = {"power": POWER_CAUSES, "connectivity": INTERNET_CAUSES}

# One cut can leave several power episodes of one agent: the battery and a watched UPS both see it
# (they overlap or touch), or a battery rides it out until it is flat and the host goes down
# (host_down starts at the last heartbeat, which lies within a round interval of the battery's
# last reading). Those are one interruption. POWER_JOIN_S covers round intervals up to a minute.
POWER_JOIN_S = 60.0
# Rows dated before 2000-01-01 UTC come from a clock that was never set (a Raspberry Pi without
# a real-time clock before it reached a time server dates them from 1970): no window holds them.
CLOCK_SET = 946_684_800
# A round's interval_s is good in (0, MAX_INTERVAL_S]: a round covers at most an hour.
MAX_INTERVAL_S = 3600.0

# -- time -----------------------------------------------------------------------------------------

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # as configs spell them
WEEKDAY_LABELS: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # as pages show them
WORK_DAYS: tuple[str, ...] = WEEKDAYS[:5]


# -- figures --------------------------------------------------------------------------------------

def availability(outage_s: float, observed_s: float) -> float | None:
    """Internet availability, a share in [0, 1]: 1 - connectivity outage seconds / seconds the
    agent was watching (docs/methodology.md, "Availability"). None when nothing was watched.
    Outage time can exceed watched time only through data the callers count apart (an episode
    that ran while the agent was not watching); the share never goes below 0."""
    if observed_s <= 0:
        return None
    return max(0.0, 1.0 - outage_s / observed_s)


def joins_previous_cut(cut_end: float, carried_end: float | None, start: float, cause: str) -> bool:
    """Whether a power episode (``cause``, starting at ``start``) belongs to the cut before it, of
    one agent, its episodes taken in order of start (docs/collector.md, ``power_merged``).

    ``cut_end`` is the latest end of the cut's episodes so far; ``carried_end`` the latest end of
    those that are not ``host_down`` (a battery or UPS carrying the machine through the cut), None
    when all of them are. It joins when it overlaps or touches the cut (starts at or before its
    end), or when it is a ``host_down`` starting within POWER_JOIN_S after ``carried_end``: the
    battery went flat, then the host went down. Episodes carry no sensor, so any other two are
    two cuts, however close; in particular a ``host_down`` after a ``host_down`` (the host booted:
    the power was back) starts a new one. Seconds since 1970."""
    return start <= cut_end or (cause == "host_down" and carried_end is not None
                                and start <= carried_end + POWER_JOIN_S)


def rank(q: float, n: int) -> int:
    """Index of the q-quantile in n sorted values, "inverted CDF": the smallest value whose
    cumulative share reaches q (the lower median for an even n). Rounded first, so 0.1 x 30 is 3
    and not 3.0000000000000004."""
    return min(max(math.ceil(round(q * n, 9)) - 1, 0), n - 1)


def nearest_rank(values: Iterable[float], pct: float) -> float | None:
    """InfluxQL's PERCENTILE(field, pct): the value at index floor(n x pct / 100 + 0.5) - 1 of
    the sorted values (None when that index falls outside). A store file's daily latency uses it
    too, so a file and the server give the same figure."""
    v = sorted(values)
    i = math.floor(len(v) * pct / 100.0 + 0.5) - 1
    return v[i] if 0 <= i < len(v) else None


def quantile(values: Iterable[float], q: float) -> float | None:
    """The q-quantile of ``values`` by :func:`rank` (None when there are none)."""
    v = sorted(values)
    return v[rank(q, len(v))] if v else None


@dataclass(frozen=True, order=True)
class Unit:
    agent: str
    region: str = ""
    isp: str = ""
    city: str = ""
    access: str = ""
    site: str = ""       # the agent's `site` tag; empty (older agents): the agent is its own site

    @property
    def customer(self) -> str:
        """The line this unit watches, which the indices count as one customer: the site, or
        the agent itself when it wrote none (an agent that cannot see its gateway's hardware
        address writes its own id)."""
        return self.site or self.agent

    def key(self, by: tuple[str, ...]) -> tuple[str, ...]:
        """The cell this unit belongs to when cells are formed ``by`` these tags."""
        return tuple(getattr(self, k) for k in by)


# The data quality's ``read`` counters: how many agents (and agent-hours of observed time, in the
# window) were read from ``hourly`` summary rows, and how many from raw rows because the agent
# wrote no summaries (an older version) or not yet (the hours before its first summary).
READ_COUNTERS: tuple[str, ...] = ("agents_from_summaries", "agent_hours_from_summaries",
                                  "agents_from_raw_rows", "agent_hours_from_raw_rows")


@dataclass
class Quality:
    """Records accepted, rejected and clipped, by reason (collector.clean lists the reasons;
    kit.storefile those of store files)."""

    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    clipped: Counter[str] = field(default_factory=Counter)
    unknown_regions: Counter[str] = field(default_factory=Counter)   # code -> records
    unreadable: list[str] = field(default_factory=list)   # one line per store file refused whole
    # Which path the observed hours came from (READ_COUNTERS): summaries or raw rows.
    read: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"accepted": dict(sorted(self.accepted.items())),
               "rejected": {k: v for k, v in sorted(self.rejected.items()) if v},
               "clipped": {k: v for k, v in sorted(self.clipped.items()) if v}}
        if self.unknown_regions:
            out["unknown_region_codes"] = dict(sorted(self.unknown_regions.items()))
        if self.unreadable:
            out["unreadable_stores"] = list(self.unreadable)
        if any(self.read.values()):
            out["read"] = {k: self.read[k] for k in READ_COUNTERS}
        return out

    def merge(self, other: Quality) -> None:
        for mine, theirs in ((self.accepted, other.accepted), (self.rejected, other.rejected),
                             (self.clipped, other.clipped), (self.read, other.read),
                             (self.unknown_regions, other.unknown_regions)):
            mine.update(theirs)
        self.unreadable += other.unreadable
