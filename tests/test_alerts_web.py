"""agent/alerts/web.py against real HTTP(S) servers on 127.0.0.1 that play ntfy, Telegram's Bot
API, a webhook receiver, Uptime Kuma and healthchecks (tests/alertservers.py): the request each
service documents, its answers and errors sorted into retry or not, TLS with a test CA, and no
secret in any error or repr. Nothing here leaves loopback."""

from __future__ import annotations

import ast
import base64
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from agent.alerts import model, web
from agent.alerts.model import Alert, SendError
from agent.alerts.settings import ChannelSection
from tests.alertservers import (
    HealthchecksDouble,
    NtfyDouble,
    Reply,
    TelegramDouble,
    UptimeKumaDouble,
    WebhookDouble,
    certificates,
    closed_port,
    ntfy_error,
    server_context,
    telegram_error,
)

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2024, 3, 5, 9, 14, 7, tzinfo=UTC)
END = START + timedelta(minutes=23, seconds=5)
NTFY_TOKEN = "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2"
PASSWORD = "s3cret-Pa55word!"
BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
HOOK_TOKEN = "whk_9fQ2LmZx81TqPw"
CHAT = 123456789
KUMA_TOKEN = "AbC123xYz9"
HC_UUID = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"


def alert(event: str = model.OUTAGE_START, *, urgency: str = "normal", title: str = "Line down",
          text: str = "The line is down since 09:14 (no answer from 3 targets).",
          end: datetime | None = None) -> Alert:
    return Alert(id=model.alert_id("ep-42", event), event=event, type="connectivity", cause="line",
                 start=START, end=end, duration_s=None if end is None else (end - START).total_seconds(),
                 agent="shop-1", title=title, text=text, urgency=urgency,
                 details={"target": "1.1.1.1"}, tags={"site": "lahore"})


def section(kind: str, url: str, **kw) -> ChannelSection:
    return ChannelSection(kind=kind, url=url, **kw)


def forms(secret: str) -> list[str]:
    """The secret as sent, percent-encoded and in HTTP Basic (with a user)."""
    return [secret, quote(secret, safe=""), base64.b64encode(f"worker:{secret}".encode()).decode()]


def assert_hidden(err: BaseException, secret: str, *also: object) -> None:
    for shown in (str(err), repr(err), *map(repr, also), *map(str, also)):
        for f in forms(secret):
            assert f not in shown, f"the secret shows in {shown!r}"


def refused(fn, *args) -> SendError:
    with pytest.raises(SendError) as info:
        fn(*args)
    return info.value


# -- ntfy -------------------------------------------------------------------------------------

@pytest.mark.parametrize("event, urgency, tag, priority", [
    (model.OUTAGE_START, "critical", "warning", "5"),
    (model.OUTAGE_END, "normal", "white_check_mark", "3"),
    (model.POWER_START, "normal", "electric_plug", "3"),
    (model.POWER_END, "low", "white_check_mark", "2"),
    (model.UPS_LOW, "critical", "battery", "5"),
    (model.INTERFERENCE_START, "normal", "no_entry", "3"),
    (model.DIGEST, "low", "memo", "2"),
], ids=["outage-critical", "outage-end", "power", "power-end-low", "ups-low", "blocking", "digest"])
def test_ntfy_posts_the_text_to_the_topic_with_title_priority_and_tags(event, urgency, tag, priority):
    with NtfyDouble() as srv:
        ch = web.Ntfy(section("ntfy", f"{srv.url}/{srv.topic}"), None)
        receipt = ch.send(alert(event, urgency=urgency))
    [req] = srv.requests
    assert srv.problems == []
    assert (req.method, req.path) == ("POST", "/linewatch-k7Q2xw")
    assert req.headers["x-title"] == "Line down"
    assert (req.headers["x-priority"], req.headers["x-tags"]) == (priority, tag)
    assert req.body.decode() == alert().text
    assert req.headers["user-agent"] == "linewatch"
    assert "authorization" not in req.headers
    assert receipt == f"ntfy id {srv.published[0]['id']}"


