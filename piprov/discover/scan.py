"""The opt-in ``--scan``: SSH banners on the browsed interface's own subnet, bounded in time and rate.

For Pis that announce nothing over mDNS and renamed away from the default
names. Only the subnets of the interfaces being browsed are scanned (the
controller's own LAN segment, never beyond it), at most :data:`MAX_HOSTS`
addresses, at most ``rate`` new connections a second, and the whole scan
ends at its deadline whatever is still open. A banner (``SSH-2.0-...``) is
all that is read; nothing is sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from piprov.discover.records import escape
from piprov.errors import DiscoveryError

MAX_HOSTS = 1024  # a /22; a bigger LAN is scanned around nothing: name a smaller --interface
SSH_PORT = 22


@dataclass(frozen=True)
class Banner:
    address: str
    banner: str  # escaped, bounded


def scan_targets(networks: Sequence[ipaddress.IPv4Network], own: Collection[str], skip: Collection[str] = ()) -> list[str]:
    """Every host address of ``networks`` but the controller's own and ``skip``; refuses too big a subnet."""
    targets: list[str] = []
    for net in networks:
        if net.num_addresses - 2 > MAX_HOSTS:
            raise DiscoveryError(
                f"--scan: {net} has {net.num_addresses - 2} addresses, more than the {MAX_HOSTS} a scan may try",
                hint="browse without --scan, or scan from an interface on a smaller subnet",
            )
        targets.extend(str(ip) for ip in net.hosts() if str(ip) not in own and str(ip) not in skip)
    return list(dict.fromkeys(targets))


async def _banner(address: str, timeout: float) -> Banner | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, SSH_PORT), timeout)
    except (OSError, asyncio.TimeoutError):
        return None
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except (OSError, asyncio.TimeoutError, ValueError):
        line = b""
    finally:
        writer.close()
    text = line[:255].decode("ascii", "replace").strip()
    return Banner(address, escape(text)) if text.startswith("SSH-") else None


async def scan(targets: Sequence[str], *, deadline: float, rate: float = 100.0, connect_timeout: float = 1.0) -> list[Banner]:
    """Banners of the ``targets`` that answer on port 22 before ``deadline`` (time.monotonic()).

    One new connection every ``1/rate`` seconds; whatever has not answered
    by the deadline is dropped.
    """
    tasks: list[asyncio.Task[Banner | None]] = []
    for addr in targets:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        tasks.append(asyncio.ensure_future(_banner(addr, min(connect_timeout, left))))
        await asyncio.sleep(1.0 / rate)
    if not tasks:
        return []
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    for t in pending:
        t.cancel()
    found = [b for t in done if not t.cancelled() and t.exception() is None and (b := t.result()) is not None]
    return sorted(found, key=lambda b: ipaddress.ip_address(b.address))
