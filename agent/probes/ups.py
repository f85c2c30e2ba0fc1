"""UPS probe: a small Network UPS Tools (NUT) client of our own, one TCP conversation per sample.

A co-working site's UPS is usually watched by NUT's ``upsd`` (TCP port 3493). The agent asks it for
every variable of one UPS and turns the few that matter for a power-cut timeline into a sample.
The protocol is line-based text (NUT "network protocol" 1.3)::

    -> USERNAME "alice"            (only when the URL has credentials)
    <- OK
    -> PASSWORD "..."
    <- OK
    -> LIST VAR myups
    <- BEGIN LIST VAR myups
    <- VAR myups ups.status "OL CHRG"
    <- ...
    <- END LIST VAR myups
    -> LOGOUT
    <- OK Goodbye

Any reply may instead be ``ERR <CODE> [extra]``; :data:`ERR_KINDS` sorts the codes.

Pure core: :func:`parse_nut_url`, :func:`split_words`, :func:`quote_arg`, :func:`parse_var_line`,
:func:`parse_list_var`, :func:`error_for_reply`, :func:`status_flags`, :func:`ups_fields`.
I/O edge: :func:`read_vars` and :func:`measure` (sockets); :func:`load_url` (the configured URL
with its password from the environment, a file or a systemd credential).

Credentials: ``upsd`` (checked with 2.8.0) lets anyone read variables and checks a password only
for privileged commands (LOGIN, SET, INSTCMD). A read-only client therefore cannot tell a wrong
password from a right one: :func:`read_vars` sends them (``access_denied`` when a server does
refuse them) but a wrong password goes unnoticed by upsd 2.8.0. They travel in clear text (no
STARTTLS here), so configure them only when the server requires them, and then the password
outside the config file (:func:`load_url`).

Sample ``ups``, tag ``ups`` (the UPS name on the server). Fields:

===============  =====  ===================================================================
field            type   meaning
===============  =====  ===================================================================
status           str    ``ups.status`` as reported, e.g. ``"OL CHRG"``, ``"OB LB"``
                        (``"WAIT"``, upsd still waiting for its driver, raises "stale")
on_battery       bool   the ``OB`` flag is in ``status``
low_battery      bool   the ``LB`` flag is in ``status``
charge_pct       float  ``battery.charge`` (%), only when reported and numeric
runtime_s        float  ``battery.runtime`` (s, estimated runtime left), ditto
input_voltage_v  float  ``input.voltage`` (V), ditto; 0 on battery for many UPSes
load_pct         float  ``ups.load`` (% of rated output), ditto
===============  =====  ===================================================================

Errors: :class:`NutError` with ``kind`` one of :data:`KINDS`.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence
from urllib.parse import quote, unquote

from agent.clock import Clock
from kit.errors import ConfigError, ProbeError
from agent.model import Sample
from kit.secret import load as load_secret, open_mode, redact

if TYPE_CHECKING:  # the config imports this module's checks; a type needs no import at run time
    from agent.config import PowerSection

DEFAULT_PORT = 3493
PASSWORD_ENV = "LINEWATCH_UPS_PASSWORD"
CREDENTIAL = "ups-password"
PASSWORD_PLACES = (f"the file power.ups_password_file names, ${PASSWORD_ENV} or the systemd "
                   f"credential {CREDENTIAL}")

KINDS = ("unreachable", "unknown_ups", "access_denied", "stale", "protocol")

# NUT's ERR codes (docs/net-protocol.txt) that mean something to the user; every other code is a
# client/server disagreement and counts as "protocol".
ERR_KINDS: Mapping[str, str] = {
    "UNKNOWN-UPS": "unknown_ups",
    "ACCESS-DENIED": "access_denied",
    "INVALID-USERNAME": "access_denied",
    "INVALID-PASSWORD": "access_denied",
    "USERNAME-REQUIRED": "access_denied",
    "PASSWORD-REQUIRED": "access_denied",
    "DATA-STALE": "stale",
    "DRIVER-NOT-CONNECTED": "stale",
}

_ERR_TEXT: Mapping[str, str] = {
    "UNKNOWN-UPS": "the server has no UPS of this name (list them with `upsc -l HOST`)",
    "ACCESS-DENIED": "access denied: check the user and password",
    "INVALID-USERNAME": "the server rejected the user name",
    "INVALID-PASSWORD": "the server rejected the password",
    "USERNAME-REQUIRED": "the server wants a user name and password",
    "PASSWORD-REQUIRED": "the server wants a password",
    "DATA-STALE": "the UPS driver has no fresh data (UPS unplugged or not answering)",
    "DRIVER-NOT-CONNECTED": "the UPS driver is not running or not connected to upsd",
}

# upsd caps a value at 256 bytes and names at a few dozen; escaping at most doubles them. Longer
# lines, or lists beyond these bounds, come from something that is not upsd and are refused before
# they can fill memory.
_MAX_LINE = 4096
_MAX_LIST_LINES = 10_000
_MAX_LIST_BYTES = 1 << 20
_EXCERPT = 60

_USAGE = "expected nut://[user[:password]@]host[:port]/upsname"
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?\Z")
# UPS names are ups.conf section names used bare in commands; this set covers what NUT's docs
# and real configs use and keeps the name safe to send unquoted.
_UPS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")


class NutError(ProbeError):
    """The UPS server could not give us the UPS's variables.

    ``kind`` (one of :data:`KINDS`): ``unreachable`` (no TCP conversation: refused, timed out,
    reset, closed, name not resolved), ``unknown_ups`` (ERR UNKNOWN-UPS: wrong UPS name),
    ``access_denied`` (ERR ACCESS-DENIED and the user/password refusals), ``stale`` (ERR DATA-STALE
    or DRIVER-NOT-CONNECTED: upsd runs but its driver lost the UPS), ``protocol`` (a reply NUT
    would not send). ``detail`` is the human explanation, ``code`` the NUT ERR code when there was
    one, ``url`` the :class:`NutURL` (printed redacted). ``str(err)`` never contains a password.
    """

    def __init__(self, kind: str, detail: str, *, url: "NutURL | None" = None,
                 code: str | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"NutError kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.detail = detail
        self.url = url
        self.code = code
        super().__init__(f"ups {url}: {detail}" if url is not None else f"ups: {detail}")

    def at(self, url: "NutURL") -> "NutError":
        """The same error naming ``url`` (pure helpers raise without knowing the URL)."""
        return NutError(self.kind, _scrub(self.detail, url.password), url=url, code=self.code)


# -- URL ---------------------------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class NutURL:
    """Where a UPS is: ``nut://[user:password@]host[:port]/upsname``.

    ``host`` is a name, an IPv4 address or an IPv6 address without brackets (``"::1"``);
    ``port`` 1..65535; ``user`` and ``password`` are both None or both non-empty, already
    percent-decoded. ``str()`` and ``repr()`` show ``***`` instead of the password, so a NutURL
    can be printed and logged. Raises ValueError (never naming the password) when invalid.
    """

    host: str
    port: int
    ups: str
    user: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        _check_parts(self.host, self.port, self.ups, self.user, self.password)

    def __str__(self) -> str:
        host = f"[{self.host.replace('%', '%25')}]" if ":" in self.host else self.host
        auth = f"{quote(self.user, safe='')}:***@" if self.user is not None else ""
        return f"nut://{auth}{host}:{self.port}/{self.ups}"

    def __repr__(self) -> str:
        return f"NutURL({str(self)!r})"


def _check_host(host: object) -> None:
    if not isinstance(host, str) or not host:
        raise ValueError(f"nut URL: no host, {_USAGE}")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"nut URL: {host!r} is not a valid IPv6 address") from None
        return
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if len(name) > 253 or not all(len(x) <= 63 and _HOST_LABEL.match(x) for x in labels):
        raise ValueError(f"nut URL: {host!r} is not a valid host name or address")
    if all(x.isdigit() for x in labels):
        # All-numeric: it can only be meant as an IPv4 address, and resolving a typo such as
        # 192.168.1.300 as a name would only time out later.
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise ValueError(f"nut URL: {host!r} is not a valid IPv4 address") from None


def _check_parts(host: object, port: object, ups: object, user: object, password: object,
                 password_elsewhere: bool = False) -> None:
    """NutURL's checks; with ``password_elsewhere``, a user without a password passes (the
    config's view: the password is kept in a file, the environment or a credential)."""
    _check_host(host)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError("nut URL: port must be a whole number 1..65535")
    if not isinstance(ups, str) or not ups:
        raise ValueError(f"nut URL: no UPS name, {_USAGE}")
    if not _UPS_NAME.match(ups):
        raise ValueError("nut URL: the UPS name may contain only letters, digits, "
                         "'.', '_', '-' and '+'")
    _check_credentials(user, password, password_elsewhere)


