"""The ``[alerts]`` section and its ``[[alerts.channels]]`` tables: each key documented here,
where it is defined (the example config is written from these fields).

A channel's secret (an ntfy token, a Telegram bot token, an SMTP password, an Apprise URL) is
never a key of this file: it is read as the InfluxDB token is, from
``$LINEWATCH_ALERT_<NAME>_SECRET``, the file ``secret_file`` names, or the systemd credential
``alert-<name>`` (:func:`secret_sources`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agent.alerts.model import EVENTS, KINDS
from kit.configkit import between, check_zone, checked, each, one_of, opt, parse_work_hours, section
from kit.errors import ConfigError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_ADDRESS_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\".]+$")


def _check_name(v: str) -> str | None:
    if v == "" or _NAME_RE.match(v):
        return None
    return "must be 1-32 letters, digits, '_' or '-', starting with a letter or digit"


def _check_quiet(v: str) -> str | None:
    if v == "":
        return None
    try:
        parse_work_hours(v, overnight=True)
    except ValueError as exc:
        return str(exc)
    return None


def _check_hhmm(v: str) -> str | None:
    return None if v == "" or _HHMM_RE.match(v) else 'must be a time of day "HH:MM", or "" for none'


def _check_http_url(v: str) -> str | None:
    if v == "":
        return None
    try:
        u = urlsplit(v)
        port = u.port
    except ValueError as exc:
        return f"not a URL: {exc}"
    if u.scheme not in ("http", "https") or not u.hostname:
        return "must be an http:// or https:// URL"
    if port == 0:
        return "the port must be 1-65535"
    return None


def _check_address(v: str) -> str | None:
    return None if v == "" or _ADDRESS_RE.match(v) else "must be an e-mail address (name@example.org)"


_check_zone = checked(check_zone)


def _check_time_zone(v: str) -> str | None:
    return None if v == "" else _check_zone(v)


@dataclass(frozen=True)
class ChannelSection:
    kind: str = opt("", "Where the alerts go: \"desktop\" (a notification on this machine's "
                     "screen, at once and without the internet: the freedesktop notification "
                     "service on the user's session bus), \"ntfy\" (a phone, through an ntfy "
                     "server: ntfy.sh or your own), \"telegram\" (a Telegram chat, through a bot "
                     "you made with @BotFather), \"webhook\" (a JSON object POSTed to url), "
                     "\"email\" (SMTP with STARTTLS) or \"apprise\" (any service Apprise knows; "
                     "pip install 'linewatch[alerts]'). Remote channels get an alert when the "
                     "line is back if it was down: it waits in the store, with its own times.",
                     one_of(*KINDS), "ntfy")
    name: str = opt("", "This channel's name in logs and `linewatch alerts`, and in the names "
                     "its secret is read from. Empty: the kind (two channels of one kind need "
                     "names).", _check_name, "phone")
    url: str = opt("", "desktop: the D-Bus address of the user's session bus (empty: "
                    "$DBUS_SESSION_BUS_ADDRESS, else /run/user/<uid>/bus of the agent's user). "
                    "ntfy: the topic's URL (https://ntfy.sh/<a topic hard to guess>). telegram: "
                    "the Bot API's URL (empty: https://api.telegram.org). webhook: the URL the JSON "
                    "is POSTed to. email: smtp://host[:587] (STARTTLS, required) or "
                    "smtps://host[:465]. apprise: the Apprise URL when it holds no secret (else "
                    "give it as the secret).", example="https://ntfy.sh/linewatch-k7Q2xw")
    events: tuple[str, ...] = opt((), "The events this channel gets: " + ", ".join(EVENTS)
                                   + ". Empty: all of them (a digest is made only when "
                                   "alerts.digest_at is set).",
                                   each(one_of(*EVENTS)), ("outage_end", "power_start", "ups_low"))
    quiet_hours: str = opt("", "Hours, in alerts.time_zone, when this channel is not disturbed: "
                            "alerts wait and go when the quiet hours end (a start that has "
                            "ended by then goes as one message with its end). \"HH:MM-HH:MM\", "
                            "may cross midnight; \"\": never quiet.", _check_quiet, "23:00-07:00")
    chat_id: str = opt("", "telegram: the chat's id (a number; a group's is negative) or "
                        "@channelname.", example="123456789")
    to: tuple[str, ...] = opt((), "email: the recipients.", each(_check_address),
                               ("worker@example.org",))
    sender: str = opt("", "email: the From address. Empty: the first recipient.", _check_address)
    user: str = opt("", "email: the SMTP login (its password is the channel's secret). ntfy: "
                     "a user whose password is the secret (else the secret is an access token, "
                     "tk_...). Empty: no login.", example="worker@example.org")
    secret_file: str = opt("", "A file holding this channel's secret, one line, chmod 600: the "
                            "ntfy access token or password, the Telegram bot token, the SMTP "
                            "password, a webhook's bearer token, the Apprise URL. Read from "
                            "$LINEWATCH_ALERT_<NAME>_SECRET first (NAME: the channel's name in "
                            "capitals, '-' as '_'), then this file, then the systemd credential "
                            "alert-<name>.", example="/etc/linewatch/ntfy-token")
    verify_tls: bool = opt(True, "Check the server's certificate (keep this on).")
    on_lan: bool = opt(False, "ntfy, webhook, email, apprise: the server is on this network, "
                       "on the router's side (a co-working space's own ntfy, a NAS): it is "
                       "reached while the ISP is down, so alerts go to it at once instead of "
                       "waiting for the line. Give the server's LAN address (or a name your "
                       "router answers for) in url. A Telegram chat is always on the internet.")
    ca_file: str = opt("", "A CA certificate (PEM) to trust besides the system's: your own "
                        "server's.", example="/etc/linewatch/ca.pem")


@dataclass(frozen=True)
class AlertsSection:
    min_duration_s: float = opt(60.0, "Seconds an outage, power cut or blocking must last "
                                 "before it is alerted: a blip shorter than this gives no "
                                 "alert at all, neither its start nor its end.", between(0, 3600))
    heartbeat_url: str = opt("", "A dead man's switch: this URL is fetched every "
                              "heartbeat_every_s while the agent runs, so the service behind it "
                              "(an Uptime Kuma push monitor, a healthchecks-style check) alerts "
                              "you when the pings stop: the one alert an agent cannot send "
                              "itself. Empty: none. An https:// URL loads OpenSSL into the agent "
                              "(about 4 MB).", _check_http_url,
                              "https://status.example.org/api/push/AbC123?status=up&msg=OK")
    heartbeat_every_s: float = opt(300.0, "Seconds between two heartbeat fetches.",
                                    between(30, 86400))
    heartbeat_ca_file: str = opt("", "A CA certificate (PEM) to trust for heartbeat_url besides "
                                  "the system's: your own monitor's.",
                                  example="/etc/linewatch/ca.pem")
    flap_changes: int = opt(4, "Outages (of any length) within flap_window_s that make the line "
                             "unstable: one line_unstable alert, then no outage alert until the "
                             "line has had flap_window_s without an outage (one lasting five "
                             "times min_duration_s still rings). 0: never.", between(0, 1000))
    flap_window_s: float = opt(1800.0, "The window flap_changes counts in, in seconds.",
                                between(60, 86400))
    ups_low_pct: float = opt(30.0, "A UPS charge at or under this, during a power cut, is a "
                              "ups_low alert (once per cut). 0: only the UPS's own "
                              "low-battery flag.", between(0, 100))
    speed_below_pct: float = opt(50.0, "A speed test whose download is under this share of "
                                  "report.plan_download_mbps is a speed_below_plan alert. 0: "
                                  "none. Needs the plan's speed.", between(0, 100))
    time_zone: str = opt("", "The time zone alerts show times in (IANA, such as Asia/Karachi). "
                          "Empty: this machine's.", _check_time_zone, "Asia/Karachi")
    digest_at: str = opt("", "A daily digest, at this time of day (HH:MM in time_zone), of the "
                          "last 24 hours: outages, power cuts, blocking, speed tests; to the "
                          "channels that take the digest event (those with events empty, or "
                          "naming it). \"\": none.", _check_hhmm, "21:00")
    channels: tuple[ChannelSection, ...] = opt((), "The channels: one [[alerts.channels]] "
                                                "table each (below).")


# What each kind needs beyond `kind`, checked when the config is read.
def _channel_problems(ch: ChannelSection) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if ch.kind in ("ntfy", "webhook") and not ch.url:
        out.append(("url", f"required for a {ch.kind} channel"))
    if ch.kind in ("ntfy", "webhook", "telegram"):
        problem = _check_http_url(ch.url)
        if problem:
            out.append(("url", problem))
    if ch.kind == "ntfy" and ch.url and urlsplit(ch.url).path.strip("/") == "":
        out.append(("url", "must name the topic: https://ntfy.sh/<topic>"))
    if ch.kind == "telegram" and not ch.chat_id:
        out.append(("chat_id", "required for a telegram channel"))
    if ch.on_lan and ch.kind in ("desktop", "telegram"):
        out.append(("on_lan", "the desktop is this machine and Telegram's servers are on the "
                    "internet: on_lan is for an ntfy, webhook, e-mail or Apprise server on "
                    "this network"))
    if ch.kind == "email":
        try:
            u = urlsplit(ch.url)
            u.port  # noqa: B018 (raises on a bad port)
        except ValueError as exc:
            out.append(("url", f"not a URL: {exc}"))
        else:
            if u.scheme not in ("smtp", "smtps") or not u.hostname:
                out.append(("url", "must be smtp://host[:587] (STARTTLS) or smtps://host[:465]"))
        if not ch.to:
            out.append(("to", "required for an email channel"))
    if ch.kind == "desktop" and ch.url and not ch.url.startswith(("unix:", "tcp:")):
        out.append(("url", "must be a D-Bus address (unix:path=/run/user/1000/bus)"))
    for key, needs in (("chat_id", "telegram"), ("to", "email"), ("sender", "email")):
        if getattr(ch, key) and ch.kind != needs:
            out.append((key, f"only for a {needs} channel"))
    return out


def channels_of(raw: Any, source: str) -> tuple[ChannelSection, ...]:
    """The ``[[alerts.channels]]`` tables, each validated; two channels may not share a name."""
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ConfigError(source, "alerts.channels", "must be [[alerts.channels]] tables")
    out, names = [], set()
    for i, table in enumerate(raw):
        where = f"alerts.channels[{i}]"
        if "kind" not in table:
            raise ConfigError(source, f"{where}.kind", "required: one of " + ", ".join(KINDS))
        ch = section(ChannelSection, where, table, source)
        for key, problem in _channel_problems(ch):
            raise ConfigError(source, f"{where}.{key}", problem)
        name = channel_name(ch)
        if name in names:
            raise ConfigError(source, f"{where}.name", f"two channels are named {name!r}: give "
                              "each its own name")
        names.add(name)
        out.append(ch)
    return tuple(out)


def alerts_of(data: Mapping[str, Any], source: str) -> AlertsSection:
    """``[alerts]`` with its channels (the config kit reads flat tables; channels are a list)."""
    table = dict(data)
    raw = table.pop("channels", [])
    sec = section(AlertsSection, "alerts", table, source)
    # the dataclass is frozen: the validated channels go in through a copy
    return AlertsSection(**{**{k: getattr(sec, k) for k in sec.__dataclass_fields__},
                            "channels": channels_of(raw, source)})


def channel_name(ch: ChannelSection) -> str:
    return ch.name or ch.kind


def wants(ch: ChannelSection, event: str) -> bool:
    """Whether ``ch`` takes ``event``: its list, or every event when empty (the digest is made
    only when alerts.digest_at asks for it)."""
    return event in ch.events if ch.events else True


def secret_sources(ch: ChannelSection) -> tuple[str, str]:
    """(the environment variable, the systemd credential) this channel's secret is read from."""
    name = channel_name(ch)
    return f"LINEWATCH_ALERT_{name.upper().replace('-', '_')}_SECRET", f"alert-{name}"
