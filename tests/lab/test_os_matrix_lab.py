"""A mixed fleet (issue 14): `piprov check` and `piprov up` on one node of each Debian release and
each flavour the lab has, a reboot of every node, and a second `up` that changes nothing.

pi1 (rpi-master) bookworm with the 2016 HypriotOS card (occidentalis.txt); pi2 bullseye (systemd
247, coreutils 8.32, docker 20.10.5) as HypriotOS 1.7-1.12: /boot/user-data read at every boot by a
real cloud-init (which renders /etc/hosts from it: manage_etc_hosts); pi3 trixie (systemd
257, coreutils 9.7, docker 26.1.5) as Raspberry Pi OS made in Imager: /boot/firmware, user ada,
Docker's install-script drop-in. The first boot of a release builds its image (~40 s each, cached).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Callable

import pytest
from labkit import LabCluster, wait_for

from piprov_lab.lab import Lab

pytestmark = pytest.mark.lab

RELEASES = {"pi1": ("bookworm", "12."), "pi2": ("bullseye", "11."), "pi3": ("trixie", "13.")}
FLAVOURS = {"pi1": "hypriot-2016", "pi2": "hypriot-cloud-init", "pi3": "raspios"}
NAMES = {"pi1": "rpi-master", "pi2": "rpi-node-1", "pi3": "rpi-node-2"}
DROPIN = "/etc/systemd/system/docker.service.d/overlay.conf"
# Verbatim what Docker's install script wrote on Raspbian from docker/docker-install 685f4e4
# (2016-08-13, install.sh:391-394) until 4ff4ccc (2016-09-01): its dockerd, none of piprov's flags.
DROPIN_TEXT = "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd --storage-driver overlay -H fd://\n"
# Where each card keeps its name, and the name running now.
NAMES_SH = ("hostname; cat /etc/hostname; echo; cat /boot/occidentalis.txt /boot/user-data 2>/dev/null "
            "| grep '^hostname'; grep '^127.0.1.1' /etc/hosts")


def _ready(c: LabCluster) -> bool:
    p = c.kubectl("get", "nodes", "-o", "json")
    conds = [{x["type"]: x["status"] for x in n["status"].get("conditions", [])} for n in
             (json.loads(p.stdout)["items"] if p.returncode == 0 else [])]
    return len(conds) == 3 and all(x.get("Ready") == "True" for x in conds)


def _names_kept(lab: Lab) -> None:
    for node, name in NAMES.items():
        out = lab.exec(node, NAMES_SH, check=False).stdout
        assert out.split("\n", 1)[0] == name, (node, out)
        assert "black-pearl" not in out and "raspberrypi" not in out, (node, out)
        # (cloud-init's hosts template writes "127.0.1.1 FQDN NAME")
        assert any(ln.split()[0] == "127.0.1.1" and name in ln.split()[1:]
                   for ln in out.splitlines() if ln.strip()), (node, out)


def test_a_mixed_fleet_is_checked_comes_up_and_survives_a_reboot_of_every_node(
    lab_factory: Callable[..., Lab], tmp_path: Path
) -> None:
    lab = lab_factory("osm", nodes=3, releases=[r for r, _ in RELEASES.values()], flavours=list(FLAVOURS.values()))
    nodes: list[dict[str, object]] = lab.status()["nodes"]  # type: ignore[assignment]
    assert {n["name"]: n["os"] for n in nodes} == {k: r for k, (r, _) in RELEASES.items()}
    assert {n["name"]: n["user"] for n in nodes} == {"pi1": "pirate", "pi2": "pirate", "pi3": "ada"}
    for node, (_, version) in RELEASES.items():
        assert lab.exec(node, "cat /etc/debian_version").stdout.startswith(version)
    # The cloud-init card: cloud-init ran at boot and named the node from /boot/user-data.
    assert "status: done" in lab.exec("pi2", "cloud-init status --wait").stdout
    assert lab.exec("pi2", "hostname").stdout.strip() == "black-pearl"
    # The raspios card as Imager leaves it: no HypriotOS files, no pirate, the boot partition moved.
    card = lab.exec("pi3", "ls /boot /boot/firmware; id -un ada; id pirate 2>&1 || true; cat /boot/cmdline.txt").stdout
    assert "occidentalis.txt" not in card and "device-init.yaml" not in card and "no such user" in card, card
    assert "cmdline.txt" in card and "config.txt" in card and "moved to /boot/firmware/cmdline.txt" in card, card
    # ... on which Docker was once installed with get.docker.com, and daemon.json got a key of its own.
    lab.exec("pi3", f"mkdir -p {DROPIN.rsplit('/', 1)[0]} && cat > {DROPIN}", input=DROPIN_TEXT)
    daemon_json = lab.exec("pi3", "cat /etc/docker/daemon.json").stdout
    lab.exec("pi3", "cat > /etc/docker/daemon.json", input=json.dumps(dict(json.loads(daemon_json), mtu=1400)))
    inv = tmp_path / "inventory.yaml"
    inv.write_text(lab.inventory_yaml())
    c = LabCluster(lab, inv)

    # piprov check: a table naming each node's findings, and the same as --json; nothing changed.
    table = c.piprov("check")
    assert table.returncode in (0, 3), table.stderr[-2000:]
    for name in NAMES.values():
        assert name in table.stdout, table.stdout[-3000:]
    p = c.piprov("check", "--json")
    assert p.returncode == table.returncode, p.stderr[-2000:]
    checked = {n["node"]: n for n in json.loads(p.stdout)["nodes"]}
    assert set(checked) == set(NAMES.values()) and all(n["error"] is None for n in checked.values())
    memory = {name: next(f for f in n["findings"] if f["code"] == "cgroup.memory") for name, n in checked.items()}
    assert "/boot/firmware/cmdline.txt" in memory["rpi-node-2"]["detail"], memory["rpi-node-2"]
    assert {n["facts"]["versions"]["systemd"].split(".")[0] for n in checked.values()} >= {"247", "257"}, checked

    # Both are drift on the raspios node. daemon.json is the user's file: `up` names file and key and
    # changes nothing there; once the key is gone, `up` removes the drop-in (piprov's own settings only).
    up = c.piprov("up")
    text = " ".join(up.stderr.split())
    assert up.returncode == 1 and "rpi-node-2: /etc/docker/daemon.json: key 'mtu'" in text, up.stderr[-3000:]
    assert lab.exec("pi3", f"cat {DROPIN}").stdout == DROPIN_TEXT
    lab.exec("pi3", "cat > /etc/docker/daemon.json", input=daemon_json)
    plan = c.piprov("plan", "--json")
    assert plan.returncode == 2, plan.stderr[-2000:]
    node = next(n for n in json.loads(plan.stdout)["nodes"] if n["node"] == "rpi-node-2")
    docker = next(x for x in node["components"] if x["component"] == "docker")
    assert [r["path"] for r in docker["removed"]] == [DROPIN], docker
    up = c.piprov("up")
    assert up.returncode == 0, up.stderr[-3000:]
    wait_for("every node Ready", lambda: _ready(c), 60)
    assert lab.exec("pi3", f"test ! -e {DROPIN} && ps -o args= -C dockerd").stdout.count("--bridge=cbr0") == 1
    # A container of the main daemon gets its address from the node's flannel subnet.
    subnet = lab.exec("pi3", "sed -n 's/^FLANNEL_SUBNET=//p' /etc/kubernetes/subnet.env").stdout.strip()
    probe = lab.exec("pi3", "img=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep pause | head -n 1) && "
                            "docker run -d --name piprov-probe \"$img\" >/dev/null && "
                            "docker inspect -f '{{.NetworkSettings.IPAddress}}' piprov-probe; "
                            "docker rm -f piprov-probe >/dev/null").stdout.strip()
    assert probe and ipaddress.ip_address(probe) in ipaddress.ip_network(subnet, strict=False), (probe, subnet)
    _names_kept(lab)
    plan = c.piprov("plan")
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]

    # Every node rebooted (one at a time, as a shelf is power-cycled): Ready again, names kept, no change.
    for node in NAMES:
        lab.reboot(node)
    # The boots done (every unit started: Ready alone can be the stale status of before the reboot).
    for node in NAMES:
        lab.exec(node, "systemctl is-system-running --wait || true", timeout=180)
    wait_for("every node Ready after the reboots", lambda: _ready(c), 180)
    _names_kept(lab)
    again = c.piprov("up", "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads(again.stdout)
    assert report.get("changed") is False, [(s["node"], s["component"], s["status"], s.get("detail"))
                                            for s in report.get("steps", []) if s["status"] != "unchanged"]

    # A node keeps its release and its card's flavour through a power cut and a re-flash.
    lab.kill("pi2")
    lab.start("pi2")
    lab.replace("pi3")
    for node in ("pi2", "pi3"):
        assert lab.exec(node, "cat /etc/debian_version").stdout.startswith(RELEASES[node][1])
    assert lab.exec("pi2", "test -e /boot/user-data && id -un pirate").returncode == 0
    assert lab.exec("pi3", "id -un ada && test -e /boot/firmware/config.txt -a ! -e /boot/occidentalis.txt").returncode == 0