def _check_credentials(user: object, password: object, password_elsewhere: bool = False) -> None:
    # Messages here never echo either value: a user name typed without its ':' may well be the
    # password.
    if user is None and password is None:
        return
    if user is None or (password is None and not password_elsewhere):
        raise ValueError("nut URL: give both a user and a password (user:password@host, or "
                         f"user@host and the password in {PASSWORD_PLACES}) or neither")
    if not isinstance(user, str) or not isinstance(password, (str, type(None))):
        raise ValueError("nut URL: user and password must be strings")
    if not user:
        raise ValueError("nut URL: the user name is empty")
    if password == "":
        raise ValueError("nut URL: the password is empty")
    # A newline would end the protocol line and let the rest run as another command.
    if _CONTROL.search(user) or _CONTROL.search(password or ""):
        raise ValueError("nut URL: the user or password contains a control character")


def parse_nut_url(text: str) -> NutURL:
    """Parse ``nut://[user:password@]host[:port]/upsname`` (scheme case-insensitive).

    The port defaults to 3493. The host is a name, an IPv4 address or a bracketed IPv6 address
    (``nut://[::1]/ups``; a zone is written ``%25``: ``[fe80::1%25eth0]``). User and password are
    percent-decoded; the password may contain ``@``, ``:`` and ``/`` unencoded (the last ``@``
    ends it). Leading and trailing whitespace is ignored. Query strings, fragments and a trailing
    ``/`` are refused, and so is a user without a password (the config allows one, with the
    password kept elsewhere: :func:`check_nut_url`, :func:`load_url`).

    Raises ValueError with a human message for anything else. The message never contains the
    password, nor any text that could be it in a mistyped URL (it names the host at most).
    """
    return NutURL(*_split_nut_url(text))


