"""IEEE 1366 reliability indices with one agent as one customer, observation-aware (pure).

Volunteers' agents are not always watching: a machine its owner switched off is not a customer
for that time. So "customers served" is the observed exposure: the sum of the agents' observed
time divided by the period's length (four agents watching half the period count as two
customers). An interruption counts only for the agent that saw it.

With ``E`` = observed agent-seconds over the period, ``T`` = the period's length in seconds and
``N = E / T`` the customers served:

* ``power_saifi``     = sustained interruptions / N
* ``power_saidi_min`` = sustained interruption minutes / N
* ``power_caidi_min`` = SAIDI / SAIFI (minutes per sustained interruption; None without one)
* ``power_maifi``     = momentary interruptions / N
* ``power_asai``      = 1 - sustained interruption seconds / E

Sustained means longer than ``momentary_max_s`` (IEEE 1366: 5 minutes), by the interruption's
whole duration, even when only part of it counts (the part in the window and in watched time:
its minutes in SAIDI and ASAI); momentary ones count only in MAIFI. With nothing observed (E = 0)
every index is None: no customers, no figure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MOMENTARY_MAX_S = 300.0


@dataclass(frozen=True)
class Interruption:
    """One interruption seen by one agent: its whole length in seconds (its class), and the
    seconds of it that count in SAIDI and ASAI (None: all of them)."""

    agent: str
    duration_s: float
    counted_s: float | None = None


@dataclass(frozen=True)
class Indices:
    customers: float            # N: observed agent-time / period
    sustained: int
    momentary: int
    power_saifi: float | None
    power_saidi_min: float | None
    power_caidi_min: float | None
    power_maifi: float | None
    power_asai: float | None


def ieee1366(interruptions: Iterable[Interruption], observed_s: float, period_s: float,
             momentary_max_s: float = MOMENTARY_MAX_S) -> Indices:
    """The indices for one cell. ``observed_s``: the agents' observed seconds summed (including
    time their host was down for power: a power cut is an interruption, not absence);
    ``period_s``: the cell's period. Negative durations are a caller's bug (the collector clips
    and counts them before this point) and raise ValueError."""
    sustained = momentary = 0
    sustained_s = 0.0
    for it in interruptions:
        counted = it.duration_s if it.counted_s is None else it.counted_s
        if it.duration_s < 0 or not 0 <= counted <= it.duration_s + 1e-6:   # float sums
            raise ValueError(f"negative or inconsistent interruption for {it.agent}: "
                             f"{it.duration_s} s, {counted} s counted")
        if it.duration_s > momentary_max_s:
            sustained += 1
            sustained_s += counted
        else:
            momentary += 1
    return from_sums(sustained, sustained_s, momentary, observed_s, period_s)


def from_sums(sustained: int, sustained_s: float, momentary: int, observed_s: float,
              period_s: float) -> Indices:
    """The indices from a cell's sums (the collector sums with numpy and comes here): counts of
    sustained and momentary interruptions, the sustained ones' total seconds, observed
    agent-seconds and the period's seconds."""
    if period_s <= 0:
        raise ValueError(f"period_s must be > 0, got {period_s}")
    if observed_s < 0:
        raise ValueError(f"observed_s must be >= 0, got {observed_s}")
    n = observed_s / period_s
    if observed_s == 0:
        return Indices(0.0, sustained, momentary, None, None, None, None, None)
    saifi = sustained / n
    saidi = sustained_s / 60.0 / n
    return Indices(
        customers=n, sustained=sustained, momentary=momentary,
        power_saifi=saifi,
        power_saidi_min=saidi,
        power_caidi_min=(saidi / saifi) if sustained else None,
        power_maifi=momentary / n,
        # Clipped at 0: interruptions longer than the observed time mean overlapping input,
        # which the collector rejects and counts before this point.
        power_asai=max(0.0, 1.0 - sustained_s / observed_s),
    )
