"""Discovery you can trust, from data: which interfaces are a LAN, the neighbour table,
what answers pass, names still being claimed, --scan's bounds, --add beside bad neighbours."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from pathlib import Path
from typing import Any

import pytest

from piprov.discover import Host, ServiceAnswer, merge, plan_additions_why
from piprov.discover.claims import Claims, Packet, parse_packet
from piprov.discover.lan import Interface, Neighbour, choose_lan, explicit_problem, parse_arp
from piprov.discover.scan import MAX_HOSTS, scan, scan_targets
from piprov.discover.trust import vet
from piprov.errors import DiscoveryError
from piprov.inventory import load_text

DATA = Path(__file__).parent / "data" / "discover"


def test_only_lan_interfaces_are_browsed_by_default() -> None:
    raw = json.loads((DATA / "interfaces.json").read_text())
    itfs = [Interface(name=i["name"], ipv4=tuple(i["ipv4"]), loopback=i.get("loopback", False),
                      device=i.get("device", False), lower_devices=tuple(i.get("lower_devices", [])),
                      up=i.get("up", True)) for i in raw["interfaces"]]  # fmt: skip
    chosen, skipped = choose_lan(itfs)
    assert [[n, str(a)] for n, a in chosen] == raw["chosen"]
    why = dict(skipped)
    assert set(why) == set(raw["skipped"])
    for name, fragment in raw["skipped"].items():
        assert fragment in why[name], (name, why[name])


def test_explicit_interface_must_be_ours_and_not_loopback() -> None:
    local = {"127.0.0.1", "10.231.7.1", "169.254.1.1", "192.168.1.10"}
    assert explicit_problem("10.231.7.1", local) is None  # the lab's bridge, when asked for
    assert "loopback" in (explicit_problem("127.0.0.1", local) or "")
    assert "link-local" in (explicit_problem("169.254.1.1", local) or "")
    assert "not an address of this machine" in (explicit_problem("192.168.1.11", local) or "")
    assert "not an IP address" in (explicit_problem("eth0", local) or "")


def test_parse_arp_keeps_complete_entries_only() -> None:
    table = parse_arp((DATA / "arp.txt").read_text())
    assert table == {
        "10.40.0.11": Neighbour("10.40.0.11", "b8:27:eb:00:00:01", "plab0"),
        "10.40.0.12": Neighbour("10.40.0.12", "dc:a6:32:00:00:02", "plab0"),
        "10.40.0.14": Neighbour("10.40.0.14", "e4:5f:01:00:00:04", "plab0"),
        "10.40.0.77": Neighbour("10.40.0.77", "02:42:ac:11:00:07", "plab0"),
        "10.40.0.78": Neighbour("10.40.0.78", "02:42:ac:11:00:08", "plab0"),
    }
    assert parse_arp("") == {} and parse_arp("\x00\xff garbage\n\n") == {}


def hostile() -> tuple[list[Host], list[Any], dict[str, Any]]:
    raw = json.loads((DATA / "hostile.json").read_text())
    answers = [ServiceAnswer(type=a["type"], name=a["name"], server=a["server"], addresses=tuple(a["addresses"]))
               for a in raw["answers"]]  # fmt: skip
    hosts, rejected = merge(answers, [ipaddress.ip_network(n) for n in raw["networks"]])
    return hosts, rejected, raw


def test_hostile_answers_do_not_pass_and_the_real_pis_do() -> None:
    hosts, rejected, raw = hostile()
    neighbours = {ip: Neighbour(ip, mac, "plab0") for ip, mac in raw["neighbours"].items()}
    passed, vetted = vet(hosts, own=set(raw["own"]), neighbours=neighbours)
    assert {h.hostname: h.mac for h in passed} == raw["passed"]
    assert all(h.is_pi and h.mac_checked for h in passed)
    reasons = {r.what: r.reason for r in [*rejected, *vetted]}
    assert set(reasons) == set(raw["rejected"]), reasons
    for what, fragment in raw["rejected"].items():
        assert fragment in reasons[what], (what, reasons[what])
    # The six names on one address are one rejection, not six Pis.
    assert sum("names on one address" in r for r in reasons.values()) == 1


def test_without_a_neighbour_table_hosts_pass_with_a_warning() -> None:
    hosts, _, raw = hostile()
    passed, vetted = vet(hosts, own=set(raw["own"]), neighbours=None)
    assert "ghost" in {h.hostname for h in passed}
    assert all(any("MAC not checked" in w for w in h.warnings) for h in passed)
    assert {r.what for r in vetted} == {"black-pearl-8", "10.40.0.70"}


def test_add_takes_the_good_pis_and_says_why_not_for_the_rest() -> None:
    hosts, _, raw = hostile()
    neighbours = {ip: Neighbour(ip, mac, "plab0") for ip, mac in raw["neighbours"].items()}
    passed, _ = vet(hosts, own=set(raw["own"]), neighbours=neighbours)
    inv = load_text("cluster: {name: lab}\nnodes:\n  - {name: rpi-master, address: 10.40.0.11, role: master}\n",
                    Path("inv.yaml"))  # fmt: skip
    twin = Host("black-pearl-3", ("10.40.0.12",), "dc:a6:32:00:00:02", "pi", "t", (), (), {})
    new, skipped = plan_additions_why([*passed, twin], inv)
    assert [(n.name, n.address) for n in new] == [("rpi-node-1", "10.40.0.12"), ("rpi-node-2", "10.40.0.30")]
    assert dict(skipped) == {"black-pearl": "already in the inventory as rpi-master",
                             "black-pearl-3": "same address or MAC as rpi-node-1, added just before it"}


def test_claims_in_flight_from_recorded_packets() -> None:
    raw = json.loads((DATA / "claims.json").read_text())
    c = Claims()
    for e in raw["events"]:
        c.saw(Packet(e["source"], e["query"], e.get("probe", False), tuple(e.get("a_names", ()))), e["t"])
        assert c.pending == e["pending"], e
        if "conflicts" in e:
            assert c.conflicts == e["conflicts"]
    assert sorted(c.in_flight) == raw["still_claiming"]
    assert c.last_event == 1.90


def _packet(flags: int, question: bool, authority: bool, answer: bool) -> bytes:
    """An mDNS datagram by hand (RFC 1035 4.1): black-pearl.local A 10.40.0.11 in the chosen sections."""
    import struct

    name = b"".join(bytes([len(x)]) + x for x in (b"black-pearl", b"local")) + b"\x00"
    rr = b"\xc0\x0c" if question else name
    rr += struct.pack("!HHIH", 1, 1, 120, 4) + bytes([10, 40, 0, 11])
    out = struct.pack("!HHHHHH", 0, flags, int(question), int(answer), int(authority), 0)
    out += name + struct.pack("!HH", 255, 1) if question else b""
    return out + (rr if answer else b"") + (rr if authority else b"")


def test_parse_packet_tells_probes_from_queries_and_announcements() -> None:
    src = "10.40.0.11"
    assert parse_packet(_packet(0, True, True, False), src) == Packet(src, True, True)  # probe
    assert parse_packet(_packet(0, True, False, False), src) == Packet(src, True, False)  # plain query
    assert parse_packet(_packet(0x8400, False, False, True), src) == Packet(src, False, False, ("black-pearl.local.",))
    for junk in (b"", b"\x00" * 5, bytes(range(256))):
        p = parse_packet(junk, src)
        assert p is None or not p.probe


def test_scan_targets_stay_on_the_subnet_and_are_bounded() -> None:
    net = ipaddress.IPv4Network("10.40.0.0/24")
    targets = scan_targets([net], own={"10.40.0.1"}, skip={"10.40.0.11"})
    assert len(targets) == 252 and "10.40.0.1" not in targets and "10.40.0.0" not in targets
    assert all(ipaddress.ip_address(t) in net for t in targets)
    assert len(scan_targets([ipaddress.IPv4Network("10.40.0.0/22")], own=set())) == MAX_HOSTS - 2
    with pytest.raises(DiscoveryError, match="more than"):
        scan_targets([ipaddress.IPv4Network("10.0.0.0/16")], own=set())


def test_scan_ends_at_its_deadline() -> None:
    # Nothing is contacted: the deadline is already over (no network in unit tests).
    assert asyncio.run(scan(["192.0.2.1", "192.0.2.2"], deadline=time.monotonic() - 1)) == []
