"""The e-mail channel against a real SMTP server on loopback (aiosmtpd) with a test CA made by
openssl: delivered with STARTTLS and a login, over implicit TLS (smtps://), and each way it can
fail: no STARTTLS offered (nothing sent, not even the login), a wrong password (never quoted,
even when the server echoes it), an untrusted certificate, a refused recipient, the server
down. The server is real; only its answers are chosen by the test."""

from __future__ import annotations

import email
import email.policy
import email.utils
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from agent.alerts import mail, model
from agent.alerts.mail import Email, message, retries
from agent.alerts.model import Alert, SendError, alert_id
from agent.alerts.settings import ChannelSection

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
SENT_AT = 1_742_000_000.0            # the clock the channel reads for Date
USER, PASSWORD = "worker@example.org", "pässwörd-K7q2xw9Z"
NOBODY = "nobody@example.org"        # the server refuses this recipient (550)
LATER = "later@example.org"          # ... and this one for now (450, greylisting)


def alert(event: str = model.OUTAGE_START) -> Alert:
    return Alert(id=alert_id("episode-1", event), event=event, type="outage", cause="isp",
                 start=T0, end=None, duration_s=None, agent="a1",
                 title="Line down at home — since 09:26",
                 text="No answer since 09:26 UTC.\nGateway 192.0.2.1 answers; the ISP does not. Ünïcödé ✓",
                 urgency="critical")


# -- the test CA and the server's certificate (127.0.0.1 and localhost) ---------------------

def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """(ca.pem, server cert, server key): a test CA and a certificate it signed for 127.0.0.1."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed (apt-get install openssl)")
    d = tmp_path_factory.mktemp("smtp-pki")
    ca_key, ca, key, csr, cert = (d / n for n in ("ca.key", "ca.pem", "smtp.key", "smtp.csr",
                                                   "smtp.pem"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=linewatch mail lab CA", "-keyout", str(ca_key), "-out", str(ca))
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout",
             str(key), "-out", str(csr))
    ext = d / "san.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return ca, cert, key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a real SMTP server that records what it is told ----------------------------------------

@dataclass
class Delivery:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool          # the session was encrypted when the message was sent
    login: str | None  # who had logged in

    def parsed(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.content, policy=email.policy.default)

    def text(self) -> str:
        """The body as the recipient reads it (the wire's CRLF as "\\n")."""
        return self.parsed().get_content().replace("\r\n", "\n")


@dataclass
class Recorder:
    """aiosmtpd's handler and authenticator: records deliveries and login attempts; refuses
    :data:`NOBODY` (550) and :data:`LATER` (450); accepts USER with ``password`` only. ``auth_code``:
    answer every login with this instead (e.g. 454); ``echo``: put the login and password it
    was given into its refusal (a careless server)."""

    deliveries: list[Delivery] = field(default_factory=list)
    logins: list[tuple[str, str, bool]] = field(default_factory=list)   # (login, password, tls)
    auth_code: str | None = None
    echo: bool = False
    password: str = PASSWORD
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address == NOBODY:
            return "550 5.1.1 <nobody@example.org>: no such user"
        if address == LATER:
            return "450 4.2.0 <later@example.org>: greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        login = session.auth_data.login.decode() if session.authenticated else None
        with self.lock:
            self.deliveries.append(Delivery(envelope.mail_from, list(envelope.rcpt_tos),
                                            envelope.original_content or b"", _tls(server), login))
        return "250 2.0.0 queued as 4Xq2"

    def __call__(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        with self.lock:
            self.logins.append((login, password, _tls(server)))
        if self.auth_code:
            return AuthResult(success=False, handled=False, message=self.auth_code)
        if (login, password) == (USER, self.password):
            return AuthResult(success=True, auth_data=auth_data)
        if self.echo:
            return AuthResult(success=False, handled=False,
                              message=f"535 5.7.8 no user {login} with password {password}")
        return AuthResult(success=False, handled=False)


def _tls(server) -> bool:
    return server.transport is not None and server.transport.get_extra_info("cipher") is not None


@dataclass
class Server:
    port: int
    rec: Recorder
    controller: Controller

    def url(self, scheme: str = "smtp") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"


def _serve(rec: Recorder, **kwargs) -> Controller:
    port = _free_port()
    c = Controller(rec, hostname="127.0.0.1", port=port, server_hostname="mail.test",
                   authenticator=rec, ready_timeout=10, **kwargs)
    c.start()
    return c


def _server_context(pki) -> ssl.SSLContext:
    _, cert, key = pki
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


@pytest.fixture
def starttls(pki):
    """STARTTLS offered and required before anything else; AUTH only under TLS."""
    rec = Recorder()
    c = _serve(rec, tls_context=_server_context(pki), require_starttls=True, auth_require_tls=True)
    yield Server(c.port, rec, c)
    c.stop()


@pytest.fixture
def cleartext():
    """No STARTTLS at all, AUTH offered in clear: the server a careless client would use."""
    rec = Recorder()
    c = _serve(rec, auth_require_tls=False)
    yield Server(c.port, rec, c)
    c.stop()


@pytest.fixture
def implicit(pki):
    """TLS from the first byte (smtps://)."""
    rec = Recorder()
    # the transport is TLS already: aiosmtpd's check looks for STARTTLS only
    c = _serve(rec, ssl_context=_server_context(pki), auth_require_tls=False)
    yield Server(c.port, rec, c)
    c.stop()


def channel(url: str, pki=None, *, to=("worker@example.org",), user=USER, secret=PASSWORD,
            sender="", ca=True, verify=True, name="") -> Email:
    sec = ChannelSection(kind="email", name=name, url=url, to=tuple(to), sender=sender, user=user,
                         ca_file=str(pki[0]) if ca and pki else "", verify_tls=verify)
    return Email(sec, secret, clock=lambda: SENT_AT, helo_name="agent.test")


def failure(ch: Email) -> SendError:
    with pytest.raises(SendError) as e:
        ch.send(alert())
    err = e.value
    assert PASSWORD not in str(err) and "\n" not in str(err)
    return err


# -- pure parts ------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "again"), [(421, True), (450, True), (454, True), (500, False),
                                             (535, False), (550, False), (554, False), (-1, True)],
                         ids=["421", "450", "454", "500", "535", "550", "554", "no-code"])
