"""The lab LAN: one bridge per lab, one network namespace + veth per host on it.

Nothing here may route off the machine: namespaces get an address on the
lab's /24 (a /23 for a lab of more than 189 nodes) and a multicast route for mDNS, never a default route, and the host
does no NAT for the lab.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path

from piprov_lab.errors import LabError
from piprov_lab.system import run

# Labs take /24s from this block; each is checked against every host route.
POOL = ipaddress.IPv4Network("10.231.0.0/16")
NETNS_PREFIX = "piprov-lab-"
LINK_PREFIX = "pl"  # + 6 hex digits of the lab name's hash (+ n<i> / d<i>)


def short_hash(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:6]


def bridge_name(lab: str) -> str:
    return f"{LINK_PREFIX}{short_hash(lab)}"


def veth_name(lab: str, kind: str, index: int) -> str:
    return f"{LINK_PREFIX}{short_hash(lab)}{kind}{index}"  # <= 15 chars for index < 1000


def netns_name(lab: str, host: str) -> str:
    # "_" cannot occur in a lab name, so lab "t1"'s prefix never matches lab "t1-x"'s.
    return f"{NETNS_PREFIX}{lab}_{host}"


def host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host routes or has an address in (all tables)."""
    nets: list[ipaddress.IPv4Network] = []
    routes = json.loads(run(["ip", "-4", "-j", "route", "show", "table", "all"]).stdout or "[]")
    for r in routes:
        dst = r.get("dst", "")
        if dst in ("", "default"):
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network) and not net.is_multicast and net.prefixlen > 0:
            nets.append(net)
    addrs = json.loads(run(["ip", "-4", "-j", "addr"]).stdout or "[]")
    for link in addrs:
        for a in link.get("addr_info", []):
            net = ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
            if isinstance(net, ipaddress.IPv4Network):
                nets.append(net)
    return nets


def pick_subnet(lab: str, taken: list[str], prefixlen: int = 24) -> ipaddress.IPv4Network:
    """A /24 (or the ``prefixlen`` asked for: a /23 for a lab of more nodes than a /24 holds)
    from POOL clashing with no host route and no other lab's subnet."""
    used = host_networks() + [ipaddress.IPv4Network(t) for t in taken if t]
    subnets = list(POOL.subnets(new_prefix=prefixlen))
    start = int(short_hash(lab), 16) % len(subnets)
    for i in range(len(subnets)):
        cand = subnets[(start + i) % len(subnets)]
        if not any(cand.overlaps(u) for u in used):
            return cand
    raise LabError(f"no free /{prefixlen} left in {POOL} for the lab's LAN")


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def create_bridge(name: str, ip: str, prefixlen: int) -> None:
    run(["ip", "link", "add", name, "type", "bridge", "mcast_snooping", "0"])
    run(["ip", "addr", "add", f"{ip}/{prefixlen}", "dev", name])
    run(["ip", "link", "set", name, "up"])


def bridge_nf_active() -> bool:
    """True if bridged frames traverse iptables (br_netfilter loaded, e.g. by docker)."""
    try:
        return Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text().strip() == "1"
    except OSError:
        return False


def forward_rule(bridge: str, lab: str) -> list[str]:
    # With br_netfilter on, a host docker's FORWARD DROP policy would also drop
    # frames between two lab hosts on the same bridge; accept exactly those.
    return ["FORWARD", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", f"piprov-lab:{lab}", "-j", "ACCEPT"]


def add_forward_rule(bridge: str, lab: str) -> None:
    run(["iptables", "-w", "-I", *forward_rule(bridge, lab)])


def del_forward_rule(bridge: str, lab: str) -> None:
    while run(["iptables", "-w", "-D", *forward_rule(bridge, lab)], check=False).returncode == 0:
        pass


def create_host(netns: str, veth: str, bridge: str, mac: str, ip: str, prefixlen: int) -> None:
    """A namespace whose eth0 (with ``mac``/``ip``) is plugged into ``bridge``."""
    run(["ip", "netns", "add", netns])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "address", mac, "netns", netns])
    run(["ip", "link", "set", veth, "master", bridge, "up"])
    ns = ["ip", "-n", netns]
    run([*ns, "link", "set", "lo", "up"])
    run([*ns, "addr", "add", f"{ip}/{prefixlen}", "dev", "eth0"])
    run([*ns, "link", "set", "eth0", "up"])
    # mDNS needs a route for multicast; there is deliberately no default route.
    run([*ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])


def delete_host(netns: str, veth: str) -> None:
    if link_exists(veth):
        run(["ip", "link", "del", veth], check=False)
    if netns_exists(netns):
        run(["ip", "netns", "del", netns], check=False)


def delete_bridge(name: str) -> None:
    if link_exists(name):
        run(["ip", "link", "del", name], check=False)


def set_link(veth: str, up: bool) -> None:
    run(["ip", "link", "set", veth, "up" if up else "down"])


def has_address(netns: str, ip: str) -> bool:
    out = run(["ip", "-n", netns, "-4", "-o", "addr", "show", "dev", "eth0"], check=False).stdout
    return f" {ip}/" in out


def set_address(netns: str, ip: str, prefixlen: int, present: bool) -> None:
    """Take the host's address off its eth0 (link stays up) or put it back, with the
    multicast route: the kernel drops a device's routes with its last IPv4 address."""
    ns = ["ip", "-n", netns]
    if not present:
        if has_address(netns, ip):
            run([*ns, "addr", "del", f"{ip}/{prefixlen}", "dev", "eth0"])
        return
    if not has_address(netns, ip):
        run([*ns, "addr", "add", f"{ip}/{prefixlen}", "dev", "eth0"])
    run([*ns, "route", "replace", "224.0.0.0/4", "dev", "eth0"])
