"""The NUT network protocol (1.3), pure: words, quoting, replies and errors, a UPS's fields.

NUT's ``upsd`` (TCP port 3493) speaks line-based text::

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

Any reply may instead be ``ERR <CODE> [extra]``; :data:`ERR_KINDS` sorts the codes. Everything here
takes text and returns values or raises :class:`NutError`; the socket client is
:mod:`agent.probes.ups`. Functions that quote a server's line take the password (``secret``) to
keep it out of the message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from agent.probes.nut_url import CONTROL, NutURL
from kit.errors import ProbeError
from kit.secret import redact

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

_EXCERPT = 60
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

    def __init__(self, kind: str, detail: str, *, url: NutURL | None = None,
                 code: str | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"NutError kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.detail = detail
        self.url = url
        self.code = code
        super().__init__(f"ups {url}: {detail}" if url is not None else f"ups: {detail}")

    def at(self, url: NutURL) -> NutError:
        """The same error naming ``url`` (pure helpers raise without knowing the URL)."""
        return NutError(self.kind, _scrub(self.detail, url.password), url=url, code=self.code)


def _scrub(text: str, password: str | None) -> str:
    """``text`` without the password, in any form (raw, as quoted on the wire, ...)."""
    return redact(text, password)


def excerpt(line: str, secret: str | None = None) -> str:
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
    if CONTROL.search(text):
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
                raise NutError("protocol", f"line ends in a backslash: {excerpt(line, secret)}")
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
        raise NutError("protocol", f"unterminated quote: {excerpt(line, secret)}")
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
        return NutError("protocol", f"malformed ERR reply: {excerpt(line, secret)}")
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
                                   f"{excerpt(line, secret)}")
    _, var_ups, name, value = words
    if ups is not None and not _same_ups(var_ups, ups):
        raise NutError("protocol", f"variable for another UPS: {excerpt(line, secret)}")
    if not name:
        raise NutError("protocol", f"empty variable name: {excerpt(line, secret)}")
    return name, value


def check_list_header(line: str, what: str, ups: str, secret: str | None) -> None:
    """Raise NutError("protocol") unless ``line`` is ``<what> LIST VAR <ups>`` (BEGIN or END)."""
    words = split_words(line, secret)
    if len(words) != 4 or words[:3] != [what, "LIST", "VAR"] or not _same_ups(words[3], ups):
        raise NutError("protocol", f"expected '{what} LIST VAR {ups}', got "
                                   f"{excerpt(line, secret)}")


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
    check_list_header(lines[0], "BEGIN", ups, secret)
    if len(lines) < 2:
        raise NutError("protocol", "LIST VAR reply has no END line")
    check_list_header(lines[-1], "END", ups, secret)
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


def mains_lost(fields: Mapping[str, object]) -> bool:
    """Whether a UPS reading means the mains is gone: the OB flag, or LB without OL (a driver that
    reports only LB while discharging). "OL LB" is a UPS back on mains, recharging a low battery:
    the cut is over."""
    if fields.get("on_battery"):
        return True
    return bool(fields.get("low_battery")) and "OL" not in status_flags(str(fields.get("status", "")))
