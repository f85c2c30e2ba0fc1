"""The channels: one class per kind, built from its ``[[alerts.channels]]`` table.

:func:`build` is the one place that reads a channel's table and secret and makes its channel;
each kind's module is imported only then, and that module loads its heavy parts (http.client
and ssl, smtplib, jeepney, Apprise) only when it first sends, so an agent with alerts configured
and nothing to say costs what one without them does.

Each class takes ``(section, secret)`` and keeps the :class:`agent.alerts.model.Channel`
contract. Kinds and their modules:

==========  ==========================  ====================================================
desktop     agent/alerts/desktop.py     ``Notify`` on org.freedesktop.Notifications (jeepney)
ntfy        agent/alerts/web.py         POST the text to the topic's URL, X-Title/X-Priority
telegram    agent/alerts/web.py         Bot API ``sendMessage``
webhook     agent/alerts/web.py         POST :meth:`Alert.payload` as JSON
email       agent/alerts/mail.py        SMTP with STARTTLS (or SMTPS), smtplib
apprise     agent/alerts/via_apprise.py Apprise, the optional extra ``linewatch[alerts]``
==========  ==========================  ====================================================
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agent.alerts.model import Channel
from agent.alerts.settings import ChannelSection, channel_name, secret_sources
from kit import secret as secrets
from kit.errors import ConfigError

# kind -> (module, class)
REGISTRY: dict[str, tuple[str, str]] = {
    "desktop": ("agent.alerts.desktop", "Desktop"),
    "ntfy": ("agent.alerts.web", "Ntfy"),
    "telegram": ("agent.alerts.web", "Telegram"),
    "webhook": ("agent.alerts.web", "Webhook"),
    "email": ("agent.alerts.mail", "Email"),
    "apprise": ("agent.alerts.via_apprise", "Apprise"),
}
# Kinds that cannot work without their secret.
NEEDS_SECRET = frozenset({"telegram"})


def load_secret(ch: ChannelSection, index: int, source: str,
                env: Mapping[str, str] = os.environ) -> secrets.Secret:
    """The channel's secret from its environment variable, ``secret_file`` or credential."""
    env_name, credential = secret_sources(ch)
    return secrets.load(env_name=env_name, file=ch.secret_file,
                        file_key=f"alerts.channels[{index}].secret_file", credential=credential,
                        env=env, source=source, what="secret")


def build(ch: ChannelSection, index: int, source: str,
          env: Mapping[str, str] = os.environ) -> Channel:
    """The channel for table ``index``; ConfigError naming the key when it cannot be made."""
    secret = load_secret(ch, index, source, env)
    if ch.kind in NEEDS_SECRET and not secret.value:
        env_name, credential = secret_sources(ch)
        raise ConfigError(source, f"alerts.channels[{index}].secret_file",
                          f"a {ch.kind} channel needs its secret (the bot token): ${env_name}, "
                          f"secret_file or the systemd credential {credential}")
    if ch.kind == "apprise" and not (ch.url or secret.value):
        raise ConfigError(source, f"alerts.channels[{index}].url", "an apprise channel needs its "
                          "URL, in url or (when it holds a token) as the channel's secret")
    module, cls = REGISTRY[ch.kind]
    made: Channel = getattr(importlib.import_module(module), cls)(ch, secret.value)
    made.warnings = [w for w in (secret.warning, None if ch.verify_tls or ch.kind == "desktop"
                                 else "verify_tls is false: the server's certificate is not "
                                      "checked") if w]
    return made


def test_all(cfg: Any, env: Mapping[str, str] = os.environ) -> list[dict[str, Any]]:
    """``linewatch alerts test``: a test message to each channel now, and how each went
    (channel, kind, ok, detail). A channel that cannot be made says why, naming the key."""
    # deferred: the rules (the test message's words) and the agent's id, for this command only
    from agent.alerts.model import SendError
    from agent.alerts.rules import Params, test_alert
    from agent.alerts.words import zone
    from agent.jobs.context import agent_id

    now = datetime.now(UTC)
    params = Params(agent=agent_id(cfg), tz=zone(cfg.alerts.time_zone))
    rows = []
    for i, sec in enumerate(cfg.alerts.channels):
        row: dict[str, Any] = {"channel": channel_name(sec), "kind": sec.kind, "ok": False,
                               "detail": ""}
        try:
            ch = build(sec, i, cfg.source, env)
            row["detail"] = ch.send(test_alert(now, params, time.time_ns()))
            row["ok"] = True
        except ConfigError as exc:
            row.update(ok=False, detail=str(exc))
        except SendError as exc:
            row.update(ok=False, detail=str(exc))
        except Exception as exc:  # noqa: BLE001 - a library's surprise is this channel's failure
            row.update(ok=False, detail=f"{type(exc).__name__} (a bug: please report it)")
        rows.append(row)
    return rows


def build_all(chs: tuple[ChannelSection, ...], source: str,
              env: Mapping[str, str] = os.environ) -> list[Channel]:
    return [build(ch, i, source, env) for i, ch in enumerate(chs)]
