"""Issue #16 on the lab: from a device on the LAN that is no cluster member, no cluster port serves.

One 2-node lab for the module (pi1 = rpi-master, pi2 = rpi-node-1) that piprov
builds; the outsider (``Lab.outsider_exec``) is a network namespace of its own
on the lab bridge, with the host's curl, openssl and python. The tests run in
file order: cold up, what the outsider and a member reach, an idempotent
re-run, a reboot without piprov.

What the per-node firewall does (templates/piprov-firewall.service.j2) is
tested here for real, and so are the TLS walls of issue #16 (marked ``tls``):
certificates, the secure port, etcd's client-certificate auth, 8080 on
loopback, `piprov kubeconfig` with credentials.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from labkit import LabCluster, wait_for

from piprov_lab.lab import Lab

TLS = pytest.mark.tls
CHAIN = "PIPROV-INPUT"
# The kubelet ports the firewall guards (the template's list, as the outsider sees them).
KUBELET_API, KUBELET_READ_ONLY = 10250, 10255

# Run by the outsider's python: connect to each (host, port), say how it ended.
_PROBE = r"""
import json, socket, sys
out = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        out[target] = "open"
    except ConnectionRefusedError:
        out[target] = "refused"
    except OSError as e:
        out[target] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def cluster(lab_factory: Callable[..., Lab], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    lab = lab_factory("sec", nodes=2)
    inv = tmp_path_factory.mktemp("sec") / "inventory.yaml"
    inv.write_text(lab.inventory_yaml())
    yield LabCluster(lab, inv)
    lab.down()


def _connect(c: LabCluster, *targets: str) -> dict[str, str]:
    p = c.lab.outsider_exec([sys.executable, "-c", _PROBE, *targets], timeout=60)
    assert p.returncode == 0, p.stderr
    return dict(json.loads(p.stdout))


def _chain(c: LabCluster, node: str, prog: str = "iptables") -> list[str]:
    return c.lab.exec(node, f"{prog} -w -S {CHAIN}").stdout.splitlines()


def _jumps(c: LabCluster, node: str, prog: str = "iptables") -> int:
    rules = c.lab.exec(node, f"{prog} -w -S INPUT").stdout.splitlines()
    return sum(1 for r in rules if r.split()[-2:] == ["-j", CHAIN])


def _rejected(c: LabCluster, node: str, port: int, prog: str = "iptables") -> int:
    """Packets the chain's REJECT for ``port`` has counted on ``node``."""
    listing = c.lab.exec(node, f"{prog} -w -L {CHAIN} -n -v -x").stdout
    line = next(x for x in listing.splitlines() if f"dpt:{port} " in x + " " and "REJECT" in x)
    return int(line.split()[0])


def _listens(c: LabCluster, node: str, port: int) -> bool:
    return bool(c.lab.exec(node, f"ss -Hltn 'sport = :{port}'", check=False).stdout.strip())


def _member_connects(c: LabCluster, node: str, host: str, port: int) -> bool:
    """A TCP connect from inside ``node`` (no curl in the image: bash's /dev/tcp). The kubelet
    API speaks TLS (and on 1.18 wants a client certificate): the firewall's part is the connect."""
    script = f"timeout 10 bash -c 'exec 3<>/dev/tcp/{host}/{port}' && echo connected"
    return c.lab.exec(node, ["bash", "-c", script], check=False).stdout.strip() == "connected"


def test_cold_up_installs_the_firewall_on_every_node(cluster: LabCluster) -> None:
    c = cluster
    p = c.piprov("up", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout)["ok"]
    members = [n.ip for n in c.lab.nodes]
    for n in c.lab.nodes:
        assert c.lab.exec(n.name, "systemctl is-active piprov-firewall.service").stdout.strip() == "active"
        rules = _chain(c, n.name)
        assert f"-A {CHAIN} -i lo -j RETURN" in rules
        for ip in members:
            assert f"-A {CHAIN} -s {ip}/32 -j RETURN" in rules, rules
        assert any("--dport 10250" in r and "REJECT" in r for r in rules), rules
        assert _jumps(c, n.name) == 1
        if c.lab.exec(n.name, "test -e /proc/net/if_inet6", check=False).returncode == 0:
            assert _jumps(c, n.name, "ip6tables") == 1
            assert not any(" -s " in r for r in _chain(c, n.name, "ip6tables"))


def test_the_outsider_is_refused_the_kubelet_ports(cluster: LabCluster) -> None:
    c = cluster
    for n in c.lab.nodes:
        # The kubelet does listen: the refusal is the firewall's, not a closed port's.
        wait_for(f"the kubelet on {n.name} listening on {KUBELET_API}", lambda: _listens(c, n.name, KUBELET_API), 60)
    before = {n.name: _rejected(c, n.name, KUBELET_API) for n in c.lab.nodes}
    targets = [f"{n.ip}:{port}" for n in c.lab.nodes for port in (KUBELET_API, KUBELET_READ_ONLY)]
    got = _connect(c, *targets)
    assert got == {t: "refused" for t in targets}
    for n in c.lab.nodes:
        assert _rejected(c, n.name, KUBELET_API) > before[n.name], n.name


def test_over_ipv6_the_outsider_is_refused_too(cluster: LabCluster) -> None:
    # A Go server on 0.0.0.0 listens on [::] as well: the link-local address is a way in.
    c = cluster
    worker = c.lab.nodes[1]
    found = re.search(r"inet6 (fe80::[0-9a-f:]+)/", c.lab.exec(worker.name, "ip -6 -o addr show dev eth0 scope link",
                                                            check=False).stdout)
    if found is None:
        pytest.skip("the node has no IPv6 link-local address")
    before = _rejected(c, worker.name, KUBELET_API, "ip6tables")
    target = f"{found.group(1)}%eth0:{KUBELET_API}"

    def answer() -> str | None:
        # The outsider's own link-local address is tentative for a moment after its namespace
        # is made (duplicate address detection): until then a connect cannot bind (errno 99).
        got = _connect(c, target)[target]
        return None if "Errno 99" in got else got

    assert wait_for("the outsider's IPv6 link-local address", answer, 20) == "refused"
    assert _rejected(c, worker.name, KUBELET_API, "ip6tables") > before


def test_a_member_still_reaches_the_kubelet_api(cluster: LabCluster) -> None:
    c = cluster
    master, worker = c.lab.nodes
    # The worker reaches the master's kubelet, the master the worker's (the apiserver's
    # logs/exec path), and each its own through loopback.
    for src, dst in ((worker, master), (master, worker), (master, master)):
        assert _member_connects(c, src.name, dst.ip, KUBELET_API), (src.name, dst.name)


def test_status_says_what_only_the_firewall_guards(cluster: LabCluster) -> None:
    p = cluster.piprov("status", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    guarded = json.loads(p.stdout)["firewalled"]
    assert len(guarded) == 1 and "10250" in guarded[0] and "piprov-firewall" in guarded[0], guarded


def test_ssh_stays_open_to_the_lan(cluster: LabCluster) -> None:
    c = cluster
    master = c.lab.nodes[0]
    # The firewall guards only the ports that cannot authenticate: SSH answers the outsider
    # (the secure port 6443 too: test_tls_apiserver_says_401_without_a_client_certificate).
    assert _connect(c, f"{master.ip}:22")[f"{master.ip}:22"] == "open"


@TLS
def test_tls_etcd_gives_no_plaintext_answer_to_the_outsider(cluster: LabCluster) -> None:
    master = cluster.lab.nodes[0]
    p = cluster.lab.outsider_exec(["curl", "-sS", "-m", "10", f"http://{master.ip}:4001/version"])
    assert p.returncode != 0 or "etcd" not in p.stdout.lower(), p.stdout


@TLS
def test_tls_etcd_handshake_fails_without_a_client_certificate(cluster: LabCluster) -> None:
    master = cluster.lab.nodes[0]
    p = cluster.lab.outsider_exec(["curl", "-sS", "-k", "-m", "10", f"https://{master.ip}:4001/version"])
    assert p.returncode != 0, p.stdout
    # The server spoke TLS: curl got past the connect (7 would be "could not connect").
    assert p.returncode in (35, 56), (p.returncode, p.stderr)


@TLS
def test_tls_apiserver_says_401_without_a_client_certificate(cluster: LabCluster) -> None:
    master = cluster.lab.nodes[0]
    p = cluster.lab.outsider_exec(["curl", "-sS", "-k", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
                                   f"https://{master.ip}:6443/api/v1/nodes"])
    assert p.stdout.strip() == "401", (p.stdout, p.stderr)


@TLS
def test_tls_no_insecure_apiserver_port_on_the_lan(cluster: LabCluster) -> None:
    master = cluster.lab.nodes[0]
    assert _connect(cluster, f"{master.ip}:8080")[f"{master.ip}:8080"] == "refused"


@TLS
def test_tls_kubectl_with_piprov_kubeconfig_lists_every_node_ready(cluster: LabCluster, tmp_path: Path) -> None:
    c = cluster
    config = tmp_path / "kubeconfig"
    p = c.piprov("kubeconfig", "-o", str(config), "--use")
    assert p.returncode == 0, p.stderr
    assert config.stat().st_mode & 0o777 == 0o600
    text = config.read_text()
    # The CA and the admin's credentials, embedded; the secure port, not 8080.
    for key in ("certificate-authority-data", "client-certificate-data", "client-key-data"):
        assert key in text, key
    assert f"server: https://{c.lab.nodes[0].ip}:6443" in text
    out = c.lab.outsider_exec([c.lab.kubectl, "--kubeconfig", str(config), "--cache-dir", str(tmp_path / "cache"),
                               "get", "nodes", "--no-headers"])
    assert out.returncode == 0, out.stderr
    ready = {line.split()[0] for line in out.stdout.splitlines() if re.search(r"\sReady[\s,]", line)}
    assert ready == {n.ip for n in c.lab.nodes}, out.stdout


def _firewall_started(c: LabCluster, node: str) -> str:
    return c.lab.exec(node, "systemctl show -p ActiveEnterTimestampMonotonic piprov-firewall.service").stdout


def test_a_rerun_plans_no_change_and_keeps_the_rules(cluster: LabCluster) -> None:
    c = cluster
    before = {n.name: (_chain(c, n.name), _firewall_started(c, n.name)) for n in c.lab.nodes}
    p = c.piprov("up", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout)["changed"] is False
    assert c.piprov("plan").returncode == 0
    for n in c.lab.nodes:
        assert (_chain(c, n.name), _firewall_started(c, n.name)) == before[n.name]
        assert _jumps(c, n.name) == 1


def test_the_rules_come_back_after_a_reboot_without_piprov(cluster: LabCluster) -> None:
    c = cluster
    worker = c.lab.nodes[1]
    rules = _chain(c, worker.name)
    c.lab.reboot(worker.name)
    c.lab.wait_booted(worker.name, timeout=120)
    wait_for("piprov-firewall.service active after the reboot", lambda: c.lab.exec(
        worker.name, "systemctl is-active piprov-firewall.service", check=False).stdout.strip() == "active", 60)
    assert _chain(c, worker.name) == rules
    assert _jumps(c, worker.name) == 1
    wait_for(f"the kubelet back on {worker.name}", lambda: _listens(c, worker.name, KUBELET_API), 180, 2)
    target = f"{worker.ip}:{KUBELET_API}"
    assert _connect(c, target) == {target: "refused"}
    assert _member_connects(c, c.lab.nodes[0].name, worker.ip, KUBELET_API)
