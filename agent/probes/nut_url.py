"""Where a UPS is: the ``nut://`` URL of ``power.ups``, and where its password is kept.

Pure core: :func:`parse_nut_url`, :func:`check_nut_url` (the config's check),
:func:`url_credentials`. :func:`load_url` reads the password from the environment, a file or a
systemd credential (:mod:`kit.secret`). A :class:`NutURL` prints with ``***`` for its password, and
no message here ever contains it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote

from kit.errors import ConfigError
from kit.secret import load as load_secret, open_mode


class UpsSettings(Protocol):
    """What :func:`load_url` reads of the config's ``[power]`` section (agent.config.PowerSection
    has it; the config imports this module's checks, so this module does not import the config)."""

    @property
    def ups(self) -> str: ...
    @property
    def ups_password_file(self) -> str: ...


DEFAULT_PORT = 3493
PASSWORD_ENV = "LINEWATCH_UPS_PASSWORD"
CREDENTIAL = "ups-password"
PASSWORD_PLACES = (f"the file power.ups_password_file names, ${PASSWORD_ENV} or the systemd "
                   f"credential {CREDENTIAL}")

_USAGE = "expected nut://[user[:password]@]host[:port]/upsname"
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?\Z")
# UPS names are ups.conf section names used bare in commands; this set covers what NUT's docs
# and real configs use and keeps the name safe to send unquoted.
_UPS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
# A control character (a newline above all) would end a protocol line early.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
    if CONTROL.search(user) or CONTROL.search(password or ""):
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


# -- the configured UPS and where its password is kept -------------------------------------------

def load_url(section: UpsSettings, env: Mapping[str, str] = os.environ,
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
