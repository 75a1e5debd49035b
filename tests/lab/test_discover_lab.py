"""`piprov discover` against the virtual Pi lab: 4 Pis + a printer and a laptop.

The Pis all boot as black-pearl and avahi renames them on the wire; discovery
must list exactly the 4 Pis by their own addresses and MACs (the decoys only
with --all), and `discover --add` must grow an inventory that started with only
the master, leaving known hosts alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit import kubeconfig_of

from piprov.inventory import edit, load

pytestmark = pytest.mark.lab

PIPROV = str(Path(sys.executable).with_name("piprov"))


@pytest.fixture(scope="module")
def lab(lab_factory: Callable[..., Any]) -> Iterator[Any]:
    """A lab of this module's own: 4 Pis and 2 decoys (a printer, a laptop)."""
    lb = lab_factory("disc", nodes=4, decoys=2)
    try:
        lb.wait_mdns()
        yield lb
    finally:
        lb.down()


def discover(lab: Any, *args: str) -> dict[str, Any]:
    argv = [PIPROV, "discover", "--json", "--interface", lab.bridge_ip, *args]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    data: dict[str, Any] = json.loads(p.stdout)
    return data


def test_lists_exactly_the_pis(lab: Any, tmp_path: Path) -> None:
    data = discover(lab, "-i", str(tmp_path / "none.yaml"))
    hosts = data["hosts"]
    assert isinstance(hosts, list)
    nodes = {n.ip: n for n in lab.nodes}
    assert {h["address"] for h in hosts} == set(nodes), hosts
    for h in hosts:
        node = nodes[h["address"]]
        assert h["kind"] == "pi"
        assert h["mac"] == node.mac
        assert h["hostname"].startswith("black-pearl")
        assert {"_ssh._tcp", "_workstation._tcp"} <= set(h["services"])
    # The collided names were resolved: four hosts, four names.
    assert len({h["hostname"] for h in hosts}) == 4
    assert data["rejected"] == []
    assert data["settled"] is True


def test_all_shows_the_decoys_as_other(lab: Any, tmp_path: Path) -> None:
    data = discover(lab, "--all", "-i", str(tmp_path / "none.yaml"))
    hosts = data["hosts"]
    assert isinstance(hosts, list)
    pis = {n.ip for n in lab.nodes}
    decoys = {d["ip"]: d for d in lab.status()["decoys"]}
    by_addr = {h["address"]: h for h in hosts}
    assert set(by_addr) == pis | set(decoys)
    for ip, d in decoys.items():
        assert by_addr[ip]["kind"] == "other", by_addr[ip]
    # The laptop announces exactly what a Pi does; only its MAC gives it away.
    laptop = next(by_addr[ip] for ip, d in decoys.items() if d["kind"] == "laptop")
    assert laptop["mac"] == next(d["mac"] for d in decoys.values() if d["kind"] == "laptop")
    assert "_workstation._tcp" in laptop["services"]


def test_add_grows_an_inventory_that_had_only_the_master(lab: Any, tmp_path: Path) -> None:
    inv_path = tmp_path / "inventory.yaml"
    inv_path.write_text(lab.inventory_yaml())
    for n in load(inv_path).workers:
        edit.remove_node(inv_path, n.name)
    master = load(inv_path).master
    assert [n.name for n in load(inv_path).nodes] == [master.name]

    data = discover(lab, "--add", "-i", str(inv_path))
    added = data["added"]
    assert isinstance(added, list) and len(added) == 3
    inv = load(inv_path)
    nodes = {n.ip: n for n in lab.nodes}
    assert inv.master.address == master.address
    assert sorted(w.name for w in inv.workers) == ["rpi-node-1", "rpi-node-2", "rpi-node-3"]
    for w in inv.workers:
        assert w.address in nodes and w.mac == nodes[w.address].mac
    assert {w.address for w in inv.workers} | {master.address} == set(nodes)

    # Everything known now: a second --add changes nothing, and the hosts are marked.
    before = inv_path.read_bytes()
    again = discover(lab, "--add", "-i", str(inv_path))
    assert again["added"] == []
    assert inv_path.read_bytes() == before
    marks = {h["address"]: h["inventory_node"] for h in again["hosts"]}
    assert marks[master.address] == master.name and all(marks.values())


@pytest.fixture(scope="module")
def up_lab(lab_factory: Callable[..., Any]) -> Iterator[Any]:
    """3 fresh Pis for the end-to-end check (provisioning changes them: not shared)."""
    lb = lab_factory("discup", nodes=3)
    try:
        lb.wait_mdns()
        yield lb
    finally:
        lb.down()


