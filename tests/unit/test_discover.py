"""Discovery's pure parts, from recorded/hostile answers: merge, classify, escape, plan --add."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piprov.discover import (
    Host,
    ServiceAnswer,
    check_hostname,
    classify,
    escape,
    inventory_match,
    mac_from_workstation,
    merge,
    networks_of,
    plan_additions,
)
from piprov.errors import DiscoveryError
from piprov.inventory import load_text

DATA = Path(__file__).parent / "data" / "discover" / "answers.json"


def recorded() -> tuple[list[ServiceAnswer], list[Any]]:
    raw = json.loads(DATA.read_text())
    answers = []
    for a in raw["answers"]:
        txt = {k.encode(): v.encode() for k, v in a.get("txt", {}).items()}
        answers.append(
            ServiceAnswer(
                type=a["type"],
                name=a["name"],
                server=a["server"],
                addresses=tuple(a["addresses"]),
                port=a.get("port"),
                txt=txt,
                txt_size=a.get("txt_size", sum(len(k) + len(v) + 2 for k, v in txt.items())),
                seen_at=a["seen_at"],
            )
        )
    return answers, [ipaddress.ip_network(n) for n in raw["networks"]]


def by_name(hosts: list[Host]) -> dict[str, Host]:
    return {h.hostname: h for h in hosts}


def test_merge_one_record_per_host() -> None:
    answers, nets = recorded()
    hosts, rejected = merge(answers, nets)
    h = by_name(hosts)
    bp = h["black-pearl"]
    assert bp.addresses == ("10.40.0.11",)
    assert bp.mac == "b8:27:eb:00:00:01"
    assert bp.services == ("_ssh._tcp", "_workstation._tcp")
    assert bp.kind == "pi" and "Raspberry Pi Foundation" in bp.reason
    assert bp.first_seen == pytest.approx(0.18)
    assert h["black-pearl-2"].mac == "dc:a6:32:00:00:02"  # normalised to lower case
    # No MAC seen: the HypriotOS name is the hint; IPv6 link-local dropped.
    assert h["black-pearl-3"].kind == "pi" and h["black-pearl-3"].mac is None
    assert h["black-pearl-3"].addresses == ("10.40.0.13",)
    assert h["laptop"].kind == "other" and "3c:22:fb" in h["laptop"].reason
    assert h["printer"].kind == "other" and h["printer"].txt == {"rp": "ipp/print", "ty": "Brother HL"}
    # Sorted by address.
    assert [x.address for x in hosts] == sorted((x.address for x in hosts), key=ipaddress.ip_address)


def test_hostile_answers_rejected_with_reasons() -> None:
    answers, nets = recorded()
    hosts, rejected = merge(answers, nets)
    names = {h.hostname for h in hosts}
    reasons = {r.what: r.reason for r in rejected}
    assert "black-pearl-9" not in names and "8.8.8.8" in reasons["black-pearl-9"]
    assert "twin" not in names and "claimed by 2 devices" in reasons["twin"]
    assert not any(";" in n or "\n" in n for n in names)
    assert any("x;rm -rf ~.local." in r.reason for r in rejected)
    # Control characters never reach the output raw.
    for r in rejected:
        assert "\x1b" not in r.what + r.reason and "\n" not in r.what + r.reason
    assert any("\\x1b" in r.what for r in rejected)
    big = by_name(hosts)["bigtxt"]
    assert big.txt == {} and any("5000 bytes" in w for w in big.warnings)
    offnet = by_name(hosts)["black-pearl-5"]
    assert offnet.addresses == ("10.40.0.15",) and any("192.168.99.5" in w for w in offnet.warnings)


@pytest.mark.parametrize(
    "mac, name, kind",
    [
        ("b8:27:eb:01:02:03", "anything", "pi"),
        ("dc:a6:32:01:02:03", "x", "pi"),
        ("e4:5f:01:01:02:03", "x", "pi"),
        ("28:cd:c1:01:02:03", "x", "pi"),
        ("d8:3a:dd:01:02:03", "x", "pi"),
        ("2c:cf:67:01:02:03", "x", "pi"),
        ("88:a2:9e:01:02:03", "x", "pi"),  # Pi 5
        ("98:fe:54:01:02:03", "x", "pi"),
        ("3a:35:41:01:02:03", "x", "pi"),  # CID
        ("f0:40:af:91:02:03", "x", "pi"),  # MA-M f0:40:af:9
        ("f0:40:af:81:02:03", "x", "other"),  # the rest of f0:40:af is someone else's
        ("8c:1f:64:34:a1:03", "x", "pi"),  # MA-S 8c:1f:64:34:a
        ("8c:1f:64:34:b1:03", "x", "other"),
        (None, "raspberrypi-3", "pi"),
        ("3c:22:fb:01:02:03", "black-pearl", "other"),  # the MAC wins over the name
        (None, "black-pearl-7", "pi"),
        (None, "printer", "other"),
    ],
)
def test_classify(mac: str | None, name: str, kind: str) -> None:
    assert classify(mac, name)[0] == kind


def test_workstation_mac_and_hostname_checks() -> None:
    assert mac_from_workstation("black-pearl [B8:27:EB:AA:BB:CC]._workstation._tcp.local.") == "b8:27:eb:aa:bb:cc"
    assert mac_from_workstation("black-pearl._workstation._tcp.local.") is None
    assert mac_from_workstation("x [zz:27:eb:aa:bb:cc]._workstation._tcp.local.") is None
    assert check_hostname("Black-Pearl-2.local.") == ("black-pearl-2", None)
    for bad in ("a b.local.", "$(reboot).local.", "x'y.local.", "-x.local.", "a\x00.local.", "", None, "{a: b}.local."):
        name, why = check_hostname(bad)
        assert name is None and why


@given(st.text(max_size=300))
def test_escape_is_printable_and_bounded(s: str) -> None:
    e = escape(s)
    assert e.isprintable() and len(e) <= 80


@given(
    st.lists(
        st.builds(
            ServiceAnswer,
            type=st.sampled_from(["_ssh._tcp.local.", "_workstation._tcp.local.", "_http._tcp.local."]),
            name=st.text(max_size=60),
            server=st.none() | st.text(max_size=40),
            addresses=st.lists(st.sampled_from(["10.40.0.5", "10.40.0.6", "1.1.1.1", "fe80::2", "junk"]), max_size=3).map(tuple),
            txt=st.dictionaries(st.binary(max_size=10), st.none() | st.binary(max_size=20), max_size=5),
            txt_size=st.integers(0, 10000),
        ),
        max_size=12,
    )
)
def test_merge_never_lets_unsafe_names_through(answers: list[ServiceAnswer]) -> None:
    hosts, rejected = merge(answers, [ipaddress.ip_network("10.40.0.0/24")])
    for h in hosts:
        assert check_hostname(h.hostname)[0] == h.hostname
        assert all(ipaddress.ip_address(a) in ipaddress.ip_network("10.40.0.0/24") for a in h.addresses)
        for s in (*h.instances, *h.txt, *h.txt.values(), *h.warnings):
            assert s.isprintable()
    for r in rejected:
        assert (r.what + r.reason).isprintable()


INV = """\
cluster: {name: lab}
nodes:
  - {name: rpi-master, address: 10.40.0.11, role: master}
  - {name: rpi-node-2, address: 10.40.0.99, role: worker, mac: dc:a6:32:00:00:02}
