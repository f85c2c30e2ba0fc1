"""The alerts: made from what the agent knows, kept in the store's outbox, delivered once to
each channel (:mod:`agent.alerts`).

Two jobs share one :class:`AlertBook`:

* ``alerts`` every :data:`TICK_S` (or ``probe.interval_s`` when shorter): hears episode
  changes through the context's hook (:meth:`AlertBook.heard`), asks
  :func:`agent.alerts.rules.due` which alerts should exist now, queues each new one in the
  outbox for every channel that takes its event (one transaction), and delivers to the
  channels on this machine (the desktop) at once;
* ``alerts_remote`` every :data:`TICK_S`: delivers the outbox to the remote channels (ntfy,
  Telegram, webhooks, e-mail, Apprise), but not while a connectivity outage is open: an alert
  made while the line is down waits, with its own times, and goes when the line is back (an end
  made by then replaces its unsent start, so the message says both). A channel whose server
  is on this network (``on_lan``) is not held back: it gets the alerts during the outage.

Once per channel: an alert's id is made from what it is about, and the outbox keeps one row per
id and channel; a row is marked sent in the same moment the channel accepts it. A kill between
the two may send it again, with the same id (receivers can drop it); nothing queued is lost:
on restart the book is filled again from the store's episodes, and the alerts they call for are
queued again, or found already there.

Alerts about the store itself (it cannot be written) cannot wait in it: they are delivered from
memory, once per channel in this run.

``heartbeat`` every ``alerts.heartbeat_every_s`` when ``alerts.heartbeat_url`` is set: fetches it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from agent import outage
from agent.alerts import rules, words
from agent.alerts.model import (
    INTERFERENCE_START,
    LINE_UNSTABLE,
    OUTAGE_START,
    POWER_START,
    STORE_TROUBLE,
    UPS_LOW,
    Alert,
    Channel,
    SendError,
)
from agent.alerts.settings import ChannelSection, wants
from agent.jobs.context import Context, Job
from agent.model import Episode, to_ns
from agent.store import (
    ALERT_EXPIRED,
    ALERT_REFUSED,
    ALERT_SENT,
    STATE_RECOVERED,
)
from kit.configkit import parse_work_hours
from kit.errors import StoreError

log = logging.getLogger("linewatch")

TICK_S = 5.0
STATE_ALERTS_SINCE = "alerts_since"
HORIZON_S = 24 * 3600          # alerts are made about the last day only (never about old history)
KEEP_SETTLED_S = 30 * 86400    # settled outbox rows are forgotten after this
EXPIRE_S = {False: 7 * 86400, True: 12 * 3600}  # a queued alert expires (remote, local)
SPEEDS_EVERY_S = 60.0
MAX_BACKOFF_S = 600.0


# The events after which an episode's end is always alerted.
STARTS = (OUTAGE_START, POWER_START, INTERFERENCE_START, UPS_LOW)


def _when(m: rules.Made, now: datetime) -> datetime:
    """What an alert is about, in time, for the horizons: an episode's alert counts while the
    episode goes on (its end, or now); an event without a length (a speed test, the line
    called unstable) at its time; a digest at its end."""
    a = m.alert
    if a.type in (rules.CONNECTIVITY, rules.POWER, rules.INTERFERENCE) and a.event != LINE_UNSTABLE:
        return a.end or now
    return a.end or a.start


def backoff_s(attempts: int, retry_after_s: float | None = None) -> float:
    """Seconds before the next try of an alert that failed ``attempts`` times (1, 2, ...):
    15 s doubling to 10 min, or what the server asked for (at most an hour)."""
    if retry_after_s is not None and retry_after_s > 0:
        return min(retry_after_s, 3600.0)
    return min(MAX_BACKOFF_S, 15.0 * 2 ** max(0, attempts - 1))


def in_quiet_hours(local: datetime, quiet: tuple[int, int] | None) -> bool:
    """Whether a local time falls in quiet hours (minutes after midnight; may cross midnight)."""
    if quiet is None:
        return False
    a, b = quiet
    m = local.hour * 60 + local.minute
    return a <= m < b if a < b else (m >= a or m < b)


class AlertBook:
    """What the alerts jobs share: the channels, the episodes heard, the outbox's bookkeeping."""

    def __init__(self, ctx: Context, channels: list[Channel], sections: Iterable[ChannelSection],
                 *, line_down: Callable[[], bool], ups: Callable[[], rules.Ups | None]) -> None:
        self.ctx = ctx
        self.channels = channels
        self.sections = {c.key: s for c, s in zip(channels, sections)}
        self.quiet = {key: parse_work_hours(s.quiet_hours, overnight=True) if s.quiet_hours
                      else None for key, s in self.sections.items()}
        self.line_down, self.ups = line_down, ups
        self.lock = threading.Lock()
        self.episodes: dict[str, Episode] = {}
        self.queued: set[tuple[str, str]] = set()    # (id, channel) put in the outbox this run
        self.volatile: dict[str, Alert] = {}         # alerts that cannot wait in the store
        self.volatile_sent: set[tuple[str, str]] = set()
        self.speeds: list[rules.Speed] = []
        self.speeds_read: float | None = None
        self.since: dict[str, datetime] | None = None   # channel -> since when it takes alerts
        self.started: set[str] = set()   # episodes whose start (or ups_low) was made
        self.line_back = False           # a connectivity outage closed since the last delivery
        self.make_lock = threading.Lock()
        self._store = ctx.store
        self.tz = words.zone(ctx.cfg.alerts.time_zone)
        self.counters = ctx.counters
        for key in ("alerts_made", "alerts_sent", "alert_errors", "alerts_refused"):
            self.counters.setdefault(key, 0)
        self._failing: dict[str, str] = {}
        # The earliest time (ns) a queued alert may be tried; None: none waits. Idle ticks
        # then cost no query.
        self.next_ns: int | None = None
        # Sent, but the store could not say so (disk full): never sent again, marked when the
        # store takes writes again.
        self.unmarked: dict[tuple[str, str], str] = {}

    # -- hearing ------------------------------------------------------------------------------
    def heard(self, change: outage.Change) -> None:
        """The episode hook's listener: keep the episode's latest version (quick: no I/O). A
        connectivity outage that closes means the line is back: the channels on this network,
        tried (and perhaps failing, their retries spaced out to 10 min) during it, are tried
        again at the next delivery."""
        with self.lock:
            self.episodes[change.episode.id] = change.episode
            if change.kind == "closed" and change.episode.type == "connectivity":
                self.line_back = True

    def load(self, now: datetime) -> None:
        """At start (and when the store was replaced): since when each channel takes alerts
        (a channel new to the config takes what happens from now on, never the day before),
        the episodes of the last day, which episodes' starts rang, and what waits."""
        store = self._store = self.ctx.store
        try:
            saved = json.loads(store.get_state(STATE_ALERTS_SINCE) or "{}")
        except ValueError:
            saved = {}
        since = {k: datetime.fromisoformat(v) for k, v in saved.items()
                 if k in self.sections and isinstance(v, str)} if isinstance(saved, dict) else {}
        new = {k: now for k in self.sections if k not in since}
        if new or set(saved) - set(since):
            since.update(new)
            store.write(state={STATE_ALERTS_SINCE: json.dumps(
                {k: t.isoformat() for k, t in since.items()})})
        gone = store.alerts_settle_others(list(self.sections), to_ns(now))
        if gone:
            log.warning("alerts: %d waiting for channels no longer configured are dropped", gone)
        horizon = now - timedelta(seconds=max(HORIZON_S, self.ctx.cfg.alerts.flap_window_s))
        started = store.alerts_abouts(STARTS, to_ns(horizon))
        with self.lock:
            self.since = since
            for e in store.episodes(since=horizon):
                self.episodes.setdefault(e.id, e)
            self.started |= started
            self.queued.clear()
            self.next_ns = store.alerts_next(to_ns(now))

    def update(self, now: datetime, extra: Iterable[rules.Made] = ()) -> int:
        """Make the alerts due now and queue the new ones (both jobs call it before they
        deliver: an end made by now replaces its start before a remote channel sees the
        start). Returns how many rows were new; raises StoreError when the outbox cannot take
        them (made again at the next tick)."""
        with self.make_lock:
            if self.since is None or self.ctx.store is not self._store:
                self.load(now)  # first use, or the store was replaced (damaged): read it again
            return self.queue([*self.make(now), *extra], now)

    def params(self) -> rules.Params:
        cfg = self.ctx.cfg
        a = cfg.alerts
        return rules.Params(agent=self.ctx.tags.get("agent", ""), tags=dict(self.ctx.tags),
                            min_duration_s=a.min_duration_s, flap_changes=a.flap_changes,
                            flap_window_s=a.flap_window_s, ups_low_pct=a.ups_low_pct,
                            speed_below_pct=a.speed_below_pct,
                            plan_mbps=cfg.report.plan_download_mbps, tz=self.tz)

    def make(self, now: datetime) -> list[rules.Made]:
        """The alerts due now about the last day (:func:`agent.alerts.rules.due`)."""
        horizon = now - timedelta(seconds=HORIZON_S)
        keep_from = now - timedelta(seconds=max(HORIZON_S, self.ctx.cfg.alerts.flap_window_s))
        with self.lock:
            for key in [k for k, e in self.episodes.items() if e.end is not None and e.end < keep_from]:
                del self.episodes[key]
            eps = list(self.episodes.values())
            started = frozenset(self.started)
        made = rules.due(eps, now, self.params(), ups=self.ups(), speeds=self._speeds(now),
                         trouble=self._trouble(now), started=started)
        made = [m for m in made if _when(m, now) >= horizon]
        with self.lock:
            self.started.update(m.about for m in made if m.alert.event in STARTS)
        return made

    def _speeds(self, now: datetime) -> list[rules.Speed]:
        mono = self.ctx.clock.monotonic()
        if self.speeds_read is None or mono - self.speeds_read >= SPEEDS_EVERY_S:
            self.speeds_read = mono
            since = now - timedelta(seconds=HORIZON_S)
            out = []
            for s in self.ctx.store.samples("speedtest", since=since):
                bps = s.fields.get("download_bps")
                if s.fields.get("status") == "ok" and isinstance(bps, (int, float)) and bps >= 0:
                    out.append(rules.Speed(s.time, float(bps) / 1e6))
            self.speeds = out
        return self.speeds

    def _trouble(self, now: datetime) -> rules.Trouble | None:
        store = self.ctx.store
        if store.trouble is not None:
            t = store.trouble
            return rules.Trouble(t.since.replace(microsecond=0), t.reason)
        if store.recovered_from is not None:
            try:
                saved = json.loads(store.get_state(STATE_RECOVERED) or "{}")
                since = datetime.fromisoformat(saved["time"]).replace(microsecond=0)
            except (ValueError, KeyError, TypeError):
                return None
            return rules.Trouble(since, str(store.recovered_from.name), damaged=True)
        return None

    def queue(self, made: list[rules.Made], now: datetime) -> int:
        """Put the new alerts in the outbox, once per channel that takes their event; the
        store's own trouble stays in memory. Returns how many rows were new."""
        rows = []
        assert self.since is not None
        for m in made:
            a = m.alert
            for ch in self.channels:
                if (a.id, ch.key) in self.queued or not wants(self.sections[ch.key], a.event):
                    continue
                if _when(m, now) < self.since[ch.key]:
                    continue  # from before this channel was configured
                if a.event == STORE_TROUBLE:
                    self.volatile.setdefault(a.id, a)
                    continue
                rows.append(((a.id, ch.key, m.about, a.event, a.to_json(), m.replaces), (a.id, ch.key)))
        if not rows:
            return 0
        try:
            new = self.ctx.store.alerts_put([r for r, _ in rows], to_ns(now))
        except StoreError as exc:
            # the store cannot take them now (disk full): made again and queued at a later
            # tick; its trouble goes from memory meanwhile
            self._failed("the outbox", f"alerts wait to be queued: {exc}")
            raise
        self.queued.update(k for _, k in rows)
        if new:
            with self.lock:
                self.next_ns = to_ns(now)
        if new:
            self.counters.add("alerts_made", new)
            events = sorted({r[3] for r, _ in rows})
            log.info("alerts: %d queued (%s)", new, ", ".join(events))
        return new

    # -- delivering ---------------------------------------------------------------------------
    def deliver(self, now: datetime, remote: bool) -> int:
        """Send what is due to the local (``remote`` False) or remote channels; returns how many
        were sent. A channel whose send fails is left alone until its next due time."""
        sent = 0
        local_now = now.astimezone(self.tz)
        self._mark_unmarked(now)
        if remote and self.line_back:
            self._try_lan_now(now)
        if self.next_ns is None and not self.volatile:
            return 0
        if self.next_ns is not None and to_ns(now) < self.next_ns and not self.volatile:
            return 0
        for ch in self.channels:
            if ch.remote != remote or in_quiet_hours(local_now, self.quiet[ch.key]):
                continue
            if remote and self.line_down() and not self.sections[ch.key].on_lan:
                continue
            sent += self._volatile(ch)
            try:
                due = self.ctx.store.alerts_due(ch.key, to_ns(now))
            except StoreError as exc:
                self._failed("the outbox", f"cannot be read: {exc}")
                continue
            for ident, text, attempts in due:
                if (ident, ch.key) in self.unmarked:
                    continue
                try:
                    alert = Alert.from_json(text)
                except ValueError as exc:  # a row this version cannot read: never retried
                    self.ctx.store.alert_done(ident, ch.key, ALERT_REFUSED, to_ns(now), str(exc))
                    continue
                age = (now - (alert.end or alert.start)).total_seconds()
                if age > EXPIRE_S[not ch.remote]:
                    self.ctx.store.alert_done(ident, ch.key, ALERT_EXPIRED, to_ns(now),
                                              f"expired after {age / 3600:.0f} h unsent")
                    log.warning("alert %s to %s expired unsent", alert.event, ch.key)
                    continue
                ok = self._send(ch, alert, ident, attempts, now)
                sent += ok
                if not ok:
                    break
        with self.lock:  # beside queue(): a row queued meanwhile is never forgotten
            try:
                self.next_ns = self.ctx.store.alerts_next(to_ns(now))
            except StoreError:
                self.next_ns = to_ns(now)  # look again at the next tick
        return sent

    def _try_lan_now(self, now: datetime) -> None:
        """The line is back: the LAN channels' retries are due now, not at the end of a wait
        that grew while their server could not be reached."""
        lan = [key for key, sec in self.sections.items() if sec.on_lan]
        with self.lock:
            self.line_back = False
            if not lan:
                return
            try:
                if self.ctx.store.alerts_try_now(lan, to_ns(now)):
                    self.next_ns = to_ns(now)
            except StoreError:
                self.line_back = True   # try again at the next tick

    def _send(self, ch: Channel, alert: Alert, ident: str, attempts: int, now: datetime) -> bool:
        store = self.ctx.store
        try:
            receipt = ch.send(alert)
        except Exception as exc:  # a channel's surprise is its failure, not the job's
            if not isinstance(exc, SendError):
                log.exception("alert channel %s failed unexpectedly", ch.key)
                exc = SendError(f"{type(exc).__name__} in the {ch.kind} channel (a bug: please "
                                "report it)", retry=True)
            self.counters.add("alert_errors", 1)
            try:
                if exc.retry:
                    wait = backoff_s(attempts + 1, exc.retry_after_s)
                    store.alert_later(ident, ch.key, to_ns(now) + int(wait * 1e9), str(exc))
                    self._failed(ch.key, f"{exc} (trying again in {wait:.0f} s)")
                else:
                    self.counters.add("alerts_refused", 1)
                    store.alert_done(ident, ch.key, ALERT_REFUSED, to_ns(now), str(exc))
                    log.error("alert %s to %s refused: %s", alert.event, ch.key, exc)
            except StoreError as store_exc:
                self._failed("the outbox", f"cannot record a failed send: {store_exc}")
            return False
        self.counters.add("alerts_sent", 1)
        try:
            store.alert_done(ident, ch.key, ALERT_SENT, to_ns(now), receipt)
        except StoreError as exc:
            self.unmarked[(ident, ch.key)] = receipt
            self._failed("the outbox", f"a sent alert cannot be marked sent yet: {exc}")
        if self._failing.pop(ch.key, None) is not None:
            log.info("alerts to %s go through again", ch.key)
        log.info("alert %s (%s) sent to %s: %s", alert.event, alert.id, ch.key, receipt)
        return True

    def _mark_unmarked(self, now: datetime) -> None:
        with self.lock:  # both jobs come here
            for (ident, key), receipt in list(self.unmarked.items()):
                try:
                    self.ctx.store.alert_done(ident, key, ALERT_SENT, to_ns(now), receipt)
                except StoreError:
                    return
                self.unmarked.pop((ident, key), None)

    def _volatile(self, ch: Channel) -> int:
        sent = 0
        for a in list(self.volatile.values()):
            if (a.id, ch.key) in self.volatile_sent or not wants(self.sections[ch.key], a.event):
                continue
            try:
                ch.send(a)
            except SendError as exc:
                self._failed(ch.key, str(exc))
                if not exc.retry:
                    self.volatile_sent.add((a.id, ch.key))
                continue
            except Exception:  # as in _send
                log.exception("alert channel %s failed unexpectedly", ch.key)
                continue
            self.volatile_sent.add((a.id, ch.key))
            self.counters.add("alerts_sent", 1)
            sent += 1
        return sent

    def _failed(self, key: str, message: str) -> None:
        """Logged when a channel starts failing, and again when the reason changes."""
        if self._failing.get(key) != message.split(" (trying again")[0]:
            log.warning("alerts to %s cannot be sent now: %s", key, message)
        self._failing[key] = message.split(" (trying again")[0]

    def prune(self, now: datetime) -> int:
        """Hourly: forget settled outbox rows after :data:`KEEP_SETTLED_S`, and the memory of
        what was queued (a cache: the next tick puts the day's alerts again, found there)."""
        with self.make_lock:
            self.queued.clear()
        return self.ctx.store.alerts_prune(to_ns(now - timedelta(seconds=KEEP_SETTLED_S)))