def test_add_then_up_builds_the_cluster(up_lab: Any, tmp_path: Path) -> None:
    """The issue's user story: an inventory with only the master, `discover --add`, `piprov up`."""
    inv_path = tmp_path / "inventory.yaml"
    inv_path.write_text(up_lab.inventory_yaml())
    for n in load(inv_path).workers:
        edit.remove_node(inv_path, n.name)
    added = discover(up_lab, "--add", "-i", str(inv_path))["added"]
    assert len(added) == 2
    p = subprocess.run([PIPROV, "up", "-i", str(inv_path)], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    kc = kubeconfig_of(inv_path, tmp_path / "kubeconfig")
    deadline = time.monotonic() + 180
    ready: dict[str, bool] = {}
    while time.monotonic() < deadline:
        k = subprocess.run([up_lab.kubectl, "--kubeconfig", str(kc), "get", "nodes", "-o", "json"], capture_output=True,
                           text=True, timeout=60)
        if k.returncode == 0:
            items = json.loads(k.stdout)["items"]
            ready = {
                i["metadata"]["name"]: any(c["type"] == "Ready" and c["status"] == "True" for c in i["status"].get("conditions", []))
                for i in items
            }
            if len(ready) == 3 and all(ready.values()):
                return
        time.sleep(2)
    raise AssertionError(f"nodes not Ready after discover --add + up: {ready}")


# -- issue 15: hostile answers, Raspberry Pi OS, discovery right after boot ---------------------------------


@pytest.fixture(scope="module")
def hostile_lab(lab_factory: Callable[..., Any]) -> Iterator[Any]:
    """The master, a HypriotOS Pi and a Raspberry Pi OS Pi (no services announced), beside four spoofers."""
    lb = lab_factory("hostile", nodes=3, rpios=1,
                     decoy_kinds=("loopback-pi", "spoofed-mac", "six-names", "own-address"))  # fmt: skip
    try:
        lb.wait_decoys()
        yield lb
    finally:
        lb.down()


def test_hostile_answers_do_not_pass_and_add_takes_exactly_the_two(hostile_lab: Any, tmp_path: Path) -> None:
    inv_path = tmp_path / "inventory.yaml"
    inv_path.write_text(hostile_lab.inventory_yaml())
    for n in load(inv_path).workers:
        edit.remove_node(inv_path, n.name)
    master = load(inv_path).master
    nodes = {n.ip: n for n in hostile_lab.nodes}
    decoys = {d["kind"]: d for d in hostile_lab.status()["decoys"]}

    data = discover(hostile_lab, "--add", "-i", str(inv_path))
    pis = {h["address"]: h for h in data["hosts"]}
    assert set(pis) == set(nodes), data
    for ip, h in pis.items():
        assert h["mac"] == nodes[ip].mac and h["mac_checked"] is True
    rpios = pis[hostile_lab.nodes[-1].ip]
    assert rpios["hostname"] == "raspberrypi" and rpios["services"] == ["A record"]

    added = {a["address"] for a in data["added"]}
    assert added == set(nodes) - {master.address}  # exactly the two that are not in the inventory yet
    assert {w.address for w in load(inv_path).workers} == added
    reasons = " | ".join(f"{r['what']}: {r['reason']}" for r in data["not_added"])
    assert "127.0.0.1" in reasons  # loopback-pi: off the subnet
    assert f"but {decoys['spoofed-mac']['ip']} answers ARP as {decoys['spoofed-mac']['mac']}" in reasons
    assert f"{decoys['six-names']['ip']}: 6 names on one address" in reasons
    assert f"this machine's own address {hostile_lab.bridge_ip}" in reasons
    assert "already in the inventory as " + master.name in reasons


def test_discover_right_after_lab_up_lists_every_pi(lab_factory: Callable[..., Any]) -> None:
    """Four Pis that all boot as black-pearl and rename themselves: the first discover after
    `lab up` returns must already list all four, with the defaults. Then twice more, each right
    after every node's avahi starts over (the same rename storm as a shelf powered on together)."""
    lb = lab_factory("discboot", nodes=4)
    try:
        want = {n.ip for n in lb.nodes}
        for attempt in range(3):
            if attempt:
                for n in lb.nodes:
                    lb.exec(n.name, "systemctl restart --no-block avahi-daemon")
            data = discover(lb)
            got = {h["address"] for h in data["hosts"]}
            assert got == want, (attempt, data)
            assert len({h["hostname"] for h in data["hosts"]}) == 4 and data["settled"] is True, (attempt, data)
    finally:
        lb.down()


def test_scan_finds_a_pi_that_announces_nothing(hostile_lab: Any) -> None:
    """With its avahi stopped, the Raspberry Pi OS node answers no mDNS at all: only --scan (port 22
    on the lab's own subnet, bounded) finds it, and the neighbour table's MAC says it is a Pi."""
    quiet = hostile_lab.nodes[-1]
    hostile_lab.exec(quiet.name, "systemctl stop avahi-daemon.socket avahi-daemon.service")
    try:
        without = discover(hostile_lab)
        assert quiet.ip not in {h["address"] for h in without["hosts"]}
        t0 = time.monotonic()
        data = discover(hostile_lab, "--scan")
        assert time.monotonic() - t0 < 60
        found = {h["address"]: h for h in data["hosts"]}
        assert set(found) == {n.ip for n in hostile_lab.nodes}, data  # the decoys run no sshd
        h = found[quiet.ip]
        assert h["services"] == ["ssh banner"] and h["mac"] == quiet.mac and h["kind"] == "pi", h
        assert h["instances"][0].startswith("SSH-2.0-")
    finally:
        hostile_lab.exec(quiet.name, "systemctl start avahi-daemon.service", check=False)
