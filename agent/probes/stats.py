"""Statistics over one round of echoes (ICMP or TCP): the pure core shared by the echo probes.

The fields follow the house rules: units in the names, and a value that could not be measured is
left out instead of being written as a sentinel. A round where nothing came back is recorded as the
truth, ``loss_pct = 100.0``, so an outage is a point on the graph rather than a hole in it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def echo_stats(sent: int, rtts_ms: Sequence[float | None]) -> dict[str, int | float]:
    """Loss and round-trip statistics for ``sent`` echoes.

    ``rtts_ms`` holds one entry per echo, in send order: the round-trip time in milliseconds, or
    None when the echo was lost (no reply within its timeout, or it could not even be sent).

    Returns a new dict with:

    - ``sent`` (int) and ``received`` (int, the number of non-None entries);
    - ``loss_pct`` (float, 0.0..100.0): lost / sent x 100, and 100.0 when nothing came back,
      including the degenerate ``sent == 0`` (no reply was seen, and 100 % is never a sentinel);
    - when ``received >= 1``: ``rtt_min_ms``, ``rtt_avg_ms``, ``rtt_max_ms`` (floats, ms);
    - when ``received >= 2``: ``jitter_ms`` (float, ms), the mean absolute difference between
      consecutive received RTTs in send order (lost echoes are skipped, not counted as zero). This
      is the smoothing-free form of the RFC 3550 inter-arrival jitter, as most ping monitors report.

    Raises ValueError when ``len(rtts_ms) != sent`` or an RTT is negative or not finite: those are
    bugs in the caller, and silently "fixing" them would publish wrong numbers.
    """
    if sent < 0:
        raise ValueError(f"sent must be >= 0, got {sent}")
    if len(rtts_ms) != sent:
        raise ValueError(f"need one RTT entry (or None) per echo sent: {len(rtts_ms)} for {sent}")
    got = [float(r) for r in rtts_ms if r is not None]
    for r in got:
        if not math.isfinite(r) or r < 0:
            raise ValueError(f"an RTT must be a finite number of ms >= 0, got {r}")

    received = len(got)
    out: dict[str, int | float] = {
        "sent": sent,
        "received": received,
        "loss_pct": 100.0 * (sent - received) / sent if received else 100.0,
    }
    if received >= 1:
        lo, hi = min(got), max(got)
        # fsum keeps the mean exact to the last bit; the clamp guards the remaining rounding so that
        # min <= avg <= max always holds (e.g. three equal RTTs must not average a hair above them).
        avg = min(max(math.fsum(got) / received, lo), hi)
        out.update(rtt_min_ms=lo, rtt_avg_ms=avg, rtt_max_ms=hi)
    if received >= 2:
        diffs = [abs(b - a) for a, b in zip(got, got[1:], strict=False)]
        out["jitter_ms"] = math.fsum(diffs) / len(diffs)
    return out