class Alerts(Job):
    """``alerts``: make the alerts due, queue them, deliver to the local channels."""

    name = "alerts"

    def __init__(self, ctx: Context, book: AlertBook) -> None:
        super().__init__(ctx)
        self.book = book
        self._digest_day: str | None = None
        self._pruned: datetime | None = None

    def run(self) -> int:
        now = self.clock.now()
        digest = self._digest(now)
        try:
            self.book.update(now, [digest] if digest is not None else [])
        except StoreError:
            pass  # made again at the next tick; the desktop still gets what waits
        else:
            if digest is not None:
                self._digest_day = now.astimezone(self.book.tz).date().isoformat()
        if self._pruned is None or now - self._pruned > timedelta(hours=1):
            self._pruned = now
            self.book.prune(now)
        return self.book.deliver(now, remote=False)

    def _digest(self, now: datetime) -> rules.Made | None:
        at = self.cfg.alerts.digest_at
        if not at:
            return None
        local = now.astimezone(self.book.tz)
        day = local.date().isoformat()
        if self._digest_day == day or local.strftime("%H:%M") < at:
            return None
        since = now - timedelta(hours=24)
        eps = self.store.episodes(since=since)
        alert = rules.digest(eps, self.book._speeds(now), now, self.book.params())
        return rules.Made(alert, "digest:" + day)