@pytest.mark.parametrize("user, secret, expected", [
    ("", NTFY_TOKEN, f"Bearer {NTFY_TOKEN}"),
    ("worker", PASSWORD, "Basic " + base64.b64encode(f"worker:{PASSWORD}".encode()).decode()),
], ids=["access-token", "user-password"])
def test_ntfy_authorization_forms(user, secret, expected):
    creds = {"token": NTFY_TOKEN} if not user else {"user": user, "password": PASSWORD}
    with NtfyDouble(**creds) as srv:
        ch = web.Ntfy(section("ntfy", f"{srv.url}/{srv.topic}", user=user), secret)
        assert ch.send(alert()).startswith("ntfy id ")
    assert srv.requests[0].headers["authorization"] == expected
    assert srv.problems == []


@pytest.mark.parametrize("title", ["Ligne coupée à 09:14", "بجلی بند ہے ⚡", "=?UTF-8?B?x?= looks encoded",
                                   "two\nlines\tand a tab"],
                         ids=["latin-1", "urdu-emoji", "looks-encoded", "control-chars"])
def test_ntfy_titles_reach_the_server_as_written(title):
    with NtfyDouble() as srv:
        web.Ntfy(section("ntfy", f"{srv.url}/{srv.topic}"), None).send(alert(title=title))
    sent = srv.requests[0].headers["x-title"]
    assert sent.isascii()
    assert srv.published[0]["title"] == " ".join(title.split())


def test_ntfy_text_over_4096_bytes_is_cut_not_turned_into_an_attachment():
    text = "ۓ" * 3000  # two bytes each in UTF-8: 6000 bytes
    with NtfyDouble() as srv:
        web.Ntfy(section("ntfy", f"{srv.url}/{srv.topic}"), None).send(alert(text=text))
    assert srv.problems == []
    got = srv.published[0]["message"]
    assert len(got.encode()) <= 4096 and got.endswith("…") and got[:-1] == text[:len(got) - 1]


@pytest.mark.parametrize("reply, retry, wait, words", [
    (Reply(429, {"code": 42901, "http": 429, "error": "limit reached: too many requests"},
           {"Retry-After": "30"}), True, 30.0, "limit reached"),
    (ntfy_error(500, 50001, "internal server error"), True, None, "internal server error"),
    (Reply(502, "<html><body>502 Bad Gateway</body></html>"), True, None, "502 Bad Gateway"),
    (ntfy_error(401, 40101, "unauthorized"), False, None, "HTTP 401: unauthorized"),
    (ntfy_error(413, 41301, "message too large"), False, None, "too large"),
    (Reply(200, "<html>Welcome to nginx!</html>"), False, None, "not an ntfy server"),
    (Reply(200, {"id": "x", "event": "keepalive"}), False, None, "not an ntfy server"),
    (Reply(301, b"", {"Location": "https://ntfy.example.org/linewatch-k7Q2xw"}), False, None,
     "redirects are not followed"),
], ids=["429-retry-after", "500", "502-proxy-html", "401", "413", "200-not-ntfy", "200-wrong-event",
        "301-redirect"])
def test_ntfy_error_answers(reply, retry, wait, words):
    with NtfyDouble(token=NTFY_TOKEN) as srv:
        srv.script(reply)
        ch = web.Ntfy(section("ntfy", f"{srv.url}/{srv.topic}"), NTFY_TOKEN)
        err = refused(ch.send, alert())
    assert (err.retry, err.retry_after_s) == (retry, wait)
    assert words in str(err) and str(err).startswith(f"ntfy {srv.url}/…: ")
    assert len(srv.requests) == 1   # a 3xx is not followed, nothing is retried here
    assert_hidden(err, NTFY_TOKEN, ch)


@pytest.mark.parametrize("creds, secret, status", [
    ({"token": NTFY_TOKEN}, "tk_wrongwrongwrongwrongwrong", 401),
    ({"token": NTFY_TOKEN}, None, 403),
    ({"user": "worker", "password": PASSWORD}, "not-the-password", 401),
], ids=["wrong-token", "no-token", "wrong-password"])
def test_ntfy_refused_credentials_are_not_retried(creds, secret, status):
    user = creds.get("user", "")
    with NtfyDouble(**creds) as srv:
        ch = web.Ntfy(section("ntfy", f"{srv.url}/{srv.topic}", user=user), secret)
        err = refused(ch.send, alert())
    assert not err.retry and f"HTTP {status}" in str(err)
    if secret:
        assert_hidden(err, secret, ch)


