"""The virtual Pi lab itself, on a real lab (issue 3's "Done when").

Read-only checks use the session's shared lab (3 nodes + 2 decoys); anything
that breaks nodes runs on a lab of its own.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Callable

import paramiko
import pytest
import yaml
from zeroconf import ServiceBrowser, ServiceListener, Zeroconf

from piprov_lab import image, net, system
from piprov_lab.errors import LabError
from piprov_lab.lab import PI_OUIS, Lab, NodeCommandError

pytestmark = pytest.mark.lab

LabFactory = Callable[..., Lab]


def _ssh(lab: Lab, ip: str, **auth: str) -> paramiko.SSHClient:
    c = paramiko.SSHClient()
    c.load_host_keys(str(lab.lab_known_hosts))  # the lab's own pins: they follow `replace`
    c.set_missing_host_key_policy(paramiko.RejectPolicy())  # strict: pinned keys only
    c.connect(ip, username="pirate", look_for_keys=False, allow_agent=False, timeout=10, **auth)  # type: ignore[arg-type]
    return c


def _run(c: paramiko.SSHClient, cmd: str) -> tuple[int, str]:
    _, out, _ = c.exec_command(cmd, timeout=30)
    text = out.read().decode()
    return out.channel.recv_exit_status(), text


# ------------------------------------------------------------------ shared lab


def test_nodes_look_like_fresh_pis(lab: Lab) -> None:
    nodes = lab.nodes
    assert [n.name for n in nodes] == ["pi1", "pi2", "pi3"]
    assert all(n.running for n in nodes)
    assert all(n.mac[:8] in PI_OUIS for n in nodes)
    assert len({n.mac for n in nodes}) == len({n.ip for n in nodes}) == 3
    for n in nodes:
        assert system.ssh_banner(n.ip), f"{n.name}: sshd does not answer"
    # No route out of the lab: only the lab /24 and multicast.
    routes = lab.exec("pi1", ["ip", "-4", "route"]).stdout
    assert "default" not in routes
    # Agentless: no python on the Pi.
    assert lab.exec("pi1", "command -v python3", check=False).returncode != 0


def test_each_node_has_a_cgroup_tree_of_its_own(lab: Lab) -> None:
    # As a Pi has. A shared one let one node's systemd remove a unit's cgroup from
    # under the same unit on another node (219/CGROUP between two ExecStart lines).
    roots = set()
    for n in lab.nodes:
        assert n.pid1 is not None
        lines = Path(f"/proc/{n.pid1}/cgroup").read_text().splitlines()  # as the host sees it
        tracked = [ln.split(":", 2)[2] for ln in lines if ":name=systemd:" in ln or ln.startswith("0::")]
        assert tracked and all(t.endswith("/init.scope") for t in tracked), lines
        roots.update(tracked)
    assert len(roots) == len(lab.nodes), roots  # the same path in each hierarchy, one per node


def test_ssh_password_key_and_sudo(lab: Lab) -> None:
    for n in lab.nodes:
        for auth in ({"password": "hypriot"}, {"key_filename": str(lab.identity_file)}):
            c = _ssh(lab, n.ip, **auth)
            try:
                rc, out = _run(c, "id -un; sudo -n true && echo sudo-ok")
            finally:
                c.close()
            assert rc == 0 and out.split() == ["pirate", "sudo-ok"], (n.name, auth, out)


def test_host_keys_are_per_node_and_pinned(lab: Lab) -> None:
    lines = lab.known_hosts.read_text().split("\n")
    keys = {ln.split()[0]: ln.split()[2] for ln in lines if ln.strip()}
    assert set(keys) == {n.ip for n in lab.nodes}
    assert len(set(keys.values())) == 3, "nodes share a host key"
    # piprov's pins (the inventory's) and the lab's own agree until a node is replaced.
    assert sorted(lab.lab_known_hosts.read_text().splitlines()) == sorted(ln for ln in lines if ln.strip())


def test_occidentalis_holds_hostname(lab: Lab) -> None:
    for n in lab.nodes:
        txt = lab.exec(n.name, ["cat", "/boot/occidentalis.txt"]).stdout
        assert re.search(r"^hostname=black-pearl$", txt, re.M)
        assert lab.exec(n.name, ["hostname"]).stdout.strip() == "black-pearl"
        assert re.search(r"^127\.0\.1\.1\s+black-pearl$", lab.exec(n.name, ["cat", "/etc/hosts"]).stdout, re.M)


def test_zeroconf_sees_every_node_and_the_decoys(lab: Lab) -> None:
    macs = {n.mac for n in lab.nodes}
    found: dict[str, str] = {}

    class Listener(ServiceListener):
        def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            found[name] = type_

        def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            found[name] = type_

        def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            found.pop(name, None)

    def pi_names() -> dict[str, str]:
        # "<host> [<mac>]._workstation._tcp.local." as avahi publishes it; other
        # labs on this machine may be heard too, so keep only our MACs.
        out = {}
        for name, t in list(found.items()):
            m = re.match(r"^(.*) \[([0-9a-f:]{17})\]\._workstation", name)
            if t.startswith("_workstation") and m and m.group(2) in macs:
                out[m.group(2)] = m.group(1)
        return out

    settled = lab.wait_mdns()
    assert len(set(settled.values())) == 3
    zc = Zeroconf(interfaces=[lab.bridge_ip])
    try:
        listener = Listener()
        browsers = [ServiceBrowser(zc, t, listener) for t in
                    ("_workstation._tcp.local.", "_ssh._tcp.local.", "_ipp._tcp.local.")]  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            names = pi_names()
            decoys = [n for n in found if "Brother" in n or "alices-laptop" in n]
            # Renames settle a few seconds after boot: wait for 3 distinct names.
            if len(names) == 3 and len(set(names.values())) == 3 and len(decoys) >= 2:
                break
            time.sleep(0.5)
        for b in browsers:
            b.cancel()
    finally:
        zc.close()
    names = pi_names()
    assert set(names) == macs, found
    assert len(set(names.values())) == 3, f"collisions not renamed: {names}"
    assert all(v.startswith("black-pearl") for v in names.values())
    assert any(t.startswith("_ipp") and "Brother" in n for n, t in found.items()), found
    assert any("alices-laptop" in n and t.startswith("_workstation") for n, t in found.items()), found
    # The lab reports the same names avahi holds.
    assert {f"{v}.local" for v in names.values()} == {n.mdns_name for n in lab.nodes}


def test_both_docker_daemons_run_containers(lab: Lab) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add("/bin/busybox", arcname="bin/busybox")
        for applet in ("sh", "echo", "cat"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    lab.put_file("pi2", "/root/busybox.tar", buf.getvalue())
    bootstrap = "docker -H unix:///var/run/docker-bootstrap.sock"
    script = f"""
    set -e
    dockerd -H unix:///var/run/docker-bootstrap.sock -p /var/run/docker-bootstrap.pid \
      --data-root=/var/lib/docker-bootstrap --exec-root=/var/run/docker-bootstrap \
      --iptables=false --ip-masq=false --bridge=none >/root/bootstrap.log 2>&1 &
    dockerd >/root/main.log 2>&1 &
    for i in $(seq 100); do {bootstrap} info >/dev/null 2>&1 && docker info >/dev/null 2>&1 && break; sleep 0.1; done
    {bootstrap} info --format 'bootstrap {{{{.Driver}}}} {{{{.CgroupDriver}}}}'
    docker info --format 'main {{{{.Driver}}}} {{{{.CgroupDriver}}}}'
    {bootstrap} import /root/busybox.tar bb >/dev/null
    docker import /root/busybox.tar bb >/dev/null
    {bootstrap} run --rm --net=host bb /bin/echo ran-in-bootstrap
    docker run --rm bb /bin/echo ran-in-main
    """
    try:
        out = lab.exec("pi2", script, timeout=120).stdout
    finally:
        lab.exec("pi2", "kill $(cat /var/run/docker-bootstrap.pid) $(cat /var/run/docker.pid) 2>/dev/null; "
                        "for i in $(seq 100); do pgrep -x dockerd >/dev/null || break; sleep 0.1; done",
                 check=False)  # fmt: skip
    # Stopped again: piprov provisions the daemons later, the lab does not run them.
    assert lab.exec("pi2", ["pgrep", "-x", "dockerd"], check=False).returncode == 1
    assert "bootstrap overlay2 cgroupfs" in out
    assert "main overlay2 cgroupfs" in out
    assert "ran-in-bootstrap" in out and "ran-in-main" in out
    # /var/lib/docker lives off the overlay (docker's overlay2 cannot nest on overlayfs).
    fstypes = lab.exec("pi2", ["stat", "-f", "-c", "%T", "/var/lib/docker", "/var/lib/docker-bootstrap"]).stdout
    assert "overlay" not in fstypes


def test_registry_answers_from_the_host_and_the_nodes(lab: Lab) -> None:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the bridge, never a proxy
    with opener.open(f"http://{lab.registry}/v2/", timeout=5) as r:
        assert r.status == 200
    assert lab.registry.startswith(lab.bridge_ip + ":")
    host, port = lab.registry.split(":")
    for n in lab.nodes:
        # No curl on a fresh Pi image: bash's /dev/tcp speaks plain HTTP well enough.
        out = lab.exec(n.name, ["bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}; "
                                "printf 'GET /v2/ HTTP/1.0\\r\\n\\r\\n' >&3; head -n 1 <&3"]).stdout  # fmt: skip
        assert out.startswith("HTTP/1.0 200") or out.startswith("HTTP/1.1 200"), (n.name, out)
        assert lab.exec(n.name, ["getent", "hosts", "piprov-registry"]).stdout.split()[0] == host


def test_inventory_points_at_the_lab(lab: Lab, lab_inventory: Path) -> None:
    from piprov.inventory import load

    inv = load(lab_inventory)
    assert inv.master.name == "rpi-master" and inv.master.address == lab.nodes[0].ip
    assert [w.address for w in inv.workers] == [n.ip for n in lab.nodes[1:]]
    data = yaml.safe_load(lab_inventory.read_text())
    assert data["ssh"]["host_key_policy"] == "strict"
    assert data["images"]["insecure_registries"] == [lab.registry]


def test_a_second_process_sees_the_lab(lab: Lab) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from piprov.cli import main; main()", "lab", "status", "--json", "--name", lab.name],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [n["ip"] for n in data["nodes"]] == [n.ip for n in lab.nodes]
    assert all(n["sshd"] for n in data["nodes"])
    assert {d["kind"] for d in data["decoys"]} == {"printer", "laptop"}


def test_bad_requests_change_nothing(lab: Lab) -> None:
    before = Path(lab.dir / "state.json").read_text()
    with pytest.raises(LabError, match="already up"):
        lab.up(nodes=1)
    with pytest.raises(LabError, match="no node 'pi9'"):
        lab.exec("pi9", "true")
    with pytest.raises(NodeCommandError) as e:
        lab.exec("pi1", "echo oops >&2; exit 3")
    assert e.value.result.returncode == 3 and "oops" in str(e.value)
    assert Path(lab.dir / "state.json").read_text() == before


# --------------------------------------------------------------- preconditions


def test_not_root_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        Lab("nobody").up()
    assert not Lab("nobody").is_up


def test_missing_tool_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "_which", lambda tool: None if tool == "systemd-nspawn" else "/bin/true")
    with pytest.raises(LabError) as e:
        Lab("notools").up()
    assert "systemd-nspawn" in str(e.value) and e.value.hint and "systemd-container" in e.value.hint
    assert not Lab("notools").is_up


def test_half_built_cache_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(image, "CACHE_ROOT", tmp_path)
    half = image.base_path()
    (half / "usr/lib/systemd").mkdir(parents=True)
    with pytest.raises(LabError, match="half-built"):
        image.ensure_base()
    assert half.exists() and not (half / image.STAMP).exists()  # left for the user to inspect


# ------------------------------------------------------------- breaking nodes


@pytest.fixture(scope="module")
def fault_lab(lab_factory: LabFactory) -> Lab:
    return lab_factory("fault", nodes=2)


def test_kill_then_start_keeps_the_disk(fault_lab: Lab) -> None:
    lab = fault_lab
    lab.exec("pi2", "echo survived > /root/marker && sync")
    lab.kill("pi2")
    assert not lab.node("pi2").running
    assert not system.ssh_banner(lab.node("pi2").ip)
    with pytest.raises(LabError, match="is not running"):
        lab.exec("pi2", "true")
    lab.start("pi2")
    assert lab.exec("pi2", ["cat", "/root/marker"]).stdout.strip() == "survived"
    c = _ssh(lab, lab.node("pi2").ip, key_filename=str(lab.identity_file))  # same pinned host key
    c.close()


def test_hostname_from_occidentalis_applies_at_reboot(fault_lab: Lab) -> None:
    lab = fault_lab
    old_pid1 = lab.node("pi1").pid1
    lab.put_file("pi1", "/boot/occidentalis.txt", "hostname=rpi-master\n")
    lab.reboot("pi1")
    assert lab.node("pi1").pid1 != old_pid1
    lab.wait_booted("pi1")
    assert lab.exec("pi1", ["hostname"]).stdout.strip() == "rpi-master"
    assert "127.0.1.1\trpi-master" in lab.exec("pi1", ["cat", "/etc/hosts"]).stdout
    c = _ssh(lab, lab.node("pi1").ip, password="hypriot")
    try:
        t0 = time.monotonic()
        rc, _ = _run(c, "sudo -n true")
        # sudo resolves the hostname; an unresolvable one stalls it ~20 s.
        assert rc == 0 and time.monotonic() - t0 < 10
    finally:
        c.close()


def _sshd_answers_again(ip: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not system.ssh_banner(ip) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert system.ssh_banner(ip)


def test_partition_cuts_and_restores_the_link(fault_lab: Lab) -> None:
    lab = fault_lab
    ip = lab.node("pi2").ip
    lab.partition("pi2", True)
    try:
        assert lab.node("pi2").running and lab.node("pi2").partitioned
        assert not system.ssh_banner(ip, timeout=1)
    finally:
        lab.partition("pi2", False)
    _sshd_answers_again(ip)


def test_address_can_come_late_at_boot(fault_lab: Lab) -> None:
    """A late DHCP address (HypriotOS' `allow-hotplug eth0`): the node boots and reaches
    network-online.target without its address; set_address gives it afterwards."""
    lab = fault_lab
    ip = lab.node("pi2").ip
    old_pid1 = lab.node("pi2").pid1
    lab.set_address("pi2", False)
    try:
        lab.reboot("pi2", wait=False)
        deadline = time.monotonic() + 30  # wait=False may return before nspawn's new PID 1 exists
        while lab.node("pi2").pid1 in (None, old_pid1) and time.monotonic() < deadline:
            time.sleep(0.1)
        lab.wait_booted("pi2")
        online = lab.exec("pi2", "systemctl start network-online.target && systemctl is-active network-online.target")
        assert online.stdout.strip() == "active"
        assert f" {ip}/" not in lab.exec("pi2", "ip -4 -o addr show dev eth0").stdout
        assert "LOWER_UP" in lab.exec("pi2", "ip link show dev eth0").stdout  # the cable is in
        assert not system.ssh_banner(ip, timeout=1)
    finally:
        lab.set_address("pi2", True)
    _sshd_answers_again(ip)
    assert "224.0.0.0/4 dev eth0" in lab.exec("pi2", "ip route").stdout  # mDNS works again
    lab.set_address("pi2", True)  # idempotent


def test_netem_rtt_delays_ssh_and_can_be_removed(fault_lab: Lab) -> None:
    lab = fault_lab
    ip = lab.node("pi1").ip

    def banner_seconds() -> float:
        t0 = time.monotonic()
        with socket.create_connection((ip, 22), timeout=5) as s:
            s.recv(64)
        return time.monotonic() - t0

    lab.netem(rtt_ms=200, node="pi1")
    # The banner travels one way: RTT/2 at least (a functional check, not a speed target).
    assert banner_seconds() >= 0.09
    c = _ssh(lab, ip, key_filename=str(lab.identity_file))
    assert _run(c, "echo through-relay")[1].strip() == "through-relay"
    c.close()
    lab.netem(rtt_ms=0, node="pi1")
    assert lab.node("pi1").rtt_ms == 0
    # Best of three: a busy machine can slow one sshd fork, not all of them.
    assert min(banner_seconds() for _ in range(3)) < 0.09


def test_add_node_boots_a_fresh_pi(fault_lab: Lab) -> None:
    lab = fault_lab
    (new,) = lab.add_nodes(1)
    assert new.name == "pi3" and new.inventory_name == "rpi-node-2" and new.running
    assert new.ip in lab.known_hosts.read_text()
    c = _ssh(lab, new.ip, password="hypriot")
    c.close()
    assert "rpi-node-2" in lab.inventory_yaml()


def _served_host_key(ip: str) -> str:
    """The host key sshd at ``ip`` shows, "type base64"."""
    t = paramiko.Transport(socket.create_connection((ip, 22), timeout=10))
    try:
        t.start_client(timeout=10)
        key = t.get_remote_server_key()
        return f"{key.get_name()} {key.get_base64()}"
    finally:
        t.close()


def test_replace_is_a_reflashed_card_piprov_notices(fault_lab: Lab, tmp_path: Path) -> None:
    """`lab replace`: the same MAC, address and cable, a fresh disk and network stack, a new host
    key the lab's own SSH knows and piprov's strict pinning refuses until `node forget-key`."""
    from piprov.errors import HostKeyError
    from piprov.fleet import reach
    from piprov.inventory.load import load
    from piprov.inventory.model import HostKeyPolicy
    from piprov.transport import SshTransport

    lab = fault_lab
    before = lab.node("pi2")
    old_id = lab.exec("pi2", "cat /etc/machine-id").stdout
    lab.exec("pi2", "echo old > /root/marker; mkdir -p /var/lib/kubernetes /var/lib/docker/volumes/v "
             "/var/lib/docker-bootstrap/x; echo hostname=rpi-node-1 > /boot/occidentalis.txt; "
             "ip link add docker0 type bridge")  # fmt: skip
    (inv_path := tmp_path / "inventory.yaml").write_text(lab.inventory_yaml())
    t0 = time.monotonic()
    after = lab.replace("pi2")
    assert time.monotonic() - t0 < 15
    assert (after.ip, after.mac, after.netns, after.running) == (before.ip, before.mac, before.netns, True)
    assert after.host_key != before.host_key and _served_host_key(after.ip) == after.host_key
    gone = "test ! -e /root/marker && test ! -e /var/lib/kubernetes && ! ip link show docker0 2>/dev/null"
    lab.exec("pi2", gone)
    assert lab.exec("pi2", "find /var/lib/docker /var/lib/docker-bootstrap -mindepth 1").stdout == ""
    assert lab.exec("pi2", "hostname").stdout.strip() == "black-pearl"
    assert "hostname=black-pearl" in lab.exec("pi2", "cat /boot/occidentalis.txt").stdout
    assert lab.exec("pi2", "cat /etc/machine-id").stdout not in ("", old_id)
    row = next(n for n in lab.status()["nodes"] if n["name"] == "pi2")  # type: ignore[attr-defined]
    assert (row["ip"], row["mac"], row["sshd"]) == (before.ip, before.mac, True)
    _ssh(lab, after.ip, key_filename=str(lab.identity_file)).close()  # the lab's own SSH: the new key
    assert before.host_key in lab.known_hosts.read_text()  # piprov's: still the old one

    inv = load(inv_path)
    assert inv.known_hosts == lab.known_hosts

    def connect(policy: HostKeyPolicy | None = None) -> None:
        t = SshTransport(inv.node("rpi-node-1"), inv.known_hosts, policy=policy)
        try:
            assert reach(t, timeout=20).ok
        finally:
            t.close()

    with pytest.raises(HostKeyError, match="HOST KEY CHANGED") as e:
        connect(policy="tofu")  # trust on first use never overrides a changed key
    assert e.value.hint and "piprov node forget-key rpi-node-1" in e.value.hint
    forget = subprocess.run([sys.executable, "-m", "piprov", "node", "forget-key", "-i", str(inv_path), "rpi-node-1"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert forget.returncode == 0 and "forgot 1 host key" in forget.stdout, forget.stdout + forget.stderr
    with pytest.raises(HostKeyError, match="is not in"):
        connect()  # strict: an unknown key is not taken without being asked
    connect(policy="tofu")  # what --trust-new-hosts asks for: pins the new key
    assert after.host_key in lab.known_hosts.read_text() and before.host_key not in lab.known_hosts.read_text()
    connect()


# ------------------------------------------------------------------- lab down


def _lab_resources(lab: Lab, netns_prefix: str, link_prefix: str) -> dict[str, list[str]]:
    """Everything of this lab visible on the machine (other labs may be running too)."""
    ns = sorted(x for x in os.listdir("/run/netns") if x.startswith(netns_prefix)) if Path("/run/netns").exists() else []
    links = sorted(x for x in os.listdir("/sys/class/net") if x.startswith(link_prefix))
    mounts = [ln.split()[1] for ln in Path("/proc/self/mounts").read_text().splitlines()
              if ln.split()[1].startswith(str(lab.dir) + "/")]  # fmt: skip
    in_netns = _netns_pids(ns)
    procs = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (str(lab.dir) + "/" in cmd or p.name in in_netns):
            procs.append(f"{p.name} {cmd[:80]}")
    rules = [r for r in subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True, text=True).stdout.splitlines()
             if f"piprov-lab:{lab.name}\"" in r or f"piprov-lab:{lab.name} " in r]  # fmt: skip
    prop = Path("/run/systemd/nspawn/propagate")
    nspawn = sorted(x for x in os.listdir(prop) if x.startswith(f"{lab.name}-")) if prop.exists() else []
    return {"netns": ns, "links": links, "mounts": mounts, "processes": procs, "rules": rules, "nspawn": nspawn}


def _netns_pids(namespaces: list[str]) -> set[str]:
    pids: set[str] = set()
    for ns in namespaces:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        pids.update(out.split())
    return pids


def test_down_leaves_nothing_behind(lab_factory: LabFactory) -> None:
    lab = lab_factory("down", nodes=2, decoys=1, rtt_ms=10)
    netns_prefix = net.netns_name(lab.name, "")
    link_prefix = net.bridge_name(lab.name)
    before = _lab_resources(lab, netns_prefix, link_prefix)
    assert len(before["netns"]) == 3 and len(before["links"]) == 4  # bridge + 3 veths
    assert len(before["mounts"]) == 2 and len(before["processes"]) >= 3
    mine = [h / system.CGROUP_DIR / f"{lab.name}-pi1" for h in system.node_hierarchies()]
    assert mine and all(cg.is_dir() for cg in mine)
    lab.down()
    after = _lab_resources(lab, netns_prefix, link_prefix)
    assert after == {"netns": [], "links": [], "mounts": [], "processes": [], "rules": [], "nspawn": []}, after
    assert not lab.dir.exists() and not lab.is_up
    assert not any(cg.exists() for cg in mine)


def test_down_without_state_still_finds_everything(lab_factory: LabFactory) -> None:
    """After a crash the state file may be gone: down sweeps by the lab's names."""
    lab = lab_factory("lost", nodes=1, decoys=1, rtt_ms=5)
    netns_prefix = net.netns_name(lab.name, "")
    link_prefix = net.bridge_name(lab.name)
    assert _lab_resources(lab, netns_prefix, link_prefix)["processes"]
    (lab.dir / "state.json").unlink()
    assert not lab.is_up
    lab.down()
    after = _lab_resources(lab, netns_prefix, link_prefix)
    assert after == {"netns": [], "links": [], "mounts": [], "processes": [], "rules": [], "nspawn": []}, after
    assert not lab.dir.exists()


def _cpu_cgroup(pid: int) -> str:
    """The process's cgroup in the cpu hierarchy, as the host sees it."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if "cpu" in line.split(":", 2)[1].split(","):
            return line.split(":", 2)[2]
    raise AssertionError(f"no cpu line for {pid}")


def test_cpu_quota_holds_every_process_of_the_node_and_outlives_a_restart(lab_factory: LabFactory) -> None:
    """`lab up --cpu-quota`: whatever a node runs is counted in its own cpu cgroup and capped there,
    also what its systemd puts in units of its own (nspawn's cgroup namespace: the node's
    /sys/fs/cgroup/cpu is its own subtree) and what an SSH session starts."""
    lab = lab_factory("quota", nodes=1, cpu_quota_pct=20)
    machine = f"{lab.name}-pi1"
    cg = system.node_cgroup(machine, "cpu")
    assert cg is not None
    assert (cg / "cpu.cfs_quota_us").read_text().strip() == "2000"
    assert (cg / "cpu.cfs_period_us").read_text().strip() == "10000"
    node = lab.status()["nodes"][0]  # type: ignore[index]
    assert lab.status()["cpu_quota_pct"] == 20 and node["cpu"]["cpu_quota_pct"] == 20.0
    # The node sees its own subtree as the root of the hierarchy.
    assert lab.exec("pi1", "cat /proc/self/cgroup | grep ':cpu:'").stdout.strip().endswith(":cpu:/")
    burn = "while :; do :; done"
    lab.exec("pi1", ["systemd-run", "--unit", "burn-unit", "--property", "Delegate=yes", "sh", "-c", burn])
    c = _ssh(lab, lab.node("pi1").ip, key_filename=str(lab.identity_file))
    try:
        c.exec_command(f"sh -c '{burn}' & sleep 30")
        throttled = int(system.parse_cpu_stat((cg / "cpu.stat").read_text())["nr_throttled"])
        time.sleep(1)
        pids = lab.exec("pi1", "pgrep -f 'while :; do :; done'").stdout.split()
        assert len(pids) >= 2
        host = [int(p) for p in os.listdir("/proc") if p.isdigit()
                and os.path.exists(f"/proc/{p}/cmdline")
                and Path(f"/proc/{p}/cmdline").read_bytes().endswith(burn.encode() + b"\0")]
        assert len(host) >= 2
        for pid in host:
            assert _cpu_cgroup(pid).startswith(f"/{system.CGROUP_DIR}/{machine}"), _cpu_cgroup(pid)
        assert int(system.parse_cpu_stat((cg / "cpu.stat").read_text())["nr_throttled"]) > throttled
    finally:
        c.close()
        lab.exec("pi1", "systemctl stop burn-unit; pkill -f 'while :; do :; done'", check=False)
    lab.kill("pi1")
    lab.start("pi1")
    assert (cg / "cpu.cfs_quota_us").read_text().strip() == "2000"
    assert _cpu_cgroup(lab.node("pi1").pid1 or 0).startswith(f"/{system.CGROUP_DIR}/{machine}")
