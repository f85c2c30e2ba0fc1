"""A local stand-in for speedtest.net: its configuration and server list served on loopback, and
the real speedtest module with speedtest.net's host names sent there.

speedtest.net cannot be reached from the tests (and must not be). speedtest-cli's own opener gets
one extra urllib handler that sends requests for www.speedtest.net and c.speedtest.net to
:class:`FakeSpeedtestNet`; everything else is speedtest-cli's real code: parsing, server choice,
latency, download, upload (against tests/speedserver.py).
"""

from __future__ import annotations

import threading
import types
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import speedtest

CLIENT_IP = "203.0.113.77"  # what speedtest.net would tell the worker: must never be stored

CONFIG_XML = f"""<?xml version="1.0" encoding="UTF-8"?>
<settings>
<client ip="{CLIENT_IP}" lat="31.5497" lon="74.3436" isp="Nayatel" isprating="3.7" rating="0"
 ispdlavg="0" ispulavg="0" loggedin="0" country="PK" />
<server-config threadcount="4" ignoreids="1,2" notonmap="" forcepingid="" preferredserverid=""/>
<download testlength="10" initialtest="250K" mintestsize="250K" threadsperurl="4"/>
<upload testlength="10" ratio="5" initialtest="0" mintestsize="32K" threads="2" maxchunksize="512K"
 maxchunkcount="50" threadsperurl="4"/>
</settings>"""


def servers_xml(speed_url: str) -> str:
    host = urlsplit(speed_url).netloc
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<settings><servers>
<server url="{speed_url}" lat="31.52" lon="74.35" name="Lahore" country="Pakistan" cc="PK"
 sponsor="Lab ISP" id="4242" host="{host}"/>
<server url="http://127.0.0.1:9/speedtest/upload.php" lat="24.86" lon="67.01" name="Karachi"
 country="Pakistan" cc="PK" sponsor="Far ISP" id="5151" host="127.0.0.1:9"/>
</servers></settings>"""


class FakeSpeedtestNet:
    """A local stand-in for speedtest.net's configuration and server-list endpoints."""

    def __init__(self, speed_url: str):
        self.config = CONFIG_XML
        self.servers = servers_xml(speed_url)
        self.status = 200
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.paths.append(self.path)
                body = (owner.config if "speedtest-config" in self.path else owner.servers).encode()
                self.send_response(owner.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def module_via(base: str):
    """The real speedtest module, with speedtest.net's host names sent to ``base``."""
    class ToLocal(urllib.request.BaseHandler):
        handler_order = 100

        def _map(self, req):
            u = urlsplit(req.full_url)
            if u.hostname in ("www.speedtest.net", "c.speedtest.net"):
                req.full_url = f"{base}{u.path}?{u.query}"
            return req
        http_request = https_request = _map

    class Redirected(speedtest.Speedtest):
        def get_config(self):
            self._opener.add_handler(ToLocal())
            return super().get_config()
    return types.SimpleNamespace(Speedtest=Redirected)