def test_a_server_echoing_the_credentials_does_not_put_them_in_the_error():
    with NtfyDouble() as srv:
        srv.script(Reply(400, {"error": f"bad header: Authorization: Bearer {NTFY_TOKEN} "
                                        f"(percent-encoded {quote(NTFY_TOKEN, safe='')})"}))
        ch = web.Ntfy(section("ntfy", f"{srv.url}/{srv.topic}"), NTFY_TOKEN)
        err = refused(ch.send, alert())
    assert "Bearer ***" in str(err)
    assert_hidden(err, NTFY_TOKEN, ch)


def test_ntfy_state_says_ready_without_sending():
    with NtfyDouble() as srv:
        url = f"{srv.url}/{srv.topic}"
        host = srv.url.removeprefix("http://")
        assert web.Ntfy(section("ntfy", url), NTFY_TOKEN).state() == f"ready (ntfy at {host})"
        lonely = web.Ntfy(section("ntfy", url, user="worker"), None).state()
    assert "no password" in lonely
    assert srv.requests == []


# -- Telegram ---------------------------------------------------------------------------------

def telegram(srv: TelegramDouble, token: str = BOT_TOKEN, chat: str = str(CHAT), **kw) -> web.Telegram:
    return web.Telegram(section("telegram", srv.url, chat_id=chat, **kw), token)


def test_telegram_send_message():
    with TelegramDouble(BOT_TOKEN) as srv:
        ch = telegram(srv)
        receipt = ch.send(alert())
    [req] = srv.requests
    assert srv.problems == []
    assert (req.method, req.path) == ("POST", f"/bot{BOT_TOKEN}/sendMessage")
    assert req.headers["content-type"] == "application/json"
    assert req.json() == {"chat_id": CHAT, "text": alert().text, "disable_web_page_preview": True}
    assert receipt == "telegram message 101"
    assert ch.kind == "telegram" and ch.remote


def test_telegram_channel_name_chats_go_as_strings():
    with TelegramDouble(BOT_TOKEN, chats=("@linewatch_shop",)) as srv:
        telegram(srv, chat="@linewatch_shop").send(alert())
    assert srv.requests[0].json()["chat_id"] == "@linewatch_shop"


@pytest.mark.parametrize("text", ["x" * 5000, "⚡" * 2500 + "🔌" * 2000], ids=["ascii", "emoji"])
def test_telegram_text_is_cut_to_4096(text):
    with TelegramDouble(BOT_TOKEN) as srv:
        telegram(srv).send(alert(text=text))
    assert srv.problems == []
    sent = srv.sent[0]["text"]
    assert len(sent) <= 4096 and sent.endswith("…") and text.startswith(sent[:-1])


@pytest.mark.parametrize("reply, retry, wait, words", [
    (telegram_error(429, "Too Many Requests: retry after 17", retry_after=17), True, 17.0,
     "429 Too Many Requests: retry after 17"),
    (telegram_error(400, "Bad Request: flood", retry_after=3), True, 3.0, "flood (retry after 3 s)"),
    (telegram_error(400, "Bad Request: chat not found"), False, None, "check chat_id"),
    (telegram_error(401, "Unauthorized"), False, None, "the bot token was refused"),
    (telegram_error(403, "Forbidden: bot was blocked by the user"), False, None, "blocked"),
    (telegram_error(400, "Bad Request: group chat was upgraded to a supergroup chat",
                    migrate_to_chat_id=-1001234567890), False, None, "chat_id -1001234567890"),
    (telegram_error(500, "Internal Server Error"), True, None, "500 Internal Server Error"),
    (Reply(502, "<html>502 Bad Gateway</html>"), True, None, "HTTP 502"),
    (Reply(200, "<html>a captive portal</html>"), False, None, "not the Bot API"),
], ids=["429-retry-after", "retry-after-only", "400-chat-not-found", "401-unauthorized", "403-blocked",
        "400-migrated", "500", "502-proxy-html", "200-not-telegram"])