def check_nut_url(text: str) -> None:
    """The config's check of ``power.ups``: :func:`parse_nut_url`'s, except that a user may be
    named without a password (``nut://user@host/ups``). Raises its ValueError."""
    _check_parts(*_split_nut_url(text), password_elsewhere=True)


def url_credentials(text: str) -> tuple[bool, bool]:
    """(names a user, holds a password) for a valid ``power.ups`` value."""
    _, _, _, user, password = _split_nut_url(text)
    return user is not None, password is not None


def _split_nut_url(text: str) -> tuple[str, int, str, str | None, str | None]:
    """(host, port, ups, user, password) of a URL; only the text's own grammar is checked."""
    if not isinstance(text, str):
        raise ValueError(f"nut URL must be a string, got {type(text).__name__}")
    text = text.strip()
    m = _SCHEME.match(text)
    if not m:
        raise ValueError(f"nut URL: {_USAGE}")
    if m.group(1).lower() != "nut":
        raise ValueError(f"nut URL: the scheme must be nut://, got {m.group(1)}://")
    rest = text[m.end():]
    userinfo: str | None = None
    if "@" in rest:
        userinfo, rest = rest.rsplit("@", 1)
    if re.search(r"[\s?#]", rest):
        raise ValueError("nut URL: spaces, query strings (?) and fragments (#) are not allowed "
                         "after the host")
    authority, slash, ups = rest.partition("/")
    if not slash or not ups:
        raise ValueError(f"nut URL: no UPS name, {_USAGE}")
    host, port = _split_authority(authority)
    user = password = None
    if userinfo is not None:
        raw_user, colon, raw_password = userinfo.partition(":")
        try:
            user = unquote(raw_user, errors="strict")
            password = unquote(raw_password, errors="strict") if colon else None
        except UnicodeDecodeError:
            raise ValueError("nut URL: the user or password is not valid percent-encoded "
                             "UTF-8") from None
    return host, port, ups, user, password


