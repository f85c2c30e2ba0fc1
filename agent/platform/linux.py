"""Linux: the host read from procfs, sysfs and the runtime dir, with no subprocess and no privilege.

Pure cores (fixture text in, value out): :func:`parse_route`, :func:`parse_ipv6_route`,
:func:`parse_arp`, :func:`parse_power_supply`, :func:`parse_btime`. The I/O edge is
:class:`Linux`, whose methods read the files under its roots and never raise.

Routes. ``/proc/net/route`` (IPv4) prints each address as the kernel's 32-bit word in host byte
order (little-endian hex on x86 and ARM); ``/proc/net/ipv6_route`` prints addresses as 32 hex digits
in network order. Only routes that are up and go via a gateway (RTF_UP | RTF_GATEWAY) count;
blackhole, unreachable and on-link default routes have no gateway to ping and are skipped. The
tables are those of the reading process's network namespace.

The gateway's hardware (MAC) address, from the neighbour table ``/proc/net/arp``, tells which line
the agent is on. It is never stored or sent: only a one-way hash of it is
(:func:`agent.probes.gateway.site_id`).

The AC adapter and battery come from ``<sysfs>/class/power_supply`` (psutil cannot be pointed at a
prepared tree). Boot id and boot time come from procfs. The clock is trusted when a time-sync
service says it synced, or when none runs at all (the clock then comes from the RTC).
"""

from __future__ import annotations

import ipaddress
import os
import struct
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from agent.power import BATTERY, NO_SYNC_SERVICE, SYNCED, UNSYNCED, Reading

RTF_UP = 0x0001
RTF_GATEWAY = 0x0002
_WANTED = RTF_UP | RTF_GATEWAY
ATF_COM = 0x02  # the neighbour entry is complete: its hardware address is known
_SUPPLY_ATTRS = ("type", "online", "present", "status", "capacity", "energy_now", "energy_full",
                 "charge_now", "charge_full")


# -- routes and neighbours (pure) ---------------------------------------------------------------

def parse_route(text: str, byteorder: str = sys.byteorder) -> str | None:
    """The IPv4 default gateway in a ``/proc/net/route`` text, or None when there is none.

    Among up default routes via a gateway (destination and mask 0) the lowest metric wins; on a tie
    the first listed (the kernel's preference) wins. ``byteorder`` is how the kernel that wrote the
    text prints its words ("little" or "big"; the running machine's by default). Lines that do not
    parse are skipped.
    """
    fmt = "<I" if byteorder == "little" else ">I"
    best: tuple[int, str] | None = None
    for line in text.splitlines()[1:]:  # first line is the column header
        cols = line.split()
        if len(cols) < 8:
            continue
        try:
            # Addresses and flags are hex, the metric is decimal (the kernel's format string).
            dest, gateway, flags, mask = (int(cols[i], 16) for i in (1, 2, 3, 7))
            metric = int(cols[6])
        except ValueError:
            continue
        if dest != 0 or mask != 0 or flags & _WANTED != _WANTED or gateway == 0:
            continue
        if not 0 <= gateway <= 0xFFFFFFFF:
            continue
        addr = str(ipaddress.IPv4Address(struct.pack(fmt, gateway)))
        if best is None or metric < best[0]:
            best = (metric, addr)
    return best[1] if best else None


def parse_ipv6_route(text: str) -> str | None:
    """The IPv6 default gateway in a ``/proc/net/ipv6_route`` text, or None when there is none.

    Columns: destination, prefix length, source, source prefix length, next hop, metric, refcount,
    use, flags, interface (all hex). Among up ``::/0`` routes via a gateway the lowest metric wins.
    A link-local next hop (the usual case: routers advertise fe80::...) is only usable with its
    interface, so it is returned with a zone, ``fe80::1%eth0``, which sockets and ping accept.
    """
    best: tuple[int, str] | None = None
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 10:
            continue
        try:
            dest, plen, nexthop = int(cols[0], 16), int(cols[1], 16), int(cols[4], 16)
            metric, flags = int(cols[5], 16), int(cols[8], 16)
        except ValueError:
            continue
        if dest != 0 or plen != 0 or flags & _WANTED != _WANTED or nexthop == 0:
            continue
        if len(cols[4]) != 32:
            continue
        addr = ipaddress.IPv6Address(nexthop)
        text_addr = f"{addr}%{cols[9]}" if addr.is_link_local else str(addr)
        if best is None or metric < best[0]:
            best = (metric, text_addr)
    return best[1] if best else None