"""


def test_inventory_match_and_plan_additions() -> None:
    answers, nets = recorded()
    hosts, _ = merge(answers, nets)
    inv = load_text(INV, Path("inv.yaml"))
    h = by_name(hosts)
    assert inventory_match(h["black-pearl"], inv) == ("rpi-master", None)
    name, note = inventory_match(h["black-pearl-2"], inv)
    assert name == "rpi-node-2" and note and "10.40.0.99" in note
    plan = plan_additions(hosts, inv)
    # Known by address or MAC are left alone; n skips the name already taken.
    assert [(n.name, n.address, n.mac) for n in plan] == [
        ("rpi-node-1", "10.40.0.13", None),
        ("rpi-node-3", "10.40.0.15", None),
    ]
    assert all(n.role == "worker" for n in plan)
    assert [n.name for n in plan_additions(hosts, inv, pattern="pi{n}")] == ["pi1", "pi2"]
    with pytest.raises(DiscoveryError):
        plan_additions(hosts, inv, pattern="rpi-node")
    with pytest.raises(DiscoveryError):
        plan_additions(hosts, inv, pattern="rpi;{n}")


def test_networks_of() -> None:
    nets = networks_of(["10.40.0.1"], [("10.40.0.1", 24), ("192.168.1.5", 24), ("fe80::1%eth0", 64)])
    assert nets == [ipaddress.ip_network("10.40.0.0/24")]
    assert len(networks_of([], [("10.40.0.1", 24), ("fe80::1%eth0", 64)])) == 2


def test_same_name_heard_from_another_segment_does_not_poison_the_local_host() -> None:
    # Another LAN (or lab bridge) also has a black-pearl: its answers carry only
    # addresses off the browsed subnet and must not count as a second claim.
    local = ServiceAnswer("_workstation._tcp.local.", "black-pearl [b8:27:eb:00:00:01]._workstation._tcp.local.",
                          "black-pearl.local.", ("10.40.0.11",))  # fmt: skip
    foreign = ServiceAnswer("_workstation._tcp.local.", "black-pearl [b8:27:eb:00:00:02]._workstation._tcp.local.",
                            "black-pearl.local.", ("10.41.0.11",))  # fmt: skip
    only_foreign = ServiceAnswer("_ssh._tcp.local.", "elsewhere._ssh._tcp.local.", "elsewhere.local.", ("10.41.0.12",))
    hosts, rejected = merge([local, foreign, only_foreign], [ipaddress.ip_network("10.40.0.0/24")])
    assert [(h.hostname, h.mac, h.addresses) for h in hosts] == [("black-pearl", "b8:27:eb:00:00:01", ("10.40.0.11",))]
    assert [r.what for r in rejected] == ["elsewhere"] and "10.41.0.12" in rejected[0].reason