def test_which_reply_codes_are_retried(code, again):
    assert retries(code) is again


def test_the_message_headers():
    msg = message(alert(model.POWER_START), sender="lw@example.org", to=("a@example.org", "b@example.org"),
                  channel="phone", sent_at=SENT_AT)
    assert msg["From"] == "lw@example.org"
    assert msg["To"] == "a@example.org, b@example.org"
    assert msg["Message-ID"] == f"<{alert(model.POWER_START).id}.phone@linewatch.invalid>"
    assert msg["X-Linewatch-Event"] == "power_start"
    assert email.utils.parsedate_to_datetime(msg["Date"]).timestamp() == SENT_AT
    assert msg.get_content() == alert().text + "\n"


def test_state_does_not_connect():
    with socket.socket() as listener:     # a connection would wait in its backlog
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        ch = channel(f"smtp://127.0.0.1:{port}")
        assert ch.state() == f"ready (smtp://127.0.0.1:{port} as {USER})"
        with pytest.raises(BlockingIOError):
            listener.accept()                 # nobody came
    assert PASSWORD not in ch.state()
    assert channel("smtps://127.0.0.1", user="", secret=None).state() == \
        "ready (smtps://127.0.0.1:465 without login)"
    assert channel("smtp://127.0.0.1", secret=None).state() == \
        f"not ready: smtp://127.0.0.1:587: user {USER} has no password (the channel's secret)"


# -- a real server ---------------------------------------------------------------------------

