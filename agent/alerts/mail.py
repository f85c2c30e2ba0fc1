"""E-mail alerts over SMTP, always encrypted: ``smtp://host[:587]`` speaks STARTTLS (required:
a server that does not offer it gets nothing, not even the login), ``smtps://host[:465]`` TLS
from the first byte.

The certificate is checked against the system's CAs and ``ca_file``; ``verify_tls = false``
turns that off (a test server only). With ``user`` set the channel logs in, the channel's
secret being the password (smtplib's own login sends ASCII only: a login or password with other
characters goes as AUTH PLAIN in UTF-8, RFC 4616). Every socket operation waits at most
:data:`TIMEOUT_S`, and the whole exchange :data:`DEADLINE_S` (a server trickling its answers
cannot hold the agent).

The message: From ``sender`` (else the first recipient), To every recipient, Subject the
alert's title, the text as UTF-8 (quoted-printable, safe through any relay), Date when it is
sent, ``Message-ID: <alert id>.<channel>@linewatch.invalid`` (the same for a repeat, so a mail
client can tell) and ``X-Linewatch-Event: <event>``.

Errors (:class:`~agent.alerts.model.SendError`, never holding the password): the server's 5xx
(a refused login, recipient or message), a server without STARTTLS or without AUTH: no
``retry``; its 4xx, a connection that fails or times out, an untrusted certificate (the alert
waits until ``ca_file`` is fixed): ``retry``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent.alerts.model import Alert, SendError, one_line
from agent.alerts.settings import ChannelSection, channel_name
from kit.secret import redact

if TYPE_CHECKING:
    from email.message import EmailMessage

TIMEOUT_S = 20.0      # one socket operation (connect, a reply)
DEADLINE_S = 60.0     # the whole exchange, from connecting to QUIT
PORTS = {"smtp": 587, "smtps": 465}
MESSAGE_DOMAIN = "linewatch.invalid"
_SHOWN_MAX = 200      # characters of the server's answer a message quotes


def message(alert: Alert, *, sender: str, to: tuple[str, ...], channel: str,
            sent_at: float) -> EmailMessage:
    """The e-mail for ``alert``; ``sent_at`` (Unix seconds) is its Date."""
    # deferred: the email package (a dozen modules) loads only when an e-mail goes out
    from email.message import EmailMessage
    from email.utils import formatdate

    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    # a header may not hold a line break; the title is one line anyway
    msg["Subject"] = " ".join(alert.title.split())
    msg["Date"] = formatdate(sent_at, localtime=False)
    msg["Message-ID"] = f"<{alert.id}.{channel}@{MESSAGE_DOMAIN}>"
    msg["X-Linewatch-Event"] = alert.event
    # RFC 3834: no vacation or out-of-office replies to a machine
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(alert.text, charset="utf-8", cte="quoted-printable")
    return msg


def retries(code: int) -> bool:
    """Whether an SMTP reply code is worth another attempt: 4xx (and no code: the connection
    broke) yes, 5xx no."""
    return not 500 <= code <= 599


def _words(code: int, text: bytes | str) -> str:
    said = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(said.split())}".strip()


class Email:
    """The ``email`` channel (see the module's docstring). ``clock`` gives the Date (Unix
    seconds); ``helo_name`` the name the agent gives in EHLO (the host's name by default,
    without a DNS lookup)."""

    kind = "email"
    remote = True

    def __init__(self, section: ChannelSection, secret: str | None, *,
                 clock: Callable[[], float] = time.time, helo_name: str | None = None) -> None:
        self.key = channel_name(section)
        self.channel = channel_name(section)
        parts = urlsplit(section.url)
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname or ""
        try:
            port = parts.port
        except ValueError:     # the config's check refuses it first; not ready then
            self.host, port = "", None
        self.port = port or PORTS["smtps" if self.implicit_tls else "smtp"]
        self.to = section.to
        self.sender = section.sender or (section.to[0] if section.to else "")
        self.user = section.user
        self.ca_file = section.ca_file
        self.verify_tls = section.verify_tls
        self._secret = secret
        self._clock = clock
        self._helo = helo_name or socket.gethostname() or "localhost"

    @property
    def where(self) -> str:
        """``smtp://host:port`` (never the URL as written: it could hold a password)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{host}:{self.port}"

    def state(self) -> str:
        """Whether the channel is set up to send (it does not connect)."""
        if not self.host or not self.to:
            return "not ready: email needs url (smtp://host) and to"
        if self.user and not self._secret:
            return f"not ready: {self.where}: user {self.user} has no password (the channel's secret)"
        who = f"as {self.user}" if self.user else "without login"
        return f"ready ({self.where} {who})"

    def send(self, alert: Alert) -> str:
        """Send ``alert``; returns "email: sent to N of M via smtp://host:port" (with the
        recipients the server refused, when some were and others not)."""
        if not self.host or not self.to:
            raise SendError("email: url (smtp://host) and to are required", retry=False)
        if self.user and not self._secret:
            raise SendError(f"email: user {self.user} has no password (the channel's secret)",
                            retry=False)
        msg = message(alert, sender=self.sender, to=self.to, channel=self.channel,
                      sent_at=self._clock())
        # deferred: smtplib and ssl (OpenSSL, about 4 MB) load only when an e-mail goes out
        import smtplib
        import ssl

        try:
            ctx = ssl.create_default_context(cafile=self.ca_file or None)
        except OSError as exc:     # ssl.SSLError too: a file that is not PEM
            # retried, as the web channels do: the alert goes once the file is fixed
            raise SendError(f"email: cannot read ca_file {self.ca_file}: "
                            f"{getattr(exc, 'strerror', None) or exc}", retry=True) from exc
        if not self.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.implicit_tls:
            smtp: Any = smtplib.SMTP_SSL(local_hostname=self._helo, timeout=TIMEOUT_S, context=ctx)
        else:
            smtp = smtplib.SMTP(local_hostname=self._helo, timeout=TIMEOUT_S)
        # Made without a host, it connects in _exchange, under the deadline's watch; the name its
        # TLS checks the certificate against (and sends as SNI) is set by its constructor only.
        smtp._host = self.host
        expired = threading.Event()
        timer = threading.Timer(DEADLINE_S, _cut, (smtp, expired))
        timer.daemon = True
        timer.start()
        try:
            refused = self._exchange(smtp, msg, ctx)
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            if expired.is_set():
                raise SendError(f"email: {self.where} did not finish within {DEADLINE_S:g} s",
                                retry=True) from exc
            raise self._failure(exc) from (None if self._leaks(exc) else exc)
        finally:
            timer.cancel()
            smtp.close()
        sent = len(self.to) - len(refused)
        note = ("; refused: " + ", ".join(f"{a} {self._shown(_words(*r))}" for a, r in refused.items())
                if refused else "")
        return f"email: sent to {sent} of {len(self.to)} via {self.where}{note}"

    def _exchange(self, smtp: Any, msg: EmailMessage, ctx: Any) -> dict[str, tuple[int, bytes]]:
        """Connect, secure, log in, send; the recipients the server refused (others took it)."""
        # deferred: smtplib, as in send (loaded by then)
        import smtplib

        code, greeting = smtp.connect(self.host, self.port)
        if code != 220:
            raise smtplib.SMTPConnectError(code, greeting)
        if not self.implicit_tls:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                _quit(smtp)
                raise SendError(f"email: {self.where} offers no STARTTLS: refusing to send in "
                                "clear (smtps:// if it speaks TLS on another port)", retry=False)
            smtp.starttls(context=ctx)
            smtp.ehlo()
        if self.user:
            self._login(smtp)
        refused: dict[str, tuple[int, bytes]] = smtp.send_message(
            msg, from_addr=self.sender, to_addrs=list(self.to))
        _quit(smtp)
        return refused

    def _login(self, smtp: Any) -> None:
        """Log in: smtplib's ``login`` (CRAM-MD5, PLAIN or LOGIN, as offered) when the login and
        password are ASCII; else AUTH PLAIN in UTF-8 (RFC 4616), since smtplib encodes
        credentials as ASCII and fails on a password such as "pässwort"."""
        # deferred: smtplib, as in send (loaded by then); base64 with it
        import base64
        import smtplib

        password = self._secret or ""
        if self.user.isascii() and password.isascii():
            smtp.login(self.user, password)
            return
        smtp.ehlo_or_helo_if_needed()
        if not smtp.has_extn("auth"):
            raise smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
        if "PLAIN" not in smtp.esmtp_features["auth"].upper().split():
            raise SendError(f"email: {self.where} does not offer AUTH PLAIN, the one way to send a "
                            "login or password with non-ASCII characters", retry=False)
        token = base64.b64encode(f"\0{self.user}\0{password}".encode()).decode("ascii")
        code, answer = smtp.docmd("AUTH", f"PLAIN {token}")
        if code != 235:
            raise smtplib.SMTPAuthenticationError(code, answer)

    def _shown(self, text: str) -> str:
        """Text from the server or a library as a message may hold it: the password in any
        form removed first, then cut."""
        return one_line(redact(text, self._secret), _SHOWN_MAX)

    def _leaks(self, exc: BaseException) -> bool:
        """Whether the exception's own text holds the password (then it is not kept as the
        cause, which a logged traceback would show)."""
        return bool(self._secret) and redact(str(exc), self._secret) != str(exc)

    def _failure(self, exc: BaseException) -> SendError:
        # deferred: smtplib and ssl, loaded by send already
        import smtplib
        import ssl

        at = self.where
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return SendError(f"email: {at} refused the login of {self.user}: "
                             f"{self._shown(_words(exc.smtp_code, exc.smtp_error))}",
                             retry=400 <= exc.smtp_code <= 499)
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            said = "; ".join(f"{a}: {_words(*r)}" for a, r in exc.recipients.items())
            codes = [r[0] for r in exc.recipients.values()]
            return SendError(f"email: {at} refused every recipient: {self._shown(said)}",
                             retry=bool(codes) and all(400 <= c <= 499 for c in codes))
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return SendError(f"email: {at} refused the sender {self.sender}: "
                             f"{self._shown(_words(exc.smtp_code, exc.smtp_error))}",
                             retry=retries(exc.smtp_code))
        if isinstance(exc, smtplib.SMTPResponseException):
            return SendError(f"email: {at} answered {self._shown(_words(exc.smtp_code, exc.smtp_error))}",
                             retry=retries(exc.smtp_code))
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            # no AUTH (a login is configured), or no SMTPUTF8 for a non-ASCII address
            return SendError(f"email: {at}: {self._shown(str(exc))}", retry=False)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return SendError(f"email: the TLS certificate of {at} is not trusted: "
                             f"{self._shown(exc.verify_message or str(exc))} (ca_file: your "
                             "server's CA, or verify_tls = false for a test server)", retry=True)
        if isinstance(exc, ssl.SSLError):
            return SendError(f"email: TLS with {at} failed: {self._shown(exc.reason or str(exc))}",
                             retry=True)
        # smtplib turns a read that timed out into SMTPServerDisconnected
        if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
            return SendError(f"email: {at} did not answer within {TIMEOUT_S:g} s", retry=True)
        if isinstance(exc, socket.gaierror):
            return SendError(f"email: cannot resolve {self.host}: {exc.strerror or exc}", retry=True)
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return SendError(f"email: {at} closed the connection: {self._shown(str(exc))}",
                             retry=True)
        if isinstance(exc, smtplib.SMTPException):
            # smtplib's own complaints (no login method in common, a message it cannot encode
            # for this server): the same again would fail the same way
            return SendError(f"email: {at}: {self._shown(str(exc))}", retry=False)
        if isinstance(exc, OSError):
            return SendError(f"email: cannot reach {at}: {exc.strerror or type(exc).__name__}",
                             retry=True)
        return SendError(f"email: {at}: {self._shown(str(exc))}", retry=False)


def _quit(smtp: Any) -> None:
    """Say goodbye; a QUIT lost on the way changes nothing."""
    # deferred: smtplib, loaded by send already
    import smtplib

    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass


def _cut(smtp: Any, expired: threading.Event) -> None:
    """The deadline passed: end the exchange by shutting its socket (a blocked read returns)."""
    expired.set()
    sock = getattr(smtp, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
