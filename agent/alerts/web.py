"""The channels that speak HTTP (ntfy, Telegram's Bot API, a JSON webhook) and the heartbeat.

The I/O edge is :func:`post` and :func:`get`: one request on a fresh connection, with
``http.client`` and, for ``https://``, ``ssl``. Both are imported when a request is made, never
when this module is: ``http.client`` imports ``ssl``, which loads OpenSSL (about 4 MB), and an
agent with channels configured but nothing to say should not pay for it. The answer is bounded:
at most :data:`MAX_ANSWER_BYTES` of its body are read, and reading it stops at the request's
deadline (``timeout_s`` after it began; each wait before that is bounded by what is left of it).
Redirects are never followed: a 3xx is an error, so the config names the final URL.

What the server said is sorted by :func:`classify` (pure): 2xx delivered; 408, 429 and 5xx
"retry later", with the server's Retry-After (seconds, or an HTTP date read against the answer's
own Date) as ``retry_after_s``; 3xx and the other 4xx refused, with the server's words.

Errors, all :class:`agent.alerts.model.SendError`:

* no answer (refused, reset, timeout, DNS, a TLS handshake that fails, an answer that is not
  HTTP): ``retry=True``;
* a certificate that is not trusted: ``retry=True`` too, with a message that starts
  "certificate not trusted" and names the fix (``ca_file``). A retry cannot help until the config
  changes, but dropping the alert would lose it for good, and the cause is not always the config:
  a captive portal or a TLS-intercepting middlebox on a line just back, or a server whose renewed
  certificate has not been installed yet, pass; the alert waits in the outbox meanwhile;
* a ``ca_file`` that cannot be read: ``retry=True``, for the same reason;
* a URL that is not http(s) or cannot be sent: ``retry=False``;
* an answer: as :func:`classify` says, and per service (Telegram's ``ok: false``, an ntfy
  server's reply that is not ntfy's, Uptime Kuma's ``ok: false``).

No secret appears in any message: each passes through :func:`kit.secret.redact` (the channel's
secret in every form) and the URL through :func:`kit.secret.redact_value`; Telegram's bot token,
which travels in the URL's path, shows as ``/bot***/sendMessage``, and a heartbeat URL's token
path segment as ``***``. The exception a network error came from is not chained (``from
None``): a library's text may quote the URL, and a traceback in a log would show it.

Longer than the house's 400 lines: the three channels and the heartbeat share one edge, one
classification of answers and one way of hiding secrets.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from agent.alerts import model
from agent.alerts.model import Alert, SendError, one_line
from agent.alerts.settings import ChannelSection, channel_name
from kit.secret import MASK, MIN_PIECE, redact, redact_value

if TYPE_CHECKING:
    import ssl

USER_AGENT = "linewatch"
MAX_ANSWER_BYTES = 64 * 1024      # of an answer's body: every service here answers in bytes
MAX_RETRY_AFTER_S = 86_400.0      # a server's Retry-After is untrusted: a day at most
TELEGRAM_API = "https://api.telegram.org"
TELEGRAM_TEXT_UNITS = 4096        # sendMessage's limit, counted here in UTF-16 code units
NTFY_TEXT_BYTES = 4096            # ntfy turns a longer body into an attachment
TITLE_CHARS = 250

# ntfy's X-Priority: 1 (min) to 5 (max), 3 its default.
NTFY_PRIORITY = {"low": "2", "normal": "3", "critical": "5"}
# ntfy's X-Tags: an emoji short code per event, shown before the title.
NTFY_TAG = {
    model.OUTAGE_START: "warning", model.OUTAGE_END: "white_check_mark",
    model.POWER_START: "electric_plug", model.POWER_END: "white_check_mark",
    model.UPS_LOW: "battery", model.INTERFERENCE_START: "no_entry",
    model.INTERFERENCE_END: "white_check_mark", model.SPEED_BELOW_PLAN: "turtle",
    model.STORE_TROUBLE: "floppy_disk", model.LINE_UNSTABLE: "zap", model.DIGEST: "memo",
    model.TEST: "bell",
}
# Heartbeat path segments that name the service, not the check: shown as they are.
_KNOWN_SEGMENTS = frozenset({"api", "push", "ping"})
# healthchecks' verbs after the check's id (/ping/<uuid>/fail), and exit codes (/ping/<uuid>/1).
_VERBS = frozenset({"start", "fail", "log"})

Secrets = str | Sequence[str] | None


# -- what is shown ----------------------------------------------------------------------------

def _secrets(secret: Secrets) -> tuple[str, ...]:
    if secret is None:
        return ()
    if isinstance(secret, str):
        return (secret,) if secret else ()
    return tuple(s for s in secret if s)


def hide(text: str, secret: Secrets) -> str:
    """``text`` without any of the secrets, in any form (:func:`kit.secret.redact`)."""
    for s in _secrets(secret):
        text = redact(text, s)
    return text


def show_url(url: str, secret: Secrets = None) -> str:
    """``url`` as messages (the log, ``check``, ``alerts list``) show it: its scheme, host and
    port only, the path and query as ``/…``. A webhook's path often is its secret (Discord's,
    Slack's, Home Assistant's), and so is an ntfy topic on a public server."""
    try:
        u = urlsplit(url)
        host = u.hostname or ""
        port = f":{u.port}" if u.port else ""
    except ValueError:
        return hide(redact_value(url), secret)
    if ":" in host:
        host = f"[{host}]"
    rest = "/…" if (u.path.strip("/") or u.query) else ""
    return hide(f"{u.scheme}://{host}{port}{rest}", secret)


def url_passwords(url: str) -> tuple[str, ...]:
    """The password in ``url``'s userinfo, as written and decoded, to look for in a server's
    words; none when shorter than :data:`kit.secret.MIN_PIECE` (masking every ``p`` of a text
    would garble it, and a piece that short gives little away). :func:`show_url` masks the
    userinfo whatever its length."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return ()
    if not password or len(unquote(password)) < MIN_PIECE:
        return ()
    return tuple(dict.fromkeys((password, unquote(password))))