def test_delivered_with_starttls_and_login(starttls, pki):
    ch = channel(starttls.url(), pki, name="phone")
    receipt = ch.send(alert())
    assert receipt == f"email: sent to 1 of 1 via {starttls.url()}"
    [d] = starttls.rec.deliveries
    assert d.tls is True and d.login == USER
    assert starttls.rec.logins == [(USER, PASSWORD, True)]
    assert (d.mail_from, d.rcpt_tos) == ("worker@example.org", ["worker@example.org"])
    msg = d.parsed()
    a = alert()
    assert msg["From"] == "worker@example.org" and msg["To"] == "worker@example.org"
    assert msg["Subject"] == a.title
    assert d.text() == a.text + "\n"
    assert msg["Message-ID"] == f"<{a.id}.phone@linewatch.invalid>"
    assert msg["X-Linewatch-Event"] == "outage_start"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert email.utils.parsedate_to_datetime(msg["Date"]).timestamp() == SENT_AT


def test_an_ascii_password_logs_in_through_smtplib(starttls, pki):
    # smtplib's own login (an ASCII password); the non-ASCII one above goes as AUTH PLAIN in UTF-8
    starttls.rec.password = "plain-Passw0rd-4711"
    channel(starttls.url(), pki, secret="plain-Passw0rd-4711").send(alert())
    assert starttls.rec.deliveries[0].login == USER


def test_a_repeat_has_the_same_message_id_and_the_kind_names_an_unnamed_channel(starttls, pki):
    ch = channel(starttls.url(), pki, to=("a@example.org", "b@example.org"),
                 sender="linewatch@example.org")
    ch.send(alert())
    ch.send(alert())
    first, second = (d.parsed() for d in starttls.rec.deliveries)
    assert first["Message-ID"] == second["Message-ID"] == f"<{alert().id}.email@linewatch.invalid>"
    assert first["From"] == "linewatch@example.org"
    assert starttls.rec.deliveries[0].rcpt_tos == ["a@example.org", "b@example.org"]


def test_no_starttls_means_nothing_is_sent(cleartext, pki):
    err = failure(channel(cleartext.url(), pki))
    assert err.retry is False
    assert "offers no STARTTLS: refusing to send in clear" in str(err)
    assert cleartext.rec.logins == []          # the password never went out in clear
    assert cleartext.rec.deliveries == []


def test_a_wrong_password_is_not_retried_nor_quoted(starttls, pki):
    err = failure(channel(starttls.url(), pki, secret=PASSWORD + "-old"))
    assert err.retry is False
    assert f"refused the login of {USER}" in str(err) and "535" in str(err)
    assert PASSWORD + "-old" not in str(err)
    assert starttls.rec.deliveries == []


def test_a_server_echoing_the_password_has_it_masked(starttls, pki):
    starttls.rec.echo = True
    wrong = "Wr0ng-but-secret-4711"
    with pytest.raises(SendError) as e:
        channel(starttls.url(), pki, secret=wrong).send(alert())
    assert e.value.retry is False
    assert wrong not in str(e.value) and "***" in str(e.value)
    assert e.value.__cause__ is None           # a logged traceback would show the cause's text
    assert starttls.rec.logins[0][1] == wrong  # it was sent (under TLS), and echoed back


def test_a_temporary_login_failure_is_retried(starttls, pki):
    starttls.rec.auth_code = "454 4.7.0 Temporary authentication failure"
    err = failure(channel(starttls.url(), pki))
    assert err.retry is True and "454" in str(err)


def test_an_untrusted_certificate_is_refused(starttls):
    err = failure(channel(starttls.url()))       # no ca_file: the test CA is unknown
    assert "certificate" in str(err) and "not trusted" in str(err) and "ca_file" in str(err)
    assert err.retry is True    # the alert waits until ca_file is set
    assert starttls.rec.logins == [] and starttls.rec.deliveries == []


def test_verification_off_sends_anyway(starttls):
    channel(starttls.url(), verify=False).send(alert())
    assert starttls.rec.deliveries[0].tls is True


def test_implicit_tls(implicit, pki):
    ch = channel(implicit.url("smtps"), pki)
    assert ch.send(alert()) == f"email: sent to 1 of 1 via {implicit.url('smtps')}"
    [d] = implicit.rec.deliveries
    assert d.tls is True and d.login == USER
    assert d.parsed()["Subject"] == alert().title


