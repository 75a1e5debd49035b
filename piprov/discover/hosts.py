"""Raw mDNS answers into one record per device, and what cannot be trusted rejected with a reason.

Everything an answer carries is untrusted: any device on the LAN can send
anything. A host name with shell or YAML metacharacters, addresses off the
browsed subnet, one name claimed by two devices: each is rejected with the
reason, and what is only shown is escaped. Hosts are told apart by address
and MAC, never by name alone (every fresh HypriotOS Pi is ``black-pearl``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from piprov.discover.pi import classify, mac_from_workstation
from piprov.discover.records import Host, Rejected, ServiceAnswer, escape
from piprov.inventory.schema import is_hostname_label

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_TXT_BYTES = 1024  # a Pi's TXT records are empty; more than this is junk or hostile
MAX_TXT_ENTRIES = 32


def check_hostname(server: str | None) -> tuple[str | None, str | None]:
    """``black-pearl-2.local.`` -> (``black-pearl-2``, None), or (None, reason)."""
    if not server:
        return None, "no host name (SRV record) in the answer"
    name = server[:-1] if server.endswith(".") else server
    if name.lower().endswith(".local"):
        name = name[: -len(".local")]
    labels = name.split(".")
    if not name or len(name) > 253 or not all(is_hostname_label(label) for label in labels):
        return None, (
            f"host name {escape(server)!r} is not a valid host name "
            "(only letters, digits and hyphens are allowed); ignored"
        )
    return name.lower(), None


def _short_type(t: str) -> str:
    return t[: -len(".local.")] if t.endswith(".local.") else t


def _instance_label(a: ServiceAnswer) -> str:
    suffix = "." + a.type
    return a.name[: -len(suffix)] if a.name.endswith(suffix) else a.name


def _txt(a: ServiceAnswer) -> tuple[dict[str, str], str | None]:
    if a.txt_size > MAX_TXT_BYTES or len(a.txt) > MAX_TXT_ENTRIES:
        return {}, f"TXT record of {a.txt_size} bytes / {len(a.txt)} entries ignored (limit {MAX_TXT_BYTES} bytes)"
    out: dict[str, str] = {}
    for k, v in a.txt.items():
        key = escape(k.decode("utf-8", "replace"), 40)
        out[key] = "" if v is None else escape(v.decode("utf-8", "replace"))
    return out, None


def networks_of(addresses: Iterable[str], adapters: Iterable[tuple[str, int]]) -> list[Network]:
    """The subnets of the browsing interfaces, from (ip, prefix length) pairs of local adapters."""
    wanted = {ipaddress.ip_address(a) for a in addresses}
    nets = []
    for ip, prefix in adapters:
        try:
            addr = ipaddress.ip_address(ip.split("%")[0])
        except ValueError:
            continue
        if not wanted or addr in wanted:
            nets.append(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
    return nets


def _on_networks(raw: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(raw.split("%")[0])
    except ValueError:
        return False
    return any(ip in n for n in networks)


def merge(answers: Iterable[ServiceAnswer], networks: Sequence[Network]) -> tuple[list[Host], list[Rejected]]:
    """Merge the services of each host into ONE record; reject what cannot be trusted.

    Hosts are keyed by their host name (avahi keeps those unique on a LAN). A
    name claimed by devices with different MACs is rejected: which address
    belongs to which device cannot be known.
    """
    groups, rejected = _by_hostname(answers, networks)
    hosts: list[Host] = []
    for hostname, group in sorted(groups.items()):
        one = _host(hostname, group, networks)
        if isinstance(one, Rejected):
            rejected.append(one)
        else:
            hosts.append(one)
    hosts.sort(key=lambda h: ipaddress.ip_address(h.address))
    return hosts, rejected


def _by_hostname(
    answers: Iterable[ServiceAnswer], networks: Sequence[Network]
) -> tuple[dict[str, list[ServiceAnswer]], list[Rejected]]:
    """The answers of each valid host name heard on the browsed subnet; the rest rejected."""
    rejected: list[Rejected] = []
    groups: dict[str, list[ServiceAnswer]] = {}
    off_net: dict[str, set[str]] = {}
    for a in answers:
        hostname, why = check_hostname(a.server)
        if hostname is None:
            rejected.append(Rejected(escape(_instance_label(a)), why or "unusable"))
            continue
        if networks and a.addresses and not any(_on_networks(x, networks) for x in a.addresses):
            # Heard from another segment (or lying): it must not count as a
            # claim on a name that a host of this subnet holds.
            off_net.setdefault(hostname, set()).update(escape(x) for x in a.addresses)
            continue
        groups.setdefault(hostname, []).append(a)
    for hostname, addrs in sorted(off_net.items()):
        if hostname not in groups:
            rejected.append(
                Rejected(hostname, f"no address on the browsed subnet (it announced {', '.join(sorted(addrs))})")
            )
    return groups, rejected


def _host(hostname: str, group: list[ServiceAnswer], networks: Sequence[Network]) -> Host | Rejected:
    """One host name's answers as one device, or why they cannot be."""
    macs = sorted({m for m in (mac_from_workstation(a.name) for a in group) if m})
    if len(macs) > 1:
        return Rejected(hostname, f"host name claimed by {len(macs)} devices ({', '.join(macs)}); ignored")
    mac = macs[0] if macs else None
    warnings: list[str] = []
    addresses, off = _addresses(group, networks)
    if off:
        warnings.append(f"ignored addresses off the browsed subnet: {', '.join(sorted(set(off)))}")
    if not addresses:
        reason = "no address on the browsed subnet"
        if off:
            reason += f" (it announced {', '.join(sorted(set(off)))})"
        return Rejected(hostname, reason)
    v4 = [x for x in addresses if ipaddress.ip_address(x).version == 4]
    if len(v4) > 1:
        warnings.append(f"several IPv4 addresses ({', '.join(v4)}): not added automatically")
    txt: dict[str, str] = {}
    for a in group:
        t, why = _txt(a)
        if why:
            warnings.append(f"{_short_type(a.type)}: {why}")
        txt.update(t)
    kind, reason = classify(mac, hostname)
    return Host(
        hostname=hostname,
        addresses=tuple(addresses),
        mac=mac,
        kind=kind,
        reason=reason,
        services=tuple(sorted({_short_type(a.type) for a in group})),
        instances=tuple(sorted({escape(_instance_label(a)) for a in group})),
        txt=txt,
        warnings=tuple(warnings),
        first_seen=min(a.seen_at for a in group),
    )


def _addresses(group: list[ServiceAnswer], networks: Sequence[Network]) -> tuple[list[str], list[str]]:
    """The usable addresses (IPv4 first, sorted) and the ones off the subnet (escaped)."""
    addresses: list[str] = []
    off: list[str] = []
    for a in group:
        for raw in a.addresses:
            try:
                ip = ipaddress.ip_address(raw.split("%")[0])
            except ValueError:
                off.append(escape(raw))
                continue
            if ip.is_link_local and ip.version == 6:
                continue  # usable only with a scope; the IPv4 address is what SSH uses
            if networks and not any(ip in n for n in networks):
                off.append(str(ip))
                continue
            if str(ip) not in addresses:
                addresses.append(str(ip))
    addresses.sort(key=lambda s: (ipaddress.ip_address(s).version, ipaddress.ip_address(s)))
    return addresses, off
