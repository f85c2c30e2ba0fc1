"""Every word an alert says, in one place: titles and texts by event, the causes in plain
words, times in the user's time zone and lengths as people say them.

A translation is another :data:`WORDS` table with the same keys (the ``{name}`` fields are the
same in every language); :func:`say` fills one. Pure: the time zone comes in as a ``tzinfo``.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

# event -> (title, text). The fields each may use are listed in :func:`say`'s callers
# (agent/alerts/rules.py): start, end, length, cause, what, target, how, source, ups, charge,
# runtime, download, plan, share, drops, window, since, reason, summary.
WORDS: dict[str, tuple[str, str]] = {
    "outage_start": ("Internet down ({cause_short})",
                     "Internet down since {start}: {cause}.{what}"),
    "outage_end": ("Internet back after {length}",
                   "Internet was down {start}-{end}, {length}: {cause}."),
    "power_start": ("Power cut", "Power cut since {start} ({source}){ups}."),
    "power_end": ("Power back after {length}", "Power was cut {start}-{end}, {length} ({source})."),
    "host_down": ("This machine was off for {length}",
                  "This machine was off {start}-{end}, {length}: most likely a power cut."),
    "unwatched": ("{what}: no longer watched",
                  "{what} since {start}: linewatch stopped watching at {end} ({length} in), "
                  "its machine off or the agent stopped. Whether the {lost} went on is not "
                  "known."),
    "ups_low": ("UPS battery low: {charge}", "UPS battery at {charge}{runtime}, in a power cut "
                "since {start}. Save your work."),
    "interference_start": ("{target} blocked ({how})",
                           "{target} fails while the line is up, since {start}: {how}."),
    "interference_end": ("{target} reachable again",
                         "{target} was failing {start}-{end}, {length}: {how}."),
    "throttle_start": ("{target} slowed down",
                       "{target} is slowed down since {start}: {how}."),
    "throttle_end": ("{target} at full speed again",
                     "{target} was slowed down {start}-{end}, {length}."),
    "speed_below_plan": ("Speed {share} of your plan",
                         "Speed test at {start}: {download} down, {share} of the {plan} you pay "
                         "for."),
    "store_trouble": ("linewatch cannot save its measurements",
                      "linewatch cannot write its store since {start} ({reason}): measurements "
                      "wait in memory for up to an hour. Free some disk space."),
    "store_damaged": ("linewatch's store was damaged",
                      "linewatch found its store damaged at {start} and started a new one; the "
                      "old file was kept as {reason}."),
    "line_unstable": ("Line unstable: {drops} drops in {window}",
                      "Your line dropped {drops} times in {window} (last {start}, {cause}). No "
                      "more outage alerts until it holds for {quiet}, unless it stays down."),
    "digest": ("Your line, last 24 hours", "{summary}"),
    "test": ("linewatch test alert", "A test from linewatch on {agent} at {start}: this channel "
             "works."),
}

CAUSES: dict[str, tuple[str, str]] = {
    # cause -> (short, long)
    "isp": ("ISP", "the ISP's side (your router answers, the internet does not)"),
    "lan": ("local network", "your local network (the router does not answer)"),
    "dns": ("DNS", "DNS (the internet answers, names do not resolve)"),
    "power": ("power cut", "a power cut"),
    "unknown": ("cause unknown", "cause unknown"),
}

HOW: dict[str, str] = {
    # interference: step -> words
    "dns": "its name does not resolve as it should",
    "tcp": "connections to it fail",
    "tls": "its secure connection is cut",
    "http": "it does not answer over HTTP",
    "vpn": "the VPN server does not answer",
    "throttled": "slowed down by name",
}

SOURCES: dict[str, str] = {"battery": "laptop on battery", "ups": "on UPS"}

DIGEST: dict[str, str] = {
    "none": "No outages, power cuts or blocking in the last 24 hours.",
    "outages": "{n} internet outage(s), {length} in all (longest {longest}).",
    "power": "{n} power cut(s), {length} in all.",
    "interference": "{n} blocking episode(s): {targets}.",
    "speed": "{n} speed test(s), median {download} down.",
}


def say(key: str, **fields: str) -> tuple[str, str]:
    """(title, text) of ``key`` with its fields filled."""
    title, text = WORDS[key]
    return title.format(**fields), text.format(**fields)


def cause_words(cause: str) -> tuple[str, str]:
    return CAUSES.get(cause, (cause, cause))


def length(seconds: float) -> str:
    """45 s, 17 min, 1 h 38 min, 2 d 3 h: as people say a length of time."""
    s = max(0, int(round(seconds)))
    if s < 90:
        return f"{s} s"
    m = (s + 30) // 60
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def clock(t: datetime, tz: tzinfo | None, now: datetime | None = None) -> str:
    """``t`` in the user's zone: "10:02" on the day of ``now``, else "Mon 5 Dec 10:02"."""
    local = t.astimezone(tz)
    if now is not None and local.date() == now.astimezone(tz).date():
        return local.strftime("%H:%M")
    return f"{local.strftime('%a')} {local.day} {local.strftime('%b %H:%M')}"


def span(start: datetime, end: datetime, tz: tzinfo | None, now: datetime) -> tuple[str, str]:
    """(start, end) as :func:`clock` shows them; the end without its day when it is the
    start's day."""
    a = clock(start, tz, now)
    b = end.astimezone(tz)
    same_day = start.astimezone(tz).date() == b.date()
    return a, (b.strftime("%H:%M") if same_day else clock(end, tz, now))


def percent(x: float) -> str:
    return f"{x:.0f} %"


def mbps(x: float) -> str:
    return f"{x:.1f} Mbit/s" if x < 10 else f"{x:.0f} Mbit/s"


def minutes_left(runtime_s: float) -> str:
    return f"about {length(runtime_s)} left"


def zone(name: str) -> tzinfo | None:
    """The IANA zone ``name`` (alerts.time_zone), None for this machine's own."""
    if not name:
        return None
    # deferred: zoneinfo (about 0.5 MB) loads only when alerts.time_zone is set
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