def test_implicit_tls_against_a_plain_server_fails_cleanly(cleartext, pki):
    err = failure(channel(cleartext.url("smtps"), pki))
    assert err.retry is True and "TLS" in str(err)
    assert cleartext.rec.logins == [] and cleartext.rec.deliveries == []


def test_a_refused_recipient_is_not_retried(starttls, pki):
    err = failure(channel(starttls.url(), pki, to=(NOBODY,)))
    assert err.retry is False
    assert "refused every recipient" in str(err) and "550" in str(err) and NOBODY in str(err)
    assert starttls.rec.deliveries == []


def test_a_greylisted_recipient_is_retried(starttls, pki):
    err = failure(channel(starttls.url(), pki, to=(LATER,)))
    assert err.retry is True and "450" in str(err)


def test_one_refused_recipient_of_two_still_delivers_to_the_other(starttls, pki):
    receipt = channel(starttls.url(), pki, to=("worker@example.org", NOBODY)).send(alert())
    assert receipt.startswith(f"email: sent to 1 of 2 via {starttls.url()}; refused: {NOBODY} 550")
    assert starttls.rec.deliveries[0].rcpt_tos == ["worker@example.org"]


def test_the_server_down_is_retried(pki):
    port = _free_port()     # nothing listens there
    err = failure(channel(f"smtp://127.0.0.1:{port}", pki))
    assert err.retry is True
    assert f"cannot reach smtp://127.0.0.1:{port}" in str(err) and "refused" in str(err).lower()


@pytest.mark.parametrize(("password", "says"), [
    ("plain-Passw0rd-4711", "No suitable authentication method"),
    (PASSWORD, "does not offer AUTH PLAIN"),
], ids=["ascii", "non-ascii"])
def test_a_server_without_a_usable_login_is_not_retried(pki, password, says):
    rec = Recorder(password=password)
    c = _serve(rec, tls_context=_server_context(pki), require_starttls=True,
               auth_exclude_mechanism=["LOGIN", "PLAIN"])
    try:
        with pytest.raises(SendError) as e:
            channel(f"smtp://127.0.0.1:{c.port}", pki, secret=password).send(alert())
    finally:
        c.stop()
    assert e.value.retry is False and says in str(e.value)
    assert password not in str(e.value)
    assert rec.logins == [] and rec.deliveries == []


@pytest.mark.parametrize(("limit", "says"), [("TIMEOUT_S", "did not answer within 0.3 s"),
                                             ("DEADLINE_S", "did not finish within 0.3 s")],
                         ids=["one-reply", "whole-exchange"])
def test_a_server_that_never_greets_is_given_up_on_in_time(pki, monkeypatch, limit, says):
    monkeypatch.setattr(mail, limit, 0.3)
    with socket.socket() as mute:     # connections wait in its backlog: never a greeting
        mute.bind(("127.0.0.1", 0))
        mute.listen(4)
        started = time.monotonic()
        err = failure(channel(f"smtp://127.0.0.1:{mute.getsockname()[1]}", pki))
        assert time.monotonic() - started < 5
    assert err.retry is True and says in str(err)


def test_a_missing_ca_file_is_named_and_tried_again(tmp_path):
    """Tried again, as the web channels do: the alert goes once the file is in place."""
    sec = ChannelSection(kind="email", url="smtp://127.0.0.1:9", to=("a@example.org",),
                         ca_file=str(tmp_path / "no-such-ca.pem"))
    with pytest.raises(SendError) as e:
        Email(sec, None).send(alert())
    assert e.value.retry is True and "no-such-ca.pem" in str(e.value)


def test_smtplib_and_the_email_package_load_only_when_a_message_goes_out():
    code = ("import sys\n"
            "from agent.alerts.channels import build\n"
            "from agent.alerts.settings import ChannelSection\n"
            "ch = build(ChannelSection(kind='email', url='smtp://127.0.0.1:9', "
            "to=('a@example.org',)), 0, 'lw.toml', env={})\n"
            "print(ch.state())\n"
            "loaded = [m for m in ('smtplib', 'ssl', 'email.message') if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ready (smtp://127.0.0.1:9 without login)"