def parse_arp(text: str, address: str) -> str | None:
    """The hardware address ``/proc/net/arp`` lists for the IPv4 ``address`` ("aa:bb:cc:dd:ee:ff",
    lower case), or None: no entry, an incomplete one, or one without a 6-byte address.

    Columns: IP address, HW type, Flags (hex), HW address, Mask, Device; a header line first.
    """
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 4 or cols[0] != address:
            continue
        try:
            flags = int(cols[2], 16)
        except ValueError:
            continue
        mac = cols[3].lower()
        parts = mac.split(":")
        if not flags & ATF_COM or len(parts) != 6 or any(len(p) != 2 for p in parts):
            continue
        try:
            raw = bytes.fromhex("".join(parts))
        except ValueError:
            continue
        if raw == bytes(6):
            continue
        return mac
    return None


# -- power supplies, boot time (pure) -----------------------------------------------------------

def parse_power_supply(supplies: Mapping[str, Mapping[str, str]]) -> Reading | None:
    """A reading from a snapshot of ``class/power_supply``: {device: {attribute: text}}.

    Mains (``type`` Mains or USB) ``online`` = 1 anywhere means on mains; mains devices that all say
    0 mean on battery. Without a mains device, a battery whose ``status`` is Discharging means on
    battery. None when the machine has neither (a desktop, a Pi): the sensor does not apply.
    The charge is the first battery's ``capacity`` (or energy_now / energy_full).
    """
    mains = [d for d in supplies.values() if d.get("type") in ("Mains", "USB") and "online" in d]
    batteries = [d for d in supplies.values() if d.get("type") == "Battery"
                 and d.get("present", "1") != "0"]
    if not mains and not batteries:
        return None
    charge = status = None
    if batteries:
        b = batteries[0]
        status = b.get("status")
        charge = _num(b.get("capacity"))
        if charge is None:
            now = _num(b.get("energy_now") or b.get("charge_now"))
            full = _num(b.get("energy_full") or b.get("charge_full"))
            if now is not None and full:
                charge = round(100.0 * now / full, 1)
    if mains:
        on_battery = not any(d.get("online") == "1" for d in mains)
    elif status in ("Discharging",):
        on_battery = True
    elif status in ("Charging", "Full", "Not charging"):
        on_battery = False
    else:
        on_battery = None
    return Reading(BATTERY, on_battery, charge, status)