def _split_authority(authority: str) -> tuple[str, int]:
    """(host, port) of ``host[:port]`` / ``[v6][:port]``; the port text is never echoed."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ValueError("nut URL: '[' without ']' around the IPv6 address")
        host = unquote(authority[1:end])
        if ":" not in host:
            raise ValueError("nut URL: brackets are only for IPv6 addresses")
        after = authority[end + 1:]
        if after and not after.startswith(":"):
            raise ValueError("nut URL: unexpected text after ']' (expected :port)")
        port_text = after[1:] if after else None
    else:
        if authority.count(":") > 1:
            raise ValueError("nut URL: write an IPv6 address in brackets: nut://[::1]:3493/ups")
        host, colon, port_text = authority.partition(":")
        if not colon:
            port_text = None
    if port_text is None:
        return host, DEFAULT_PORT
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError("nut URL: the port must be a whole number 1..65535")
    return host, int(port_text)


# -- protocol: pure helpers --------------------------------------------------------------------

def _scrub(text: str, password: str | None) -> str:
    """``text`` without the password, in any form (raw, as quoted on the wire, ...)."""
    return redact(text, password)


def _excerpt(line: str, secret: str | None = None) -> str:
    """A short, printable, password-free quote of a server line for an error message.

    The password is removed before truncating, so a cut can never leave part of it behind.
    """
    line = _scrub(line, secret)
    if len(line) > _EXCERPT:
        line = line[:_EXCERPT] + "..."
    return repr(line)


def quote_arg(text: str) -> str:
    """``text`` as one protocol argument: in double quotes, ``\\`` and ``"`` escaped.

    upsd's parser takes any word in quotes, so quoting always is simpler than deciding when.
    Raises ValueError for a control character (a newline would end the command line).
    """
    if _CONTROL.search(text):
        raise ValueError("protocol argument contains a control character")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_words(line: str, secret: str | None = None) -> list[str]:
    """Split a protocol line into words the way NUT does.

    Words are separated by spaces or tabs; ``"..."`` groups a word that may contain spaces (an
    empty ``""`` is an empty word); a backslash takes the next character literally, inside quotes
    or not. Raises NutError("protocol") for an unterminated quote or a trailing backslash;
    ``secret`` is kept out of the message.
    """
    words: list[str] = []
    word: list[str] = []
    in_word = in_quotes = False
    chars = iter(line)
    for c in chars:
        if c == "\\":
            nxt = next(chars, None)
            if nxt is None:
                raise NutError("protocol", f"line ends in a backslash: {_excerpt(line, secret)}")
            word.append(nxt)
            in_word = True
        elif in_quotes:
            if c == '"':
                in_quotes = False
            else:
                word.append(c)
        elif c == '"':
            in_quotes = in_word = True
        elif c in " \t":
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        else:
            word.append(c)
            in_word = True
    if in_quotes:
        raise NutError("protocol", f"unterminated quote: {_excerpt(line, secret)}")
    if in_word:
        words.append("".join(word))
    return words


def error_for_reply(line: str, secret: str | None = None) -> NutError | None:
    """The NutError an ``ERR <CODE> [extra]`` line stands for, or None for any other line.

    ``kind`` comes from :data:`ERR_KINDS` (unknown codes: "protocol"); ``code`` is the NUT code.
    """
    words = line.split()
    if not words or words[0] != "ERR":
        return None
    if len(words) < 2:
        return NutError("protocol", "ERR reply without a code")
    code = words[1]
    if not re.fullmatch(r"[A-Z0-9-]{1,40}", code):
        return NutError("protocol", f"malformed ERR reply: {_excerpt(line, secret)}")
    text = _ERR_TEXT.get(code, "the server answered with an unexpected error")
    return NutError(ERR_KINDS.get(code, "protocol"), f"{text} (ERR {code})", code=code)


def _same_ups(a: str, b: str) -> bool:
    # upsd finds UPSes case-insensitively and echoes the name as asked.
    return a.casefold() == b.casefold()


def parse_var_line(line: str, ups: str | None = None, *,
                   secret: str | None = None) -> tuple[str, str]:
    """``(name, value)`` of ``VAR <ups> <name> "<value>"``, escapes decoded.

    With ``ups``, the line must be about that UPS (case-insensitively). An ERR line raises its
    mapped NutError; anything else malformed raises NutError("protocol").
    """
    err = error_for_reply(line, secret)
    if err is not None:
        raise err
    words = split_words(line, secret)
    if len(words) != 4 or words[0] != "VAR":
        raise NutError("protocol", f"expected VAR <ups> <name> \"<value>\", got "
                                   f"{_excerpt(line, secret)}")
    _, var_ups, name, value = words
    if ups is not None and not _same_ups(var_ups, ups):
        raise NutError("protocol", f"variable for another UPS: {_excerpt(line, secret)}")
    if not name:
        raise NutError("protocol", f"empty variable name: {_excerpt(line, secret)}")
    return name, value


def _list_header(line: str, what: str, ups: str, secret: str | None) -> None:
    words = split_words(line, secret)
    if len(words) != 4 or words[:3] != [what, "LIST", "VAR"] or not _same_ups(words[3], ups):
        raise NutError("protocol", f"expected '{what} LIST VAR {ups}', got "
                                   f"{_excerpt(line, secret)}")


def parse_list_var(lines: Sequence[str], ups: str, *,
                   secret: str | None = None) -> dict[str, str]:
    """Variables of a whole ``LIST VAR`` reply, ``BEGIN`` and ``END`` lines included.

    ``lines`` are the reply's lines without line endings. An ``ERR`` first line raises its mapped
    NutError (UNKNOWN-UPS, DATA-STALE ...); a missing or wrong BEGIN/END, a line that is not a
    VAR line for ``ups``, or a variable listed twice raises NutError("protocol").
    """
    if not lines:
        raise NutError("protocol", "empty reply to LIST VAR")
    err = error_for_reply(lines[0], secret)
    if err is not None:
        raise err
    _list_header(lines[0], "BEGIN", ups, secret)
    if len(lines) < 2:
        raise NutError("protocol", "LIST VAR reply has no END line")
    _list_header(lines[-1], "END", ups, secret)
    variables: dict[str, str] = {}
    for line in lines[1:-1]:
        name, value = parse_var_line(line, ups, secret=secret)
        if name in variables:
            raise NutError("protocol", f"variable {name!r} listed twice")
        variables[name] = value
    return variables


def status_flags(status: str) -> frozenset[str]:
    """The flags of a ``ups.status`` value: ``"OB LB"`` -> {"OB", "LB"} (split on whitespace)."""
    return frozenset(status.split())


def _number(text: str) -> float | None:
    """A finite decimal number, else None: "nan", "inf", "1_0", "" and "230,0" are not data."""
    text = text.strip()
    if not _NUMBER.match(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


_NUMERIC_FIELDS = (
    ("battery.charge", "charge_pct"),
    ("battery.runtime", "runtime_s"),
    ("input.voltage", "input_voltage_v"),
    ("ups.load", "load_pct"),
)


def ups_fields(variables: Mapping[str, str]) -> dict[str, float | bool | str]:
    """The ``ups`` sample's fields from a UPS's variables (see the module's field table).

    Numeric fields are present only when the variable is reported and is a finite decimal number;
    nothing is clamped. Raises NutError("protocol") when ``ups.status`` is missing and
    NutError("stale") when it is ``WAIT`` (upsd has connected to the driver but has no data from
    it yet, e.g. just after either restarted): in both cases on_battery is not known, and
    reporting False could end a power cut that is still going on.
    """
    status = variables.get("ups.status")
    if status is None:
        raise NutError("protocol", "the server reported no ups.status")
    flags = status_flags(status)
    if flags == {"WAIT"}:
        raise NutError("stale", "upsd has no data from the UPS driver yet (ups.status WAIT)")
    fields: dict[str, float | bool | str] = {
        "status": status,
        "on_battery": "OB" in flags,
        "low_battery": "LB" in flags,
    }
    for var, field_name in _NUMERIC_FIELDS:
        value = _number(variables.get(var, ""))
        if value is not None:
            fields[field_name] = value
    return fields


# -- the configured UPS and where its password is kept -------------------------------------------

def load_url(section: "PowerSection", env: Mapping[str, str] = os.environ,
             source: str = "config") -> tuple[NutURL | None, list[str]]:
    """The UPS ``power.ups`` names (None when empty) with its password, and the warnings to give
    once, none of which shows the password.

    A password written in ``power.ups`` is used as it is, with a warning when ``source`` (the
    config file holding it) is readable by other users. For ``nut://user@host/ups`` the password
    is ``$LINEWATCH_UPS_PASSWORD``, else the file ``power.ups_password_file`` names, else the
    systemd credential ``ups-password`` (:func:`kit.secret.load`: one line, the line ending
    dropped; a file others can read is a warning). Raises ConfigError naming ``power.ups`` when
    none of them holds it, and the key the password came from when it cannot be read or sent.
    """
    if not section.ups:
        return None, []
    try:
        host, port, ups, user, in_url = _split_nut_url(section.ups)
        if user is None or in_url is not None:  # complete as written
            url = NutURL(host, port, ups, user, in_url)
    except ValueError as exc:
        raise ConfigError(source, "power.ups", str(exc)) from None
    if user is None or in_url is not None:
        mode = open_mode(source) if in_url is not None else None
        if mode is None:
            return url, []
        return url, [f"{source} holds the UPS password (in power.ups) and is readable by other "
                     f"users (mode {mode:o}): move the password to {PASSWORD_PLACES}, or "
                     f"chmod 600 {source}"]
    password = load_secret(env_name=PASSWORD_ENV, file=section.ups_password_file,
                           file_key="power.ups_password_file", credential=CREDENTIAL, env=env,
                           source=source, what="password", strip=False)
    if password.value is None:
        # The user is not named: one typed without its ':' may well be the password.
        raise ConfigError(source, "power.ups", f"names a user but no password: keep the password "
                          f"in {PASSWORD_PLACES}")
    try:
        url = NutURL(host, port, ups, user, password.value)
    except ValueError as exc:
        key = "power.ups_password_file" if section.ups_password_file else "power.ups"
        raise ConfigError(source, key, f"the password from {password.source}: "
                          f"{str(exc).removeprefix('nut URL: ')}") from None
    return url, [password.warning] if password.warning else []


# -- I/O edge ----------------------------------------------------------------------------------

def _resolve(url: NutURL, deadline: float) -> list[tuple[int, tuple]]:
    """(family, sockaddr) candidates for the URL's host, within the deadline.

    Address literals need no lookup. A name is resolved in a helper thread because getaddrinfo
    cannot be given a timeout and a broken resolver can block for tens of seconds; if it does,
    the thread is left to finish on its own and the call fails as unreachable.
    """
    try:
        ip = ipaddress.ip_address(url.host)
    except ValueError:
        ip = None
    if ip is not None:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return [(family, (url.host, url.port))]
    box: dict[str, object] = {}

    def lookup() -> None:
        try:
            box["ok"] = socket.getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            box["err"] = exc

    worker = threading.Thread(target=lookup, name="nut-resolve", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if "ok" in box:
        return [(family, sockaddr) for family, _t, _p, _c, sockaddr in box["ok"]]
    if "err" in box:
        raise NutError("unreachable", f"cannot resolve host {url.host!r}", url=url) \
            from box["err"]
    raise NutError("unreachable", f"resolving host {url.host!r} took too long", url=url)


def _connect(url: NutURL, deadline: float, timeout_s: float) -> socket.socket:
    last: OSError | None = None
    for family, sockaddr in _resolve(url, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(remaining)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    if isinstance(last, ConnectionRefusedError):
        detail = "connection refused (is upsd running and listening there?)"
    elif last is None or isinstance(last, TimeoutError):
        detail = f"no connection within {timeout_s:g} s"
    else:
        detail = f"cannot connect: {last.strerror or type(last).__name__}"
    raise NutError("unreachable", detail, url=url) from last


class _Lines:
    """Reads ``\\n``-terminated lines from a socket, bounded by a deadline and a line length."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = bytearray()

    def _remaining(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    def send(self, line: str) -> None:
        self.sock.settimeout(self._remaining())
        self.sock.sendall(line.encode("utf-8") + b"\n")

    def read(self) -> str:
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                raw = bytes(self.buf[:end])
                del self.buf[:end + 1]
                break
            if len(self.buf) > _MAX_LINE:
                raise NutError("protocol", f"reply line longer than {_MAX_LINE} bytes")
            self.sock.settimeout(self._remaining())
            chunk = self.sock.recv(8192)
            if not chunk:
                raise ConnectionResetError("closed by the server")
            self.buf += chunk
        if len(raw) > _MAX_LINE:
            raise NutError("protocol", f"reply line longer than {_MAX_LINE} bytes")
        # Values are device strings, usually ASCII; a stray byte must not fail the sample.
        return raw.decode("utf-8", "replace").rstrip("\r")


def _expect_ok(lines: _Lines, secret: str | None, after: str) -> None:
    line = lines.read()
    err = error_for_reply(line, secret)
    if err is not None:
        raise err
    if line != "OK" and not line.startswith("OK "):
        raise NutError("protocol", f"expected OK after {after}, got {_excerpt(line, secret)}")


def _list_var(lines: _Lines, ups: str, secret: str | None) -> dict[str, str]:
    lines.send(f"LIST VAR {ups}")
    reply = [lines.read()]
    if error_for_reply(reply[0], secret) is None:
        _list_header(reply[0], "BEGIN", ups, secret)  # fail fast on a non-NUT server
        size = 0
        while True:
            line = lines.read()
            reply.append(line)
            size += len(line)
            if line.startswith("END "):
                break
            parse_var_line(line, ups, secret=secret)  # fail now, not at the deadline
            if len(reply) > _MAX_LIST_LINES or size > _MAX_LIST_BYTES:
                raise NutError("protocol", "LIST VAR reply is too long")
    return parse_list_var(reply, ups, secret=secret)


def read_vars(url: NutURL, *, timeout_s: float = 2.0) -> dict[str, str]:
    """All variables of ``url.ups`` as reported by its upsd: ``{"ups.status": "OL", ...}``.

    One TCP connection per call: USERNAME/PASSWORD when the URL has them (each must be answered
    OK), ``LIST VAR``, then ``LOGOUT``. The whole call, name resolution included, takes at most
    about ``timeout_s`` seconds. LOGOUT is a courtesy: once the variables are in, a failure to log
    out does not fail the call. Values are returned as sent (escapes decoded, no trimming).

    Raises NutError (see its kinds; ``unreachable`` also for a timeout or a connection closed
    mid-reply) and ValueError for a non-positive ``timeout_s``. upsd 2.8.0 does not check a
    password on reads, so a wrong one is not reported (see the module docstring).
    """
    if not timeout_s > 0:
        raise ValueError(f"ups: timeout_s must be > 0, got {timeout_s}")
    deadline = time.monotonic() + timeout_s
    secret = url.password
    sock = _connect(url, deadline, timeout_s)
    try:
        lines = _Lines(sock, deadline)
        try:
            if url.user is not None:
                lines.send(f"USERNAME {quote_arg(url.user)}")
                _expect_ok(lines, secret, "USERNAME")
                lines.send(f"PASSWORD {quote_arg(url.password)}")
                _expect_ok(lines, secret, "PASSWORD")
            variables = _list_var(lines, url.ups, secret)
        except NutError as exc:
            raise exc.at(url) from None
        except TimeoutError:
            raise NutError("unreachable", f"no complete answer within {timeout_s:g} s",
                           url=url) from None
        except OSError as exc:
            raise NutError("unreachable", "the server closed the connection mid-reply "
                           f"({exc.strerror or exc})", url=url) from None
        try:
            lines.send("LOGOUT")
            lines.read()
        except (OSError, NutError):
            pass
        return variables
    finally:
        sock.close()


def measure(url: NutURL, *, timeout_s: float = 2.0, clock: Clock) -> Sample:
    """One ``ups`` sample for ``url`` (fields in the module docstring), timed at ``clock.now()``
    when the call starts.

    Raises NutError when the server cannot be asked or gives no usable answer (the caller records
    and counts it and keeps measuring), ValueError for a non-positive ``timeout_s``.
    """
    start = clock.now()
    variables = read_vars(url, timeout_s=timeout_s)
    try:
        fields = ups_fields(variables)
    except NutError as exc:
        raise exc.at(url) from None
    return Sample("ups", {"ups": url.ups}, fields, start)


def mains_lost(fields: dict) -> bool:
    """Whether a UPS reading means the mains is gone: the OB flag, or LB without OL (a driver that
    reports only LB while discharging). "OL LB" is a UPS back on mains, recharging a low battery:
    the cut is over."""
    if fields.get("on_battery"):
        return True
    return bool(fields.get("low_battery")) and "OL" not in status_flags(str(fields.get("status", "")))