def test_telegram_error_answers(reply, retry, wait, words):
    with TelegramDouble(BOT_TOKEN) as srv:
        srv.script(reply)
        ch = telegram(srv)
        err = refused(ch.send, alert())
    assert (err.retry, err.retry_after_s) == (retry, wait)
    assert words in str(err)
    assert str(err).startswith(f"telegram {srv.url}/…: ")
    assert_hidden(err, BOT_TOKEN, ch)


def test_telegram_real_refusals_from_the_double_hide_the_token():
    with TelegramDouble("987654321:BBZZxxyyTTuuVVwwQQrrSS0011223344") as srv:
        ch = telegram(srv)      # the token the double does not know
        unauthorized = refused(ch.send, alert())
    assert not unauthorized.retry and "401 Unauthorized" in str(unauthorized)
    assert_hidden(unauthorized, BOT_TOKEN, ch)
    with TelegramDouble(BOT_TOKEN) as srv:
        ch = telegram(srv, chat="42")
        not_found = refused(ch.send, alert())
    assert not not_found.retry and "chat not found" in str(not_found)
    assert_hidden(not_found, BOT_TOKEN, ch)


def test_telegram_state_and_repr_never_show_the_token():
    ch = web.Telegram(section("telegram", "", chat_id=str(CHAT)), BOT_TOKEN)
    assert ch.state() == f"ready (telegram chat {CHAT} via api.telegram.org)"
    assert ch.base == web.TELEGRAM_API
    for shown in (repr(ch), str(ch), ch.state(), repr(vars(ch)).replace(repr(BOT_TOKEN), "")):
        assert BOT_TOKEN not in shown
    assert "no bot token" in web.Telegram(section("telegram", "", chat_id="1"), None).state()


# -- the webhook ------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_webhook_posts_the_alert_as_json(status):
    with WebhookDouble(token=HOOK_TOKEN, status=status) as srv:
        ch = web.Webhook(section("webhook", f"{srv.url}/hooks/linewatch"), HOOK_TOKEN)
        assert ch.send(alert()) == f"webhook HTTP {status}"
        ch.send(alert(model.OUTAGE_END, end=END))
    assert srv.problems == []
    first, second = srv.requests
    assert first.path == "/hooks/linewatch"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["authorization"] == f"Bearer {HOOK_TOKEN}"
    assert first.headers["user-agent"] == "linewatch"
    body = first.json()
    assert {"id", "event", "type", "cause", "start", "end", "duration_s", "agent", "text"} <= set(body)
    assert first.headers["idempotency-key"] == body["id"] == alert().id
    assert (body["event"], body["start"], body["end"], body["duration_s"]) == (
        "outage_start", "2024-03-05T09:14:07Z", None, None)
    closed = second.json()
    assert (closed["event"], closed["end"], closed["duration_s"]) == (
        "outage_end", "2024-03-05T09:37:12Z", 1385.0)
    assert second.headers["idempotency-key"] == closed["id"] != body["id"]


def test_webhook_without_a_secret_sends_no_authorization():
    with WebhookDouble() as srv:
        web.Webhook(section("webhook", srv.url + "/in"), None).send(alert(text="Ünïcode ✓"))
    assert "authorization" not in srv.requests[0].headers
    assert srv.requests[0].json()["text"] == "Ünïcode ✓"


@pytest.mark.parametrize("reply, retry, wait, words", [
    (Reply(401, {"error": "invalid token"}), False, None, "HTTP 401: invalid token"),
    (Reply(404, "Not Found"), False, None, "HTTP 404: Not Found"),
    (Reply(503, "maintenance", {"Retry-After": "Tue, 05 Mar 2024 09:16:07 GMT",
                                "Date": "Tue, 05 Mar 2024 09:15:07 GMT"}), True, 60.0, "maintenance"),
    (Reply(429, {"message": "slow down"}, {"Retry-After": "5"}), True, 5.0, "slow down"),
    (Reply(302, b"", {"Location": f"https://other.example/in?token={HOOK_TOKEN}"}), False, None,
     "redirected to https://other.example/…"),
    (Reply(500, "x" * 1_000_000), True, None, "HTTP 500"),
], ids=["401", "404", "503-retry-after-date", "429", "302-location-token", "500-huge-body"])
def test_webhook_error_answers(reply, retry, wait, words):
    with WebhookDouble(token=HOOK_TOKEN) as srv:
        srv.script(reply)
        ch = web.Webhook(section("webhook", f"{srv.url}/in"), HOOK_TOKEN)
        err = refused(ch.send, alert())
    assert (err.retry, err.retry_after_s) == (retry, wait)
    assert words in str(err) and len(str(err)) < 400
    assert_hidden(err, HOOK_TOKEN, ch)