def url_tokens(url: str) -> tuple[str, ...]:
    """The path segments of a heartbeat URL that may be its token: every one after the
    service's own words (``api``, ``push``, ``ping``), except healthchecks' verbs and exit codes
    at the end. ``/api/push/AbC123`` -> ``AbC123``; ``/ping/<uuid>/fail`` -> the uuid."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return ()
    segments = [s for s in path.split("/") if s]
    while segments and segments[0].lower() in _KNOWN_SEGMENTS:
        segments.pop(0)
    if len(segments) > 1 and (segments[-1].lower() in _VERBS or segments[-1].isdigit()):
        segments.pop()
    return tuple(dict.fromkeys(t for s in segments for t in (s, unquote(s))))


def show_heartbeat(url: str) -> str:
    """A heartbeat URL as messages show it: :func:`show_url`, and each of its
    :func:`url_tokens` path segments as ``***`` (``/api/push/***?status=up&msg=OK``)."""
    tokens = set(url_tokens(url))
    shown = redact_value(url)
    try:
        parts = urlsplit(shown)
    except ValueError:
        return shown
    path = "/".join(MASK if seg in tokens else seg for seg in parts.path.split("/"))
    return parts._replace(path=path).geturl()


def _long_tokens(url: str) -> tuple[str, ...]:
    """The heartbeat's tokens long enough to look for in a server's words: a shorter segment
    (a name such as ``hook``) would garble them, and gives little away."""
    return tuple(t for t in url_tokens(url) if len(t) >= MIN_PIECE)


# -- the server's answer ----------------------------------------------------------------------

def _header(headers: Mapping[str, str], name: str) -> str | None:
    name = name.lower()
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


def _json(body: bytes) -> Any:
    """The answer's JSON, or None when it is not JSON."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def server_words(body: bytes, secret: Secrets = None) -> str:
    """What an error answer says: its JSON's ``error``, ``description``, ``message``, ``msg`` or
    ``detail`` (ntfy, Telegram, most APIs, Uptime Kuma, FastAPI), else its text; redacted, then
    cut to one line (:func:`agent.alerts.model.one_line`)."""
    data = _json(body)
    text = body.decode("utf-8", "replace")
    if isinstance(data, dict):
        for key in ("error", "description", "message", "msg", "detail"):
            if isinstance(data.get(key), str):
                text = data[key]
                break
    return one_line(hide(text, secret))


def retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Retry-After in seconds: delta-seconds, or an HTTP date read against the answer's own
    ``Date`` (the server's clock, so no skew between the two), else against ``now``; None when
    absent, unreadable, or a date with nothing to read it against. At most a day."""
    value = (_header(headers, "Retry-After") or "").strip()
    if not value:
        return None
    if value.isdigit() and len(value) <= 12:
        return min(float(value), MAX_RETRY_AFTER_S)
    # deferred: only for a Retry-After given as a date (http.client loaded it already)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
        date = _header(headers, "Date")
        ref = parsedate_to_datetime(date) if date else now
    except (TypeError, ValueError, IndexError):
        return None
    if ref is None:
        return None
    when, ref = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (when, ref))
    return min(max(0.0, (when - ref).total_seconds()), MAX_RETRY_AFTER_S)


def classify(status: int, headers: Mapping[str, str], body: bytes, *, secret: Secrets = None,
             now: datetime | None = None) -> SendError | None:
    """None for a 2xx; otherwise the error to raise: 408, 429 and 5xx ``retry`` (with the
    server's Retry-After as ``retry_after_s``), 3xx and every other status refused. Its message
    is ``HTTP <status>`` and the server's words (:func:`server_words`), never a secret."""
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        where = _header(headers, "Location")
        to = f" to {one_line(show_url(where, secret))}" if where else ""
        return SendError(f"HTTP {status}: redirected{to} (redirects are not followed: put the "
                         "final URL in the config)", retry=False)
    words = server_words(body, secret)
    text = f"HTTP {status}: {words}" if words else f"HTTP {status}"
    if status in (408, 429) or status >= 500:
        wait = retry_after(headers, now)
        later = f" (retry after {wait:g} s)" if wait is not None else ""
        return SendError(text + later, retry=True, retry_after_s=wait)
    return SendError(text, retry=False)


# -- the edge ---------------------------------------------------------------------------------

def post(url: str, body: bytes, headers: Mapping[str, str], *, timeout_s: float = 15,
         verify_tls: bool = True, ca_file: str = "",
         secret: Secrets = None) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` to ``url``: (status, headers with lower-case names, at most
    :data:`MAX_ANSWER_BYTES` of the body), whatever the status. SendError when no answer came
    (see the module's docstring). ``secret``: what no message may show (the channel's secret,
    a token in the URL)."""
    return _exchange("POST", url, body, headers, timeout_s=timeout_s, verify_tls=verify_tls,
                     ca_file=ca_file, secret=secret)


def get(url: str, headers: Mapping[str, str] | None = None, *, timeout_s: float = 15,
        verify_tls: bool = True, ca_file: str = "", secret: Secrets = None,
        shown: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET ``url``, as :func:`post` does. ``shown``: the URL as messages show it, when hiding
    ``secret`` is not enough (a heartbeat's token: :func:`show_heartbeat`)."""
    return _exchange("GET", url, None, headers or {}, timeout_s=timeout_s,
                     verify_tls=verify_tls, ca_file=ca_file, secret=secret, shown=shown)


def _exchange(method: str, url: str, body: bytes | None, headers: Mapping[str, str], *,
              timeout_s: float, verify_tls: bool, ca_file: str, secret: Secrets,
              shown: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection (:func:`post`, :func:`get`)."""
    secrets = _secrets(secret) + url_passwords(url)
    shown = hide(shown, secrets) if shown is not None else show_url(url, secrets)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SendError(f"{shown}: not a URL ({hide(str(exc), secrets)})", retry=False) from None
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise SendError(f"{shown}: not an http:// or https:// URL", retry=False)
    sent = {"User-Agent": USER_AGENT, **headers}
    if parts.password is not None and not any(k.lower() == "authorization" for k in sent):
        sent["Authorization"] = basic(unquote(parts.username or ""), unquote(parts.password))
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # deferred: http.client imports ssl, which loads OpenSSL (about 4 MB): only when a request
    # goes out, never when the channels are built
    import http.client
    import ssl

    deadline = time.monotonic() + timeout_s
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        ctx = _tls_context(verify_tls, ca_file, shown, secrets)
        conn = http.client.HTTPSConnection(host, port or 443, timeout=timeout_s, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port or 80, timeout=timeout_s)
    try:
        conn.request(method, target, body=body, headers=sent)
        _wait_at_most(conn, deadline)
        resp = conn.getresponse()
        data = _read(resp, conn, deadline)
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    except ssl.SSLCertVerificationError as exc:
        why = hide(exc.verify_message or exc.reason or str(exc), secrets)
        raise SendError(f"{shown}: certificate not trusted ({why}): set ca_file to the CA that "
                        "signed it (verify_tls = false only for a test server)",
                        retry=True) from None
    except http.client.InvalidURL as exc:
        raise SendError(f"{shown}: cannot be requested ({one_line(hide(str(exc), secrets))})",
                        retry=False) from None
    except (OSError, http.client.HTTPException) as exc:
        raise SendError(f"{shown}: {_describe(exc, timeout_s, secrets)}", retry=True) from None
    except ValueError as exc:  # a header value http.client will not send: the same next time
        raise SendError(f"{shown}: cannot be sent ({one_line(hide(str(exc), secrets))})",
                        retry=False) from None
    finally:
        conn.close()


def basic(user: str, password: str) -> str:
    """HTTP Basic credentials."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _tls_context(verify_tls: bool, ca_file: str, shown: str,
                 secrets: tuple[str, ...]) -> ssl.SSLContext:
    """The system's trust store, plus ``ca_file`` when given; no checks at all when not
    ``verify_tls``."""
    # deferred: ssl loads OpenSSL (about 4 MB), for https:// only
    import ssl

    ctx = ssl.create_default_context()
    if not verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif ca_file:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (OSError, ValueError) as exc:   # ssl.SSLError is an OSError
            why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
            raise SendError(f"{shown}: ca_file {ca_file} cannot be used ({hide(str(why), secrets)})",
                            retry=True) from None
    return ctx


def _wait_at_most(conn: Any, deadline: float) -> None:
    """Bound the next waits on the socket by what is left of the deadline."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline passed")
    if conn.sock is not None:
        conn.sock.settimeout(left)


def _read(resp: Any, conn: Any, deadline: float) -> bytes:
    """At most :data:`MAX_ANSWER_BYTES` of the body, a socket read at a time (``read1``), so
    the deadline stops a server that trickles."""
    parts: list[bytes] = []
    n = 0
    while n < MAX_ANSWER_BYTES:
        _wait_at_most(conn, deadline)
        piece = resp.read1(MAX_ANSWER_BYTES - n)
        if not piece:
            break
        parts.append(piece)
        n += len(piece)
    return b"".join(parts)


def _describe(exc: BaseException, timeout_s: float, secrets: tuple[str, ...]) -> str:
    """A short, secret-free description of a failure with no answer."""
    name = type(exc).__name__
    text = hide(str(exc), secrets)
    if isinstance(exc, TimeoutError) or "timed out" in text.lower():
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if name == "gaierror":
        return f"the host name does not resolve ({one_line(text)})"
    if name == "RemoteDisconnected":
        return "the server closed the connection without answering"
    if name.startswith("SSL"):
        reason = getattr(exc, "reason", None) or text
        return f"TLS failed ({one_line(hide(str(reason), secrets))})"
    if isinstance(exc, OSError) and exc.strerror:
        return one_line(exc.strerror)
    return one_line(f"{name}: {text}" if text else name)


def _failed(where: str, err: SendError) -> SendError:
    """``err`` with where it happened: ``ntfy https://ntfy.sh/topic: HTTP 401: ...``."""
    return _named(f"{where}:", err)


def _named(prefix: str, err: SendError) -> SendError:
    return SendError(f"{prefix} {err}", retry=err.retry, retry_after_s=err.retry_after_s)


def _host(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "?"
    host = parts.hostname or "?"
    return host if port is None else f"{host}:{port}"


def _tls_note(section: ChannelSection, url: str) -> str:
    if url.startswith("https:") and not section.verify_tls:
        return ", the certificate not checked (verify_tls = false)"
    return ""


# -- the channels -----------------------------------------------------------------------------

def ntfy_title(title: str) -> str:
    """X-Title as a header can carry it: one line, and an RFC 2047 encoded word
    (``=?UTF-8?B?...?=``, which ntfy decodes in every header) when it is not plain ASCII or
    could be read as an encoded word itself."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in title).split())[:TITLE_CHARS]
    if flat.isascii() and "=?" not in flat:
        return flat
    return "=?UTF-8?B?" + base64.b64encode(flat.encode("utf-8")).decode("ascii") + "?="


def cut_bytes(text: str, limit: int) -> bytes:
    """``text`` in UTF-8, cut to ``limit`` bytes at a character's end, with "…" when cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return data
    return data[:limit - 3].decode("utf-8", "ignore").encode("utf-8") + "…".encode()


def cut_utf16(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` UTF-16 code units (Telegram's count; an emoji takes two), with
    "…" when cut."""
    if len(text.encode("utf-16-le")) // 2 <= limit:
        return text
    units = 0
    for i, c in enumerate(text):
        units += 2 if ord(c) > 0xFFFF else 1
        if units > limit - 1:
            return text[:i] + "…"
    return text


class _HTTPChannel:
    """What the three kinds share: the section, the secret (never in ``repr``), the TLS
    settings, and the ``key`` :func:`agent.alerts.channels.build` sets."""

    kind = ""
    remote = True

    def __init__(self, section: ChannelSection, secret: str | None) -> None:
        self.section = section
        self._secret = secret or None
        # what no message may show: the secret, and a password in the URL's userinfo
        self._hidden = _secrets(secret) + url_passwords(section.url)
        self.key = channel_name(section)
        self.timeout_s = 15.0

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(key={self.key!r}, url={show_url(self.section.url)!r}, "
                f"secret={'set' if self._secret else 'none'})")

    def _post(self, url: str, body: bytes, headers: Mapping[str, str]
              ) -> tuple[int, dict[str, str], bytes]:
        try:
            return post(url, body, headers, timeout_s=self.timeout_s,
                        verify_tls=self.section.verify_tls, ca_file=self.section.ca_file,
                        secret=self._hidden)
        except SendError as exc:
            raise _named(self.kind, exc) from None


class Ntfy(_HTTPChannel):
    """POST the alert's text to the topic's URL, with X-Title, X-Priority and X-Tags; an access
    token as ``Bearer``, or ``user`` and its password (the secret) as Basic."""

    kind = "ntfy"

    def headers(self, alert: Alert) -> dict[str, str]:
        out = {"Content-Type": "text/plain; charset=utf-8", "X-Title": ntfy_title(alert.title),
               "X-Priority": NTFY_PRIORITY.get(alert.urgency, "3"),
               "X-Tags": NTFY_TAG.get(alert.event, "bell")}
        if self.section.user:
            if self._secret:
                out["Authorization"] = basic(self.section.user, self._secret)
        elif self._secret:
            out["Authorization"] = f"Bearer {self._secret}"
        return out

    def send(self, alert: Alert) -> str:
        url = self.section.url
        status, headers, body = self._post(url, cut_bytes(alert.text or alert.title,
                                                          NTFY_TEXT_BYTES), self.headers(alert))
        where = f"ntfy {show_url(url, self._hidden)}"
        err = classify(status, headers, body, secret=self._hidden)
        if err is not None:
            raise _failed(where, err)
        reply = _json(body)
        if not (isinstance(reply, dict) and reply.get("event") == "message"
                and isinstance(reply.get("id"), str) and reply["id"]):
            raise SendError(f"{where}: HTTP {status}, but the answer is not an ntfy server's "
                            f"(no message id): {server_words(body, self._hidden)!r}", retry=False)
        return f"ntfy id {one_line(hide(reply['id'], self._hidden), 64)}"

    def state(self) -> str:
        url = self.section.url
        if self.section.user and not self._secret:
            return (f"ntfy at {_host(url)}: user {self.section.user} has no password (the "
                    "channel's secret): the server will refuse it")
        return f"ready (ntfy at {_host(url)}{_tls_note(self.section, url)})"


class Telegram(_HTTPChannel):
    """The Bot API's ``sendMessage`` to ``chat_id``; the bot token (the secret) is in the
    request's path, so no message shows that path as it is."""

    kind = "telegram"

    @property
    def base(self) -> str:
        return (self.section.url or TELEGRAM_API).rstrip("/")

    def send(self, alert: Alert) -> str:
        chat: int | str = self.section.chat_id
        if isinstance(chat, str) and chat.lstrip("-").isdigit():
            chat = int(chat)
        payload = {"chat_id": chat, "text": cut_utf16(alert.text or alert.title, TELEGRAM_TEXT_UNITS),
                   "disable_web_page_preview": True}
        url = f"{self.base}/bot{self._secret or ''}/sendMessage"
        status, headers, body = self._post(url, json.dumps(payload, ensure_ascii=False).encode(),
                                           {"Content-Type": "application/json"})
        where = f"telegram {show_url(url, self._hidden)}"
        reply = _json(body)
        if not isinstance(reply, dict) or "ok" not in reply:
            err = classify(status, headers, body, secret=self._hidden)
            if err is not None:
                raise _failed(where, err)
            raise SendError(f"{where}: HTTP {status}, but the answer is not the Bot API's: "
                            f"{server_words(body, self._hidden)!r}", retry=False)
        result = reply.get("result")
        if reply["ok"] is True and 200 <= status < 300 and isinstance(result, dict):
            return f"telegram message {one_line(str(result.get('message_id', '?')), 32)}"
        raise self._refused(where, status, headers, reply)

    def _refused(self, where: str, status: int, headers: Mapping[str, str],
                 reply: dict[str, Any]) -> SendError:
        """Telegram's ``ok: false``: 429 or ``retry_after`` wait, 5xx retry, the rest refused."""
        code = reply.get("error_code")
        code = code if isinstance(code, int) else status
        words = one_line(hide(str(reply.get("description") or ""), self._hidden)) or f"HTTP {code}"
        params = reply.get("parameters")
        params = params if isinstance(params, dict) else {}
        told = params.get("retry_after")
        told = float(told) if isinstance(told, int | float) and not isinstance(told, bool) else None
        wait = min(max(0.0, told), MAX_RETRY_AFTER_S) if told is not None else retry_after(headers)
        if code == 429 or told is not None:
            said = "retry after" in words.lower()
            later = f" (retry after {wait:g} s)" if wait is not None and not said else ""
            return SendError(f"{where}: {code} {words}{later}", retry=True, retry_after_s=wait)
        if code >= 500 or status >= 500:
            return SendError(f"{where}: {code} {words}", retry=True, retry_after_s=wait)
        hint = ""
        if code == 401:
            hint = ": the bot token was refused (ask @BotFather for the bot's token)"
        elif isinstance(params.get("migrate_to_chat_id"), int):
            hint = f": the group is now a supergroup, chat_id {params['migrate_to_chat_id']}"
        elif "chat not found" in words.lower():
            hint = f": check chat_id ({self.section.chat_id}) and that the bot is in that chat"
        return SendError(f"{where}: {code} {words}{hint}", retry=False)

    def state(self) -> str:
        if not self._secret:
            return "telegram: no bot token (the channel's secret)"
        return (f"ready (telegram chat {self.section.chat_id} via {_host(self.base)}"
                f"{_tls_note(self.section, self.base)})")


class Webhook(_HTTPChannel):
    """POST :meth:`Alert.to_json` with ``Idempotency-Key: <alert id>`` (a receiver drops a
    repeat by it); the secret, when set, as a Bearer token. Any 2xx is delivered."""

    kind = "webhook"

    def send(self, alert: Alert) -> str:
        headers = {"Content-Type": "application/json", "Idempotency-Key": alert.id}
        if self._secret:
            headers["Authorization"] = f"Bearer {self._secret}"
        url = self.section.url
        status, got, body = self._post(url, alert.to_json().encode("utf-8"), headers)
        err = classify(status, got, body, secret=self._hidden)
        if err is not None:
            raise _failed(f"webhook {show_url(url, self._hidden)}", err)
        return f"webhook HTTP {status}"

    def state(self) -> str:
        url = self.section.url
        return f"ready (webhook to {show_url(url, self._hidden)}{_tls_note(self.section, url)})"


# -- the heartbeat ----------------------------------------------------------------------------

def heartbeat(url: str, *, timeout_s: float = 10, verify_tls: bool = True,
              ca_file: str = "") -> None:
    """GET the dead man's switch: any 2xx is fine (healthchecks' ``OK``, Uptime Kuma's
    ``{"ok": true}``), except Uptime Kuma's ``{"ok": false, "msg": ...}`` (refused, no retry).
    SendError otherwise. The URL's token, a path segment (:func:`url_tokens`), never shows."""
    tokens = _long_tokens(url) + url_passwords(url)
    try:
        status, headers, body = get(url, timeout_s=timeout_s, verify_tls=verify_tls,
                                    ca_file=ca_file, secret=tokens, shown=show_heartbeat(url))
    except SendError as exc:
        raise _named("heartbeat", exc) from None
    where = f"heartbeat {show_heartbeat(url)}"
    err = classify(status, headers, body, secret=tokens)
    if err is not None:
        raise _failed(where, err)
    reply = _json(body)
    if isinstance(reply, dict) and reply.get("ok") is False:
        raise SendError(f"{where}: refused: {server_words(body, tokens) or 'ok: false'}",
                        retry=False)