def _num(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def parse_btime(text: str) -> datetime | None:
    """``btime`` of a ``/proc/stat`` text: when this boot started, or None."""
    for line in text.splitlines():
        if line.startswith("btime "):
            try:
                return datetime.fromtimestamp(int(line.split()[1]), tz=UTC)
            except (ValueError, IndexError):
                return None
    return None


# -- the I/O edge ---------------------------------------------------------------------------------

class Linux:
    """The host under ``procfs``, ``sysfs`` and ``rundir`` (``/proc``, ``/sys``, ``/run``)."""

    name = "linux"

    def __init__(self, procfs: str = "/proc", sysfs: str = "/sys", rundir: str = "/run") -> None:
        self.procfs, self.sysfs, self.rundir = procfs, sysfs, rundir

    def default_gateway(self) -> str | None:
        """IPv4 from ``<procfs>/net/route``, else IPv6 from ``<procfs>/net/ipv6_route``; None when
        neither has one or the files cannot be read."""
        text = _read(os.path.join(self.procfs, "net", "route"))
        gateway = parse_route(text) if text is not None else None
        if gateway is None:
            text6 = _read(os.path.join(self.procfs, "net", "ipv6_route"))
            gateway = parse_ipv6_route(text6) if text6 is not None else None
        return gateway

    def routes_known(self) -> bool:
        """Whether the kernel routing tables are there to read. Elsewhere (not Linux) a missing
        gateway proves nothing about the link."""
        return any(os.access(os.path.join(self.procfs, "net", name), os.R_OK)
                   for name in ("route", "ipv6_route"))

    def gateway_mac(self, address: str | None) -> str | None:
        """None also for an IPv6 gateway (not in that table), a point-to-point or VPN link with no
        neighbour entry, or an unreadable table."""
        if not address:
            return None
        text = _read(os.path.join(self.procfs, "net", "arp"))
        return parse_arp(text, address) if text is not None else None

    def ac_power(self) -> Reading | None:
        root = Path(self.sysfs, "class", "power_supply")
        if not root.is_dir():
            return None
        return parse_power_supply(read_power_supply(root))

    def boot_id(self) -> str:
        try:
            return Path(self.procfs, "sys/kernel/random/boot_id").read_text().strip()
        except OSError:
            return ""

    def boot_time(self) -> datetime | None:
        """``btime`` from ``<procfs>/stat``. The kernel computes it from the current clock, so it
        follows clock corrections: read it after time sync."""
        text = _read(os.path.join(self.procfs, "stat"))
        return parse_btime(text) if text is not None else None

    def clock_state(self) -> str:
        """``synced``: systemd-timesyncd says so (``<rundir>/systemd/timesync/synchronized``) or
        the kernel's NTP state is synchronised; ``unsynced``: a time-sync service runs but has not
        synced; ``no_sync_service``: nothing would ever correct the clock, so it comes from the RTC
        and is trusted as is."""
        run = Path(self.rundir)
        if (run / "systemd" / "timesync" / "synchronized").exists():
            return SYNCED
        services = [run / "systemd" / "timesync", run / "chrony", run / "chronyd.pid",
                    run / "ntpd.pid", run / "ntp.pid", run / "openntpd.pid"]
        if not any(p.exists() for p in services):
            return NO_SYNC_SERVICE
        if self.rundir == "/run" and _kernel_clock_synced():
            return SYNCED  # chrony and ntpd leave no flag file, but they clear STA_UNSYNC
        return UNSYNCED

    def icmp_help(self) -> str:
        gid = os.getgid()
        python = os.path.realpath(sys.executable)
        return (
            "To allow ICMP echo, do one of:\n"
            f"  - allow unprivileged ping sockets for this group (gid {gid}):\n"
            f'      sysctl -w net.ipv4.ping_group_range="{gid} {gid}"   (or "0 2147483647" for all)\n'
            f"    and keep it across reboots in /etc/sysctl.d/60-linewatch.conf:\n"
            f"      net.ipv4.ping_group_range = {gid} {gid}\n"
            "  - give raw-socket capability: AmbientCapabilities=CAP_NET_RAW in the systemd unit, or\n"
            f"      setcap cap_net_raw+ep {python}   (affects every script run by this binary)\n"
            "  - run the agent as root\n"
            "  - or probe with TCP connects instead (method \"tcp\", needs no privileges)"
        )


def read_power_supply(root: Path) -> dict[str, dict[str, str]]:
    """Snapshot of a ``class/power_supply`` directory: the few attributes we use, per device."""
    out: dict[str, dict[str, str]] = {}
    try:
        devices = sorted(os.listdir(root))
    except OSError:
        return out
    for dev in devices:
        attrs = {}
        for name in _SUPPLY_ATTRS:
            try:
                attrs[name] = (root / dev / name).read_text().strip()
            except OSError:
                pass
        out[dev] = attrs
    return out


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _kernel_clock_synced() -> bool:
    """adjtimex(2) returns TIME_ERROR (5) while the kernel's clock is marked unsynchronised."""
    try:
        import ctypes  # deferred: 0.3 MB resident, needed only where chrony or ntpd run

        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex is 208 bytes on 64-bit Linux
        return libc.adjtimex(buf) not in (-1, 5)
    except (OSError, AttributeError):
        return False