def test_an_answer_is_read_to_64_kib_at_most():
    with WebhookDouble() as srv:
        srv.script(Reply(200, b"y" * 1_000_000))
        status, headers, body = web.post(srv.url + "/in", b"{}", {})
    assert status == 200 and headers["content-length"] == "1000000"
    assert len(body) == web.MAX_ANSWER_BYTES


def test_no_answer_is_retried_and_names_what_happened():
    port = closed_port()
    ch = web.Webhook(section("webhook", f"http://127.0.0.1:{port}/in?secret={HOOK_TOKEN}"), HOOK_TOKEN)
    err = refused(ch.send, alert())
    assert err.retry and "secret" not in str(err)
    assert str(err) == f"webhook http://127.0.0.1:{port}/…: connection refused"
    assert_hidden(err, HOOK_TOKEN, ch)
    with WebhookDouble() as srv:
        srv.script(Reply(hang=True))
        ch = web.Webhook(section("webhook", f"{srv.url}/in"), HOOK_TOKEN)
        ch.timeout_s = 0.5
        err = refused(ch.send, alert())
    assert err.retry and "no answer within 0.5 s" in str(err)


def test_a_url_the_edge_cannot_use_is_not_retried():
    for url in ("ftp://127.0.0.1/in", "http:///in", "http://127.0.0.1:99999/in"):
        err = refused(web.post, url, b"", {})
        assert not err.retry, url


def test_userinfo_in_a_url_goes_as_basic_and_never_shows():
    with WebhookDouble() as srv:
        host = srv.url.removeprefix("http://")
        ch = web.Webhook(section("webhook", f"http://worker:{quote(PASSWORD)}@{host}/in"), None)
        ch.send(alert())
        srv.script(Reply(500, f"no, {PASSWORD}"))
        err = refused(ch.send, alert())
    assert srv.requests[0].headers["authorization"] == web.basic("worker", PASSWORD)
    assert str(err).startswith(f"webhook {srv.url}/…: ") and "worker" not in str(err)
    assert_hidden(err, PASSWORD, ch)


# -- TLS --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed (apt-get install openssl)")
    ca, cert, key = certificates(tmp_path_factory.mktemp("alerts-tls"))
    return ca, server_context(cert, key)


