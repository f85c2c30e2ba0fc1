"""Secrets: where they are read from, and keeping them out of everything linewatch shows.

Two secrets exist. The InfluxDB token (or ``user:password`` for InfluxDB 1.x) comes from
``$LINEWATCH_INFLUX_TOKEN``, ``influx.token_file`` or the systemd credential ``influx-token``
(:func:`kit.influx.load_token`). The NUT password comes from ``$LINEWATCH_UPS_PASSWORD``,
``power.ups_password_file`` or the systemd credential ``ups-password``, or from ``power.ups``
itself (:func:`agent.probes.nut_url.load_url`). Both are read by :func:`load`.

What is shown passes through one of two functions here, and nowhere else:

* :func:`redact_value` for a config value echoed back (an error's ``got ...``, ``status``,
  ``check``, the log): a URL's userinfo password and any password- or token-like query parameter
  become ``***``. It needs no secret, so it works on values that do not parse.
* :func:`redact` for text that may quote a known secret (a server's answer, a library's error):
  every form the secret travels in (as sent, in HTTP Basic, percent-encoded, backslash-escaped)
  becomes ``***``. It runs on the whole text *before* any cut: a cut made first could leave part
  of the secret behind, where no replacement would find it. A part at either end of the text
  (an answer that a server or a proxy cut already) is removed as well.

Pure, apart from :func:`load` and :func:`read_file`, which read the environment and files.
"""

from __future__ import annotations

import base64
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

from kit.errors import ConfigError

MASK = "***"
# A piece of a secret this long or longer, left at the start or end of a text cut by someone
# else, is removed too; shorter ones give too little away to be worth guessing at.
MIN_PIECE = 8

_SCHEME = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*://")
# Query or fragment parameters whose value is a credential: InfluxDB 1.x's `p`, and any name
# that says password, token, secret, key, auth or signature.
_SECRET_PARAM = re.compile(
    r"([?&#;](?:p|[\w.-]*(?:pass|pwd|token|secret|key|auth|sig|credential)[\w.-]*)=)[^&#;]*",
    re.IGNORECASE)


def redact_value(text: str) -> str:
    """A config value as it may be shown: ``nut://admin:***@host/ups``.

    The userinfo runs to the last ``@`` (a NUT password may hold ``@``, ``:`` and ``/``
    unencoded); its part after the first ``:`` is masked, and all of it when it has no ``:``
    (a user typed without its ``:`` may well be the password). A value without ``://`` is treated
    the same way from its start. Query and fragment parameters named like a credential keep
    their names and lose their values. A value with neither is returned as it is."""
    m = _SCHEME.match(text)
    start = m.end() if m else 0
    at = text.rfind("@", start)
    if at >= 0:
        userinfo = text[start:at]
        user, colon, _ = userinfo.partition(":")
        shown = f"{user}:{MASK}" if colon else MASK
        text = text[:start] + shown + text[at:]
    return _SECRET_PARAM.sub(lambda p: p.group(1) + MASK, text)


def forms(secret: str) -> list[str]:
    """Every form ``secret`` may appear in, longest first: as it is, in HTTP Basic (base64),
    percent-encoded (``%20`` and ``+`` for spaces), and with ``\\`` and ``"`` escaped (JSON and
    NUT's quoted words). For ``user:password`` (InfluxDB 1.x) the password alone in each form
    as well, when it has :data:`MIN_PIECE` characters or more: a shorter one could be any word
    of a message, and masking it would garble what the forwarder reads there (``dropped=1``)."""
    out = set()
    parts = [secret]
    user, colon, password = secret.partition(":")
    if colon and user and len(password) >= MIN_PIECE:
        parts.append(password)
    for s in parts:
        out |= {s, quote(s, safe=""), quote(s), quote_plus(s),
                s.replace("\\", "\\\\").replace('"', '\\"')}
    out.add(base64.b64encode(secret.encode()).decode())
    return sorted((f for f in out if f), key=len, reverse=True)


def redact(text: str, secret: str | None) -> str:
    """``text`` with every form of ``secret`` (:func:`forms`) replaced by ``***``, and a piece of
    one (:data:`MIN_PIECE` characters or more) at the start or the end removed. Call it on the
    whole text, before cutting it to any length."""
    if not secret or not text:
        return text
    every = forms(secret)
    for form in every:
        text = text.replace(form, MASK)
    for form in every:
        for k in range(len(form) - 1, MIN_PIECE - 1, -1):
            if text.endswith(form[:k]):
                text = text[:-k] + MASK
                break
        for k in range(len(form) - 1, MIN_PIECE - 1, -1):
            if text.startswith(form[-k:]):
                text = MASK + text[k:]
                break
    return text


@dataclass(frozen=True)
class Secret:
    """A secret and where it came from. ``repr`` never shows the value."""

    value: str | None
    source: str            # for messages: "$LINEWATCH_INFLUX_TOKEN", "token_file /path", ...
    warning: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source={self.source!r}, set={self.value is not None})"

    def redact(self, text: str) -> str:
        """``text`` without this secret in any form (:func:`redact`)."""
        return redact(text, self.value)


def load(*, env_name: str, file: str, file_key: str, credential: str,
         env: Mapping[str, str], source: str, what: str, strip: bool = True) -> Secret:
    """``$env_name``, else the file named by the config key ``file_key`` (``~`` expanded), else
    the systemd credential ``$CREDENTIALS_DIRECTORY/credential``, else no secret (value None).

    ``what`` names the secret in messages ("token", "password"). ``strip``: surrounding
    whitespace is not part of it (a token); otherwise only the file's line ending is dropped (a
    password may begin or end with a space). A file others may read is a warning; one that
    cannot be read, is empty or holds more than one line is a ConfigError naming ``file_key``."""
    if env.get(env_name):
        value = env[env_name]
        return Secret(value.strip() if strip else value, f"${env_name}")
    if file:
        return read_file(Path(file).expanduser(), f"{file_key.split('.')[-1]} {file}", source,
                         file_key, what, strip)
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / credential).exists():
        return read_file(Path(creds) / credential, f"systemd credential {credential}", source,
                         file_key, what, strip)
    return Secret(None, "none")


def read_file(path: Path, label: str, source: str, key: str, what: str = "token",
              strip: bool = True) -> Secret:
    """The one-line secret in ``path`` (see :func:`load`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, key, f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise ConfigError(source, key, f"{path} is not UTF-8 text") from None
    text = text.strip() if strip else text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ConfigError(source, key, f"{path} is empty")
    if "\n" in text or "\r" in text:
        raise ConfigError(source, key, f"{path} must hold one line (the {what})")
    mode = open_mode(path)
    warning = (f"{path} is readable by other users (mode {mode:o}): chmod 600 {path}"
               if mode is not None else None)
    return Secret(text, label, warning)


def open_mode(path: Path | str) -> int | None:
    """``path``'s permission bits when users other than its owner may read or change it, else
    None (also when it cannot be looked at)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None