class RemoteAlerts(Job):
    """``alerts_remote``: deliver the outbox to the remote channels while the line is up."""

    name = "alerts_remote"

    def __init__(self, ctx: Context, book: AlertBook) -> None:
        super().__init__(ctx)
        self.book = book

    def run(self) -> int:
        now = self.clock.now()
        try:
            self.book.update(now)
        except StoreError:
            pass  # what is queued already still goes
        return self.book.deliver(now, remote=True)


class Heartbeat(Job):
    """``heartbeat``: fetch ``alerts.heartbeat_url`` (the dead man's switch)."""

    name = "heartbeat"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.failing: str | None = None
        self.last_ok: datetime | None = None

    def run(self) -> None:
        # deferred: the HTTP client (and OpenSSL for https) loads at the first heartbeat
        from agent.alerts.web import heartbeat

        url = self.cfg.alerts.heartbeat_url
        try:
            heartbeat(url, ca_file=self.cfg.alerts.heartbeat_ca_file)
        except SendError as exc:
            if self.failing != str(exc):
                log.warning("alerts.heartbeat_url: %s", exc)
            self.failing = str(exc)
            self.counters.add("alert_errors", 1)
            return
        if self.failing is not None:
            log.info("alerts.heartbeat_url answers again")
        self.failing, self.last_ok = None, self.clock.now()


def ups_reading(readings: Iterable[Any]) -> rules.Ups | None:
    """The UPS's last reading (:class:`agent.power.Reading`) as the rules take it."""
    for r in readings:
        if getattr(r, "source", None) != rules.UPS_SOURCE:
            continue
        runtime = r.sample.fields.get("runtime_s") if r.sample is not None else None
        return rules.Ups(charge_pct=r.charge_pct,
                         runtime_s=float(runtime) if isinstance(runtime, (int, float)) else None,
                         low="LB" in (r.status or "").split())
    return None
