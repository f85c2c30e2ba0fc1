"""Alerts to any service Apprise knows (Discord, Slack, Matrix, Signal, Pushover, Gotify, ...):
the optional extra ``pip install 'linewatch[alerts]'``.

The Apprise URL is the channel's secret when it holds a token (most do), else its ``url``. It
is never shown: messages name only its scheme (``discord://...``). Apprise is imported when the
first alert is sent (it loads a few hundred plugin modules), never when the agent starts or
``check`` looks at the channel. Each plugin bounds its own requests in time (Apprise's ``cto``
and ``rto`` URL arguments, 4 s each by default).

Errors (:class:`~agent.alerts.model.SendError`): Apprise not installed, a URL Apprise does not
know, nothing to notify: no ``retry``; a service that failed: ``retry`` (Apprise reports no
status code to tell a refusal from an outage; the reason it logged is quoted when it has one).
"""

from __future__ import annotations

import importlib.util
import logging
import re
from typing import Any

from agent.alerts.model import Alert, SendError, one_line
from agent.alerts.settings import ChannelSection, channel_name
from kit.secret import redact

INSTALL = "pip install 'linewatch[alerts]'"
_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]{0,31})://")
_SHOWN_MAX = 200


def scheme(url: str) -> str:
    """``discord://...``: the URL's scheme only (what follows may be a token); "?" when it has
    none."""
    m = _SCHEME.match(url)
    return f"{m.group(1).lower()}://..." if m else "?"


class Apprise:
    """The ``apprise`` channel (see the module's docstring)."""

    kind = "apprise"
    remote = True

    def __init__(self, section: ChannelSection, secret: str | None) -> None:
        self.key = channel_name(section)
        self._url = secret or section.url
        self._secret = self._url   # all of it may be secret, whichever way it came

    def state(self) -> str:
        """Whether the channel can send: Apprise installed, a URL given (not imported, not
        contacted)."""
        if not self._url:
            return "not ready: no Apprise URL (url, or the channel's secret)"
        if importlib.util.find_spec("apprise") is None:
            return f"not ready: Apprise is not installed ({INSTALL})"
        return f"ready (apprise {scheme(self._url)})"

    def send(self, alert: Alert) -> str:
        """Notify; returns "apprise: sent"."""
        if not self._url:
            raise SendError("apprise: no URL (url, or the channel's secret)", retry=False)
        try:
            # deferred: Apprise loads hundreds of plugin modules; an optional extra
            import apprise
        except ImportError as exc:
            raise SendError(f"apprise: not installed: {INSTALL}", retry=False) from exc
        _quiet_libraries()
        a = apprise.Apprise()
        if not a.add(self._url):
            raise SendError(f"apprise: Apprise does not know this URL ({scheme(self._url)}), or "
                            "it lacks a part the service needs: see the Apprise wiki for the "
                            "service", retry=False)
        result: Any = a.notify(body=alert.text, title=alert.title)
        try:
            return self._outcome(result)
        finally:
            close = getattr(result, "close", None)
            if callable(close):
                close()    # Apprise 2 keeps a long result's log in a temporary file

    def _outcome(self, result: Any) -> str:
        """Apprise 1 answers True, False or None (nothing to notify); Apprise 2 an
        AppriseResult, True only on success, whose status says more."""
        status = getattr(getattr(result, "status", None), "name", None)
        if result is None or status == "NOMATCH":
            raise SendError("apprise: nothing to notify (the URL names no service)", retry=False)
        if status == "TIMEOUT":
            raise SendError(f"apprise: {scheme(self._url)} did not answer in time", retry=True)
        if status == "PARTIAL":
            # some services took it: sending again would repeat it there
            return f"apprise: sent to {result.success_count} of {len(result)} services"
        if result:
            return "apprise: sent"
        why = self._reason(result)
        raise SendError(f"apprise: {scheme(self._url)} failed: "
                        + (why or "Apprise gives no reason (its log has the service's answer)"),
                        retry=True)

    def _reason(self, result: Any) -> str:
        """The last warning or error Apprise 2 logged for the call, without the URL in any
        form, one line and bounded; "" when there is none (Apprise 1)."""
        logs = getattr(result, "logs", None)
        if not callable(logs):
            return ""
        last = ""
        try:
            for entry in logs():
                if getattr(entry, "level", "") in ("WARNING", "ERROR", "CRITICAL"):
                    last = str(getattr(entry, "message", ""))
        except (OSError, ValueError, TypeError, AttributeError):
            return ""    # a log that cannot be read leaves the failure without its reason
        return one_line(redact(last, self._secret), _SHOWN_MAX)


def _quiet_libraries() -> None:
    """Apprise's HTTP libraries log each request's URL at debug, and an Apprise URL's path is
    often the service's token: they say warnings only, whatever the agent's --log-level."""
    for name in ("apprise", "urllib3", "requests"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