KINDS = {
    "ntfy": (lambda ctx: NtfyDouble(token=NTFY_TOKEN, tls=ctx),
             lambda srv, **kw: web.Ntfy(section("ntfy", f"{srv.url}/{srv.topic}", **kw), NTFY_TOKEN),
             NTFY_TOKEN),
    "telegram": (lambda ctx: TelegramDouble(BOT_TOKEN, tls=ctx),
                 lambda srv, **kw: web.Telegram(section("telegram", srv.url, chat_id=str(CHAT), **kw),
                                                BOT_TOKEN),
                 BOT_TOKEN),
    "webhook": (lambda ctx: WebhookDouble(token=HOOK_TOKEN, tls=ctx),
                lambda srv, **kw: web.Webhook(section("webhook", f"{srv.url}/in", **kw), HOOK_TOKEN),
                HOOK_TOKEN),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_tls_trusts_the_system_store_plus_ca_file_and_nothing_else_unless_told(tls, kind):
    ca, ctx = tls
    double, channel, secret = KINDS[kind]
    with double(ctx) as srv:
        assert channel(srv, ca_file=str(ca)).send(alert())                 # a private CA trusted
        untrusted = channel(srv)
        err = refused(untrusted.send, alert())                             # not without it
        assert channel(srv, verify_tls=False).send(alert())                # checks off when asked
        assert "not checked" in channel(srv, verify_tls=False).state()
    assert err.retry and "certificate not trusted" in str(err) and "ca_file" in str(err)
    assert str(err).startswith(f"{kind} https://127.0.0.1:")
    assert_hidden(err, secret, untrusted)
    assert srv.problems == []
    assert len([r for r in srv.requests if r.method == "POST"]) == 2      # the refused one sent nothing


def test_a_ca_file_that_cannot_be_read_is_named(tls, tmp_path):
    _, ctx = tls
    with WebhookDouble(tls=ctx) as srv:
        err = refused(web.Webhook(section("webhook", f"{srv.url}/in", ca_file=str(tmp_path / "none.pem")),
                                  None).send, alert())
    assert err.retry and "ca_file" in str(err) and "none.pem" in str(err)
    assert srv.requests == []


def test_https_heartbeat_with_ca_file(tls):
    ca, ctx = tls
    with UptimeKumaDouble(KUMA_TOKEN, tls=ctx) as srv:
        web.heartbeat(f"{srv.url}/api/push/{KUMA_TOKEN}?status=up&msg=OK&ping=", ca_file=str(ca))
        err = refused(web.heartbeat, f"{srv.url}/api/push/{KUMA_TOKEN}?status=up&msg=OK")
    assert "certificate not trusted" in str(err) and KUMA_TOKEN not in str(err)


# -- the heartbeat ----------------------------------------------------------------------------

def test_heartbeat_uptime_kuma_push():
    with UptimeKumaDouble(KUMA_TOKEN) as srv:
        web.heartbeat(f"{srv.url}/api/push/{KUMA_TOKEN}?status=up&msg=OK&ping=")
    [req] = srv.requests
    assert (req.method, req.path) == ("GET", f"/api/push/{KUMA_TOKEN}")
    assert req.query["status"] == ["up"] and srv.problems == []


def test_heartbeat_healthchecks_ping():
    with HealthchecksDouble(HC_UUID) as srv:
        web.heartbeat(f"{srv.url}/ping/{HC_UUID}")
        web.heartbeat(f"{srv.url}/ping/{HC_UUID}/start")
    assert [r.path for r in srv.requests] == [f"/ping/{HC_UUID}", f"/ping/{HC_UUID}/start"]


@pytest.mark.parametrize("path, reply, retry, words", [
    ("/api/push/WrongToken1", None, False, "Monitor not found or not active."),
    (f"/api/push/{KUMA_TOKEN}", Reply(200, {"ok": False, "msg": f"Monitor {KUMA_TOKEN} is paused"}),
     False, "refused: Monitor *** is paused"),
    (f"/api/push/{KUMA_TOKEN}", Reply(429, "Too Many Requests", {"Retry-After": "60"}), True,
     "retry after 60 s"),
    (f"/api/push/{KUMA_TOKEN}", Reply(500, {"ok": False, "msg": "db locked"}), True, "db locked"),
], ids=["unknown-token", "200-ok-false", "429", "500"])
def test_heartbeat_uptime_kuma_errors(path, reply, retry, words):
    with UptimeKumaDouble(KUMA_TOKEN) as srv:
        if reply:
            srv.script(reply)
        err = refused(web.heartbeat, f"{srv.url}{path}?status=up&msg=OK")
    token = path.rsplit("/", 1)[1]
    assert err.retry == retry and words in str(err)
    assert f"heartbeat {srv.url}/api/push/***?status=up&msg=OK: " in str(err)
    assert_hidden(err, token)


@pytest.mark.parametrize("suffix", ["", "/fail", "/start", "/1"], ids=["ping", "fail", "start", "exit"])
def test_heartbeat_healthchecks_unknown_check_hides_the_uuid(suffix):
    other = "0b9b6d4a-4ac5-4e5f-9d2a-6a1c0e2b9a11"
    with HealthchecksDouble(HC_UUID) as srv:
        err = refused(web.heartbeat, f"{srv.url}/ping/{other}{suffix}")
    assert not err.retry and "HTTP 404: not found" in str(err)
    assert f"/ping/***{suffix}:" in str(err)
    assert_hidden(err, other)


def test_heartbeat_with_nothing_listening_is_retried():
    port = closed_port()
    err = refused(web.heartbeat, f"http://127.0.0.1:{port}/api/push/{KUMA_TOKEN}")
    assert err.retry and str(err) == f"heartbeat http://127.0.0.1:{port}/api/push/***: connection refused"
    assert_hidden(err, KUMA_TOKEN)


@pytest.mark.parametrize("url, shown", [
    (f"https://kuma.example/api/push/{KUMA_TOKEN}?status=up&msg=OK&ping=",
     "https://kuma.example/api/push/***?status=up&msg=OK&ping="),
    (f"https://hc.example/ping/{HC_UUID}/fail", "https://hc.example/ping/***/fail"),
    ("https://u:pw@hc.example/ping/key/slug?token=t", "https://u:***@hc.example/ping/***/***?token=***"),
    ("https://x.example/", "https://x.example/"),
], ids=["kuma", "hc-fail", "userinfo-slug-query", "no-path"])
def test_show_heartbeat(url, shown):
    assert web.show_heartbeat(url) == shown


def test_a_short_heartbeat_segment_is_masked_in_the_url_but_not_in_the_words():
    with HealthchecksDouble(HC_UUID) as srv:
        srv.script(Reply(400, "this hook wants a uuid"))
        err = refused(web.heartbeat, f"{srv.url}/hook")
    assert str(err) == f"heartbeat {srv.url}/***: HTTP 400: this hook wants a uuid"


@pytest.mark.parametrize("url, tokens", [
    ("https://kuma.example/api/push/AbC123?status=up", ("AbC123",)),
    (f"https://hc-ping.com/{HC_UUID}", (HC_UUID,)),
    (f"https://hc.example/ping/{HC_UUID}/fail", (HC_UUID,)),
    (f"https://hc.example/ping/{HC_UUID}/2", (HC_UUID,)),
    ("https://hc.example/ping/pingkey123/my-slug", ("pingkey123", "my-slug")),
    ("https://x.example/ping", ()),
    ("https://x.example/hook/a%2Fb", ("hook", "a%2Fb", "a/b")),
], ids=["kuma", "hc-bare", "hc-fail", "hc-exit", "hc-slug", "no-token", "encoded"])
def test_url_tokens(url, tokens):
    assert web.url_tokens(url) == tokens


# -- classify, a pure function ----------------------------------------------------------------

DATE = "Tue, 05 Mar 2024 09:15:07 GMT"


@pytest.mark.parametrize("status, headers, body, retry, wait, words", [
    (200, {}, b"", None, None, ""),
    (204, {}, b"", None, None, ""),
    (299, {}, b"", None, None, ""),
    (301, {"Location": "https://a.example/x"}, b"", False, None, "redirected to https://a.example/…"),
    (307, {}, b"", False, None, "redirects are not followed"),
    (400, {}, b'{"error":"bad"}', False, None, "HTTP 400: bad"),
    (401, {}, b'{"description":"Unauthorized"}', False, None, "HTTP 401: Unauthorized"),
    (403, {}, b'{"msg":"nope"}', False, None, "HTTP 403: nope"),
    (404, {}, b"", False, None, "HTTP 404"),
    (408, {}, b"", True, None, "HTTP 408"),
    (413, {}, b'{"message":"too big"}', False, None, "too big"),
    (429, {}, b"", True, None, "HTTP 429"),
    (429, {"Retry-After": "120"}, b"", True, 120.0, "retry after 120 s"),
    (429, {"retry-after": " 7 "}, b"", True, 7.0, "retry after 7 s"),
    (503, {"Retry-After": "Tue, 05 Mar 2024 09:20:07 GMT", "Date": DATE}, b"", True, 300.0, ""),
    (503, {"Retry-After": "Tue, 05 Mar 2024 09:00:00 GMT", "Date": DATE}, b"", True, 0.0, ""),
    (503, {"Retry-After": "Tue, 05 Mar 2024 09:20:07 GMT"}, b"", True, None, ""),
    (503, {"Retry-After": "soon"}, b"", True, None, ""),
    (503, {"Retry-After": "99999999999"}, b"", True, 86400.0, ""),
    (500, {}, b"\xff\xfe broken \x1b[31m", True, None, "broken ?[31m"),
    (502, {}, b"<html>\n<h1>Bad   Gateway</h1>\n</html>", True, None, "<h1>Bad Gateway</h1>"),
], ids=["200", "204", "299", "301", "307", "400-error", "401-description", "403-msg", "404-empty",
        "408", "413-message", "429-bare", "429-seconds", "429-lower-case-header", "503-date",
        "503-date-past", "503-date-without-Date", "503-unreadable", "503-absurd", "500-bytes",
        "502-html"])
def test_classify(status, headers, body, retry, wait, words):
    err = web.classify(status, headers, body)
    if retry is None:
        assert err is None
        return
    assert (err.retry, err.retry_after_s) == (retry, wait)
    assert words in str(err) and "\n" not in str(err)


def test_classify_reads_a_date_against_now_when_the_answer_has_no_date():
    now = datetime(2024, 3, 5, 9, 15, 7, tzinfo=UTC)
    err = web.classify(503, {"Retry-After": "Tue, 05 Mar 2024 09:16:07 GMT"}, b"", now=now)
    assert err.retry_after_s == 60.0


def test_classify_cuts_after_redacting():
    body = ("z" * 195 + "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2").encode()
    err = web.classify(400, {}, body, secret=NTFY_TOKEN)
    assert len(str(err)) <= len("HTTP 400: ") + model.SHOWN_CHARS
    assert "tk_Ag" not in str(err)


# -- small pieces -----------------------------------------------------------------------------

@pytest.mark.parametrize("url, shown", [
    (f"https://api.telegram.org/bot{BOT_TOKEN}/sendMessage", "https://api.telegram.org/…"),
    ("https://u:pw@h.example/x?token=abc&a=1", "https://h.example/…"),
    ("https://discord.com/api/webhooks/1234/Zx9SECRETsecret", "https://discord.com/…"),
    ("https://ntfy.sh/linewatch-k7Q2xw", "https://ntfy.sh/…"),
    ("http://[::1]:8080/", "http://[::1]:8080"),
    ("https://hooks.example", "https://hooks.example"),
], ids=["telegram", "userinfo-query", "discord-path", "ntfy-topic", "ipv6-port", "bare"])
def test_show_url_shows_the_host_only(url, shown):
    """A webhook's path is often its secret, and a public ntfy server's topic works like a
    password: messages name the server only."""
    assert web.show_url(url, BOT_TOKEN) == shown


def test_a_short_url_password_never_shows():
    ch = web.Webhook(section("webhook", "https://u:p@hooks.example/in?token=1"), None)
    assert ch.state() == "ready (webhook to https://hooks.example/…)"


def test_cuts_keep_characters_whole():
    for n in range(1, 40):
        text = "aé⚡🔌" * n
        data = web.cut_bytes(text, 20)
        assert len(data) <= 20 and data.decode("utf-8")
        cut = web.cut_utf16(text, 20)
        assert len(cut.encode("utf-16-le")) // 2 <= 20 and text.startswith(cut.removesuffix("…"))


def test_channels_keep_the_contract_and_build_cheaply():
    for cls, kind in ((web.Ntfy, "ntfy"), (web.Telegram, "telegram"), (web.Webhook, "webhook")):
        ch = cls(section(kind, "https://example.invalid/t", chat_id="1" if kind == "telegram" else ""),
                 "s3cr3t-value-123")
        assert (ch.kind, ch.remote, ch.key) == (kind, True, kind)
        assert ch.state().startswith("ready (")
        assert "s3cr3t-value-123" not in repr(ch)


def test_importing_the_module_loads_neither_ssl_nor_http_client():
    code = ("import sys; before = set(sys.modules); import agent.alerts.web; "
            "print(' '.join(sorted({'ssl', 'http.client', '_ssl'} & (set(sys.modules) - before))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_every_inner_import_says_why_it_is_deferred():
    """Each import inside a function has a ``# deferred:`` comment just above it (its block)."""
    src = (ROOT / "agent" / "alerts" / "web.py").read_text()
    lines = src.split("\n")
    inner = sorted({node.lineno for fn in ast.walk(ast.parse(src))
                    if isinstance(fn, ast.FunctionDef)
                    for node in ast.walk(fn) if isinstance(node, ast.Import | ast.ImportFrom)})
    assert len(inner) >= 3   # json, email.utils, http.client with ssl
    for n in inner:
        assert any(line.strip().startswith("# deferred:") for line in lines[max(0, n - 5):n - 1]), \
            lines[n - 1]


def test_the_payload_is_what_the_record_says():
    a = alert(model.POWER_END, end=END)
    assert json.loads(a.to_json()) == a.payload()
