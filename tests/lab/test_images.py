"""The seed stack's components on a real 3-node lab, started by hand as the seed's scripts did.

Real etcd on the master's bootstrap docker daemon; the flanneld stand-in on
every node's bootstrap daemon; the main docker daemon on a cbr0 bridge made from
flannel's subnet.env; the hyperkube stand-in's kubelet on every node (the
master's runs apiserver, controller-manager and scheduler from a static
manifest) and proxy. Then Debian's kubectl drives the cluster: nodes Ready, a
busybox httpd RC spread over the workers and reachable across nodes, cordon +
drain (1.1 has no evictions nor budgets: the 1.18 stand-in's 429 is tested in
test_rolling_lab.py), a power cut turning a node NotReady.
piprov itself is not involved: this checks the images piprov will deploy.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from piprov_lab import Lab
from piprov_lab.images import image_refs

pytestmark = pytest.mark.lab

TESTDATA = Path(__file__).resolve().parents[2] / "piprov_lab" / "images" / "testdata"
BOOT = "docker -H unix:///var/run/docker-bootstrap.sock"
GRACE = 20.0


def wait_for(what: str, pred: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - keep polling; report the last failure
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@dataclass
class Cluster:
    lab: Lab
    master: str  # lab node name
    workers: list[str]
    ips: dict[str, str]  # lab node name -> IP
    images: dict[str, str]
    # kubectl caches discovery per host:port for 10 min; labs reuse addresses.
    cache_dir: str = ""

    @property
    def api(self) -> str:
        return f"http://{self.ips[self.master]}:8080"

    def sh(self, node: str, cmd: str, check: bool = True, timeout: float = 120) -> str:
        return self.lab.exec(node, cmd, check=check, timeout=timeout).stdout

    def kubectl(self, *args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.lab.kubectl_argv(self.api, self.cache_dir, *args),
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
        return proc

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def node_ready(self) -> dict[str, str]:
        out = {}
        for n in self.get("nodes")["items"]:
            cond = {c["type"]: c["status"] for c in n["status"].get("conditions", [])}
            out[n["metadata"]["name"]] = cond.get("Ready", "?")
        return out

    def pods(self, selector: str = "app=httpd") -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("pods", "-l", selector)["items"]
        return items


def _start_dockerd(c: Cluster, node: str, unit: str, args: str, sock: str) -> None:
    c.sh(node, f"systemd-run --unit={unit} --collect dockerd {args}")
    wait_for(f"{unit} on {node}", lambda: c.lab.exec(node, f"docker -H unix://{sock} version", check=False).returncode == 0,
             30, 0.2)


def _flannel_run(c: Cluster, node: str) -> None:
    c.sh(node, f"{BOOT} run -d --name flannel --restart=always --net=host --privileged "
               f"-v /run/flannel:/run/flannel -v /dev/net:/dev/net {c.images['flannel']} /opt/bin/flanneld "
               f"--etcd-endpoints=http://{c.ips[c.master]}:4001 --iface={c.ips[node]} --ip-masq")


def _subnet_env(c: Cluster, node: str) -> dict[str, str]:
    text = c.sh(node, "cat /run/flannel/subnet.env")
    return dict(line.split("=", 1) for line in text.split())


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (they boot containers and network namespaces)")
    # Own lab: this module kills a node. PIPROV_TEST_LAB + PIPROV_KEEP_LAB=1 keep it for debugging.
    lab = Lab(os.environ.get("PIPROV_TEST_LAB") or f"t{os.getpid()}-images"[:31])
    if lab.is_up:
        lab.down()
    lab.up(nodes=3)
    try:
        nodes = lab.nodes
        ips = {n.name: n.ip for n in nodes}
        master, workers = nodes[0].name, [n.name for n in nodes[1:]]
        c = Cluster(lab, master, workers, ips, image_refs(lab.registry), str(lab.dir / "kubectl-cache"))
        reg = lab.registry
        for n in nodes:
            # The node image makes docker's default runtime a runc wrapper that lets
            # --privileged containers start on this machine (piprov_lab/images/node/).
            assert "runc-lab" in c.sh(n.name, "cat /etc/docker/daemon.json")
            _start_dockerd(c, n.name, "sx-docker-bootstrap",
                           "-H unix:///var/run/docker-bootstrap.sock -p /var/run/docker-bootstrap.pid "
                           "--data-root=/var/lib/docker-bootstrap --exec-root=/var/run/docker-bootstrap "
                           f"--iptables=false --ip-masq=false --bridge=none --insecure-registry={reg}",
                           "/var/run/docker-bootstrap.sock")
        m = master
        c.sh(m, f"{BOOT} run -d --name etcd --restart=always --net=host -v /var/lib/kubernetes/etcd:/var/etcd/data "
                f"{c.images['etcd']} /usr/local/bin/etcd --name=etcd --data-dir=/var/etcd/data --enable-v2=true "
                f"--listen-client-urls=http://0.0.0.0:4001 --advertise-client-urls=http://{ips[m]}:4001 "
                "--listen-peer-urls=http://127.0.0.1:7001 --initial-advertise-peer-urls=http://127.0.0.1:7001 "
                "--initial-cluster=etcd=http://127.0.0.1:7001")
        wait_for("etcd healthy", lambda: "is healthy" in c.sh(
            m, f"{BOOT} exec etcd etcdctl --endpoints=http://127.0.0.1:4001 endpoint health 2>&1", check=False), 30)
        c.sh(m, f"{BOOT} exec -e ETCDCTL_API=2 etcd etcdctl --endpoints=http://127.0.0.1:4001 set "
                "/coreos.com/network/config "
                "'{\"Network\": \"10.0.0.0/16\", \"SubnetLen\": 24, \"Backend\": {\"Type\": \"host-gw\"}}'")
        for n in nodes:
            _flannel_run(c, n.name)
        for n in nodes:
            env = wait_for(f"subnet.env on {n.name}", lambda n=n: _subnet_env(c, n.name), 30)
            c.sh(n.name, f"ip link add cbr0 type bridge && ip addr add {env['FLANNEL_SUBNET']} dev cbr0 && "
                         f"ip link set cbr0 mtu {env['FLANNEL_MTU']} up")
            # The flags of templates/docker.service.j2 (docker's iptables rules stay on).
            _start_dockerd(c, n.name, "sx-docker", f"--bridge=cbr0 --mtu={env['FLANNEL_MTU']} "
                           f"--ip-masq=false --insecure-registry={reg}", "/var/run/docker.sock")
        manifest = (TESTDATA / "master.json").read_text().replace("{{HYPERKUBE}}", c.images["hyperkube"])
        c.lab.exec(m, "mkdir -p /etc/kubernetes/manifests && cat > /etc/kubernetes/manifests/master.json",
                   input=manifest)
        for n in nodes:
            c.sh(n.name, "mkdir -p /etc/kubernetes/manifests /var/lib/kubelet")
            c.sh(n.name, f"docker run -d --name kubelet --restart=always --net=host --pid=host --privileged "
                         "-v /sys:/sys:ro -v /var/run:/var/run:rw -v /var/lib/docker:/var/lib/docker:rw "
                         "-v /var/lib/kubelet:/var/lib/kubelet:rw -v /etc/kubernetes:/etc/kubernetes:ro "
                         f"{c.images['hyperkube']} /hyperkube kubelet --api-servers=http://{ips[m]}:8080 "
                         f"--hostname-override={n.ip} --config=/etc/kubernetes/manifests --allow-privileged=true "
                         f"--pod-infra-container-image={c.images['pause']} --v=2"
                         + (" --register-schedulable=false" if n.name == m else ""))
            c.sh(n.name, f"docker run -d --name proxy --restart=always --net=host --privileged {c.images['hyperkube']} "
                         f"/hyperkube proxy --master=http://{ips[m]}:8080")
        yield c
    finally:
        if os.environ.get("PIPROV_KEEP_LAB") != "1":
            lab.down()


def test_etcd_is_healthy_and_speaks_v2(cluster: Cluster) -> None:
    c = cluster
    out = c.sh(c.master, f"{BOOT} exec etcd etcdctl --endpoints=http://127.0.0.1:4001 endpoint health 2>&1")
    assert "is healthy" in out
    body = json.loads(urllib.request.urlopen(f"http://{c.ips[c.master]}:4001/v2/keys/coreos.com/network/config",
                                             timeout=5).read())
    assert json.loads(body["node"]["value"])["Backend"]["Type"] == "host-gw"


def test_flannel_leases_distinct_subnets_and_routes(cluster: Cluster) -> None:
    c = cluster
    envs = {n: _subnet_env(c, n) for n in c.ips}
    subnets = {n: e["FLANNEL_SUBNET"] for n, e in envs.items()}
    assert len(set(subnets.values())) == 3, subnets
    for e in envs.values():
        assert e["FLANNEL_NETWORK"] == "10.0.0.0/16" and e["FLANNEL_IPMASQ"] == "true"
        assert re.fullmatch(r"10\.0\.\d+\.1/24", e["FLANNEL_SUBNET"])
    for node in c.ips:
        routes = c.sh(node, "ip -4 route show")
        for other, sub in subnets.items():
            if other != node:
                net = sub.replace(".1/24", ".0/24")
                assert f"{net} via {c.ips[other]}" in routes, (node, routes)


def test_restarted_flannel_keeps_its_subnet(cluster: Cluster) -> None:
    c = cluster
    node = c.workers[0]
    before = _subnet_env(c, node)["FLANNEL_SUBNET"]
    c.sh(node, f"{BOOT} rm -f flannel && rm -f /run/flannel/subnet.env")
    _flannel_run(c, node)
    after = wait_for("subnet.env rewritten", lambda: _subnet_env(c, node), 30)["FLANNEL_SUBNET"]
    assert after == before


def test_every_node_registers_ready(cluster: Cluster) -> None:
    c = cluster
    ready = wait_for("3 Ready nodes", lambda: (lambda r: r if list(r.values()) == ["True"] * 3 else None)(
        c.node_ready()), 90, 1)
    assert set(ready) == set(c.ips.values())
    table = c.kubectl("get", "nodes").stdout
    assert len(re.findall(r"^\S+\s+Ready[\s,]", table, re.M)) == 3, table
    assert f"{c.ips[c.master]}   Ready,SchedulingDisabled" in table, table
    mirror = wait_for("master mirror pod running", lambda: [p for p in c.get("pods", "-n", "kube-system")["items"]
                                                             if p["status"].get("phase") == "Running"], 60)
    assert mirror[0]["spec"]["nodeName"] == c.ips[c.master]
    # kubectl logs: the apiserver proxies to the kubelet's /containerLogs on the master.
    logs = c.kubectl("logs", "-n", "kube-system", mirror[0]["metadata"]["name"], "-c", "apiserver").stdout
    assert "serving insecurely on 0.0.0.0:8080" in logs


def test_restarted_kubelet_adopts_its_containers(cluster: Cluster) -> None:
    c = cluster
    node = c.master
    before = c.sh(node, "docker ps -q --filter label=io.kubernetes.pod.uid | sort")
    assert before.strip()
    c.sh(node, "docker restart kubelet")
    # 10250 is HTTPS with the kubelet's self-signed certificate (1.1 checks no client certificate).
    unverified = ssl._create_unverified_context()
    wait_for("kubelet healthz on :10250", lambda: urllib.request.urlopen(
        f"https://{c.ips[node]}:10250/healthz", timeout=2, context=unverified).read() == b"ok", 30)
    time.sleep(3)  # a few sync rounds
    assert c.sh(node, "docker ps -q --filter label=io.kubernetes.pod.uid | sort") == before


def _rc_spread(c: Cluster) -> dict[str, list[dict[str, Any]]] | None:
    pods = [p for p in c.pods() if p["status"].get("phase") == "Running" and p["status"].get("podIP")
            and any(x["type"] == "Ready" and x["status"] == "True" for x in p["status"].get("conditions", []))]
    if len(pods) != 3:
        return None
    by_node: dict[str, list[dict[str, Any]]] = {}
    for p in pods:
        by_node.setdefault(p["spec"]["nodeName"], []).append(p)
    return by_node


def test_httpd_rc_spreads_over_workers_and_answers_across_nodes(cluster: Cluster) -> None:
    c = cluster
    rc = (TESTDATA / "rc.yaml").read_text().replace("{{REGISTRY}}", c.lab.registry)
    proc = subprocess.run(c.lab.kubectl_argv(c.api, c.cache_dir, "create", "-f", "-"), input=rc,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    by_node = wait_for("3 httpd pods running", lambda: _rc_spread(c), 120, 1)
    worker_ips = {c.ips[w] for w in c.workers}
    assert set(by_node) == worker_ips, by_node.keys()
    # Real containers with the pod IP, on the worker's main docker daemon.
    pod = by_node[c.ips[c.workers[0]]][0]
    names = c.sh(c.workers[0], "docker ps --format '{{.Names}}'")
    assert f"k8s_httpd_{pod['metadata']['name']}_default_" in names
    # Cross-node: from the other worker's network, over the host-gw routes.
    # (busybox-static's wget segfaults in a bare image: glibc NSS; nc speaks plain HTTP.)
    answer = c.sh(c.workers[1], f"docker run --rm {c.images['busybox']} sh -c "
                  f"'printf \"GET / HTTP/1.0\\r\\n\\r\\n\" | nc -w 5 {pod['status']['podIP']} 80'")
    assert answer.startswith("HTTP/1.1 200"), answer
    assert answer.rstrip().endswith(pod["metadata"]["name"]), answer  # the page is the pod's hostname
    wide = c.kubectl("get", "pods", "-o", "wide").stdout
    assert pod["status"]["podIP"] in wide


def test_cordon_and_drain_move_pods_off_a_node(cluster: Cluster) -> None:
    c = cluster
    wait_for("3 httpd pods running", lambda: _rc_spread(c), 120, 1)
    target = c.ips[c.workers[0]]
    c.kubectl("cordon", target)
    assert "SchedulingDisabled" in c.kubectl("get", "node", target).stdout
    # --force: kubectl 1.20 knows a pod's controller only from ownerReferences, which
    # 1.1 does not have (its controllers set the kubernetes.io/created-by annotation).
    proc = c.kubectl("drain", target, "--ignore-daemonsets", "--force", "--timeout=60s", timeout=120)
    # kubectl 1.20 closes a successful drain naming how the pods went: "node/X evicted",
    # or "node/X deleted" where the server has no Eviction API (1.1); later ones: "drained".
    assert re.search(rf"node/{re.escape(target)} (evicted|deleted|drained)", proc.stdout), proc.stdout + proc.stderr
    spread = wait_for("pods back to 3, none on the drained node", lambda: (
        lambda s: s if s and target not in s else None)(_rc_spread(c)), 90, 1)
    assert sum(len(v) for v in spread.values()) == 3
    wait_for("drained node's httpd containers gone",
             lambda: "k8s_httpd_" not in c.sh(c.workers[0], "docker ps -a --format '{{.Names}}'"), 30)
    c.kubectl("uncordon", target)


def test_power_cut_turns_node_not_ready_within_grace(cluster: Cluster) -> None:
    c = cluster
    victim = c.workers[1]
    ip = c.ips[victim]
    wait_for("victim Ready", lambda: c.node_ready().get(ip) == "True", 30)
    t0 = time.monotonic()
    c.lab.kill(victim)
    wait_for("victim NotReady", lambda: c.node_ready().get(ip) == "Unknown", GRACE + 25, 1)
    took = time.monotonic() - t0
    assert took <= GRACE + 15, took
    table = c.kubectl("get", "nodes").stdout
    assert re.search(rf"^{re.escape(ip)}\s+NotReady\s", table, re.M), table
    print(f"power cut -> NotReady after {took:.1f}s (grace {GRACE:.0f}s)")
