"""`piprov discover` against the virtual Pi lab: 4 Pis + a printer and a laptop.

The Pis all boot as black-pearl and avahi renames them on the wire; discovery
must list exactly the 4 Pis by their own addresses and MACs (the decoys only
with --all), and `discover --add` must grow an inventory that started with only
the master, leaving known hosts alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from piprov.inventory import edit, load

pytestmark = pytest.mark.lab

PIPROV = str(Path(sys.executable).with_name("piprov"))


def settle_mdns_names(lab: object, timeout: float = 60.0) -> None:
    """Wait until every node holds a distinct mDNS host name.

    Nodes booted in the same instant can keep colliding in lockstep (avahi's
    per-record tie-break); real Pis are never powered on in the same
    millisecond. If names have not settled after a while, restart avahi node by
    node, a beat apart, as staggered power-ons would.
    """
    deadline = time.monotonic() + timeout
    restarted = False
    start = time.monotonic()
    while time.monotonic() < deadline:
        names = [n.mdns_name for n in lab.nodes]  # type: ignore[attr-defined]
        if all(names) and len(set(names)) == len(names):
            return
        if not restarted and time.monotonic() - start > 10:
            for n in lab.nodes:  # type: ignore[attr-defined]
                lab.exec(n.name, "systemctl restart avahi-daemon")  # type: ignore[attr-defined]
                time.sleep(0.3)
            restarted = True
        time.sleep(0.5)
    raise AssertionError(f"mDNS names did not settle: {[n.mdns_name for n in lab.nodes]}")  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    if os.geteuid() != 0:
        pytest.skip("lab tests need root")
    from piprov_lab.lab import Lab

    lb = Lab(f"invdisc{os.getpid() % 10000}")
    lb.up(nodes=4, decoys=2)
    try:
        settle_mdns_names(lb)
        yield lb
    finally:
        lb.down()


def discover(lab: object, *args: str) -> dict[str, object]:
    argv = [PIPROV, "discover", "--json", "--interface", lab.bridge_ip, *args]  # type: ignore[attr-defined]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    data: dict[str, object] = json.loads(p.stdout)
    return data


def test_lists_exactly_the_pis(lab: object, tmp_path: Path) -> None:
    data = discover(lab, "-i", str(tmp_path / "none.yaml"))
    hosts = data["hosts"]
    assert isinstance(hosts, list)
    nodes = {n.ip: n for n in lab.nodes}  # type: ignore[attr-defined]
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


def test_all_shows_the_decoys_as_other(lab: object, tmp_path: Path) -> None:
    data = discover(lab, "--all", "-i", str(tmp_path / "none.yaml"))
    hosts = data["hosts"]
    assert isinstance(hosts, list)
    pis = {n.ip for n in lab.nodes}  # type: ignore[attr-defined]
    decoys = {d["ip"]: d for d in lab.status()["decoys"]}  # type: ignore[attr-defined]
    by_addr = {h["address"]: h for h in hosts}
    assert set(by_addr) == pis | set(decoys)
    for ip, d in decoys.items():
        assert by_addr[ip]["kind"] == "other", by_addr[ip]
    # The laptop announces exactly what a Pi does; only its MAC gives it away.
    laptop = next(by_addr[ip] for ip, d in decoys.items() if d["kind"] == "laptop")
    assert laptop["mac"] == next(d["mac"] for d in decoys.values() if d["kind"] == "laptop")
    assert "_workstation._tcp" in laptop["services"]


def test_add_grows_an_inventory_that_had_only_the_master(lab: object, tmp_path: Path) -> None:
    inv_path = tmp_path / "inventory.yaml"
    inv_path.write_text(lab.inventory_yaml())  # type: ignore[attr-defined]
    for n in load(inv_path).workers:
        edit.remove_node(inv_path, n.name)
    master = load(inv_path).master
    assert [n.name for n in load(inv_path).nodes] == [master.name]

    data = discover(lab, "--add", "-i", str(inv_path))
    added = data["added"]
    assert isinstance(added, list) and len(added) == 3
    inv = load(inv_path)
    nodes = {n.ip: n for n in lab.nodes}  # type: ignore[attr-defined]
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
    marks = {h["address"]: h["inventory_node"] for h in again["hosts"]}  # type: ignore[union-attr]
    assert marks[master.address] == master.name and all(marks.values())
