"""Rolling node add, drain, remove and `up --rolling` on a live 4-node lab cluster.

One lab for the module (pi1 = rpi-master, pi2..pi4 = rpi-node-1..3), built
with `piprov up` on the last-hyperkube profile (Kubernetes 1.18: the seed's 1.1
had no evictions and no PodDisruptionBudgets; its drain is in
test_profiles_lab.py), running a busybox RC of 4 replicas under a
PodDisruptionBudget that allows one unavailable. Tests run in file order and
build on each other. A sampler thread counts ready replicas while pods move.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Iterator

import pytest

from labkit import PIPROV, TESTDATA, LabCluster, create_workload, wait_for

from piprov_lab.lab import Lab

pytestmark = pytest.mark.lab


class Cluster(LabCluster):
    def get(self, path: str) -> Any:
        with self.urlopen(self.api + path, timeout=5) as r:
            return json.loads(r.read())

    def node(self, ip: str) -> dict[str, Any] | None:
        try:
            return dict(self.get(f"/api/v1/nodes/{ip}"))
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def ready(self, ip: str) -> bool:
        n = self.node(ip)
        return bool(n) and any(c["type"] == "Ready" and c["status"] == "True"
                               for c in (n or {}).get("status", {}).get("conditions", []))

    def unschedulable(self, ip: str) -> bool:
        return bool(((self.node(ip) or {}).get("spec") or {}).get("unschedulable"))

    def httpd(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/namespaces/default/pods?labelSelector=app%3Dhttpd")["items"])

    def ready_httpd(self) -> list[dict[str, Any]]:
        return [p for p in self.httpd() if not p["metadata"].get("deletionTimestamp")
                and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]

    def by_node(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.httpd():
            out[p["spec"].get("nodeName", "")] = out.get(p["spec"].get("nodeName", ""), 0) + 1
        return out

    def leases(self) -> list[str]:
        with self.urlopen(f"https://{self.master_ip}:4001/v2/keys/coreos.com/network/subnets", timeout=5) as r:
            return [n["value"] for n in json.loads(r.read())["node"].get("nodes", [])]

    def wait_replicas(self, n: int, timeout: float = 120) -> None:
        wait_for(f"{n} ready httpd replicas", lambda: len(self.ready_httpd()) == n or None, timeout)


class Sampler(threading.Thread):
    """Counts ready httpd replicas every 0.2 s; unreachable-API samples are not counted as zero."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.samples: list[int] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.samples.append(len(self.cluster.ready_httpd()))
            except OSError:
                pass
            self.halt.wait(0.2)

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        self.join()


@pytest.fixture(scope="module")
def cluster(lab_factory: Callable[..., Lab], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    lab = lab_factory("roll", nodes=4, profile="last-hyperkube")
    tmp = tmp_path_factory.mktemp("rolling")
    inv = tmp / "inventory.yaml"
    inv.write_text(lab.inventory_yaml())
    c = Cluster(lab, inv, tmp / "kubectl-cache")
    p = c.piprov("up")
    assert p.returncode == 0, p.stderr[-3000:]
    create_workload(c, 4, budget=1)
    c.wait_replicas(4)
    yield c
    lab.down()


def test_node_add_joins_only_the_new_node(cluster: Cluster) -> None:
    new = cluster.lab.add_nodes(1)[0]
    add = subprocess.Popen([*PIPROV, "node", "add", "rpi-node-4", "--address", new.ip, "-i", str(cluster.inventory)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # A plan run while the node joins: the other nodes have nothing to change but their
        # firewall, whose rules list every member (node add updates it: fleet_wide).
        wait_for("rpi-node-4 in the inventory", lambda: "name: rpi-node-4" in cluster.inventory.read_text(), 30, 0.1)
        during = json.loads(cluster.piprov("plan", "--json").stdout)
        out, err = add.communicate(timeout=600)
    finally:
        if add.poll() is None:
            add.kill()
    p = subprocess.CompletedProcess(add.args, add.returncode, out, err)
    assert p.returncode == 0, p.stderr[-3000:]
    others = ("rpi-master", "rpi-node-1", "rpi-node-2", "rpi-node-3")
    for n in during["nodes"]:
        if n["node"] != "rpi-node-4":
            assert [c["component"] for c in n["components"] if c["changed"]] in ([], ["firewall"]), n
    assert {n["node"] for n in during["nodes"]} >= set(others), during.get("errors")
    for name in others:
        assert f"{name}: no change; firewall updated for the new member" in " ".join(p.stdout.split()), p.stdout
    text = " ".join(p.stderr.split())
    # Facts, the firewall's change, its health gate: nothing else is applied on the others.
    trips = {m[1]: int(m[2]) for m in re.finditer(r"(rpi-[a-z0-9-]+)=(\d+)", text)}
    assert all(trips.get(name, 99) <= 3 for name in others), text
    for name, node in zip(others, cluster.lab.nodes):
        rules = cluster.lab.exec(node.name, "iptables -S PIPROV-INPUT").stdout
        assert f"-s {new.ip}/32 -j RETURN" in rules, (name, rules)
    assert "rpi-node-4 joined and is Ready" in text
    assert "name: rpi-node-4" in cluster.inventory.read_text()
    assert cluster.ready(new.ip)
    # New pods can land on it (the scheduler spreads to the emptiest node).
    assert cluster.kubectl("scale", "rc", "httpd", "--replicas=5").returncode == 0
    wait_for("an httpd pod on the new node", lambda: cluster.by_node().get(new.ip), 60)
    cluster.wait_replicas(5)
    assert cluster.kubectl("scale", "rc", "httpd", "--replicas=4").returncode == 0
    cluster.wait_replicas(4)


def test_drain_moves_every_pod_and_keeps_three_ready(cluster: Cluster) -> None:
    counts = cluster.by_node()
    ip = max((n.ip for n in cluster.lab.nodes[1:]), key=lambda i: counts.get(i, 0))
    name = next(n for n, node in zip(["rpi-master", "rpi-node-1", "rpi-node-2", "rpi-node-3", "rpi-node-4"],
                                     cluster.lab.nodes) if node.ip == ip)
    assert counts.get(ip, 0) >= 1, counts
    with Sampler(cluster) as s:
        p = cluster.piprov("node", "drain", name, "--timeout", "120")
        cluster.wait_replicas(4)
    assert p.returncode == 0, p.stderr[-3000:]
    assert cluster.by_node().get(ip, 0) == 0
    assert cluster.unschedulable(ip)
    assert s.samples and min(s.samples) >= 3, s.samples
    p = cluster.piprov("node", "uncordon", name)
    assert p.returncode == 0 and not cluster.unschedulable(ip)


def test_drain_against_an_unsatisfiable_budget_names_it_and_uncordons(cluster: Cluster) -> None:
    assert cluster.kubectl("delete", "pdb", "httpd").returncode == 0
    assert cluster.kubectl("create", "-f", str(TESTDATA / "pdb.yaml")).returncode == 0  # maxUnavailable: 0
    try:
        counts = cluster.by_node()
        ip = next(n.ip for n in cluster.lab.nodes[1:] if counts.get(n.ip))
        # The API itself first: an eviction the budget forbids is a 429 TooManyRequests.
        pod = next(p for p in cluster.httpd() if p["spec"].get("nodeName") == ip)
        name = pod["metadata"]["name"]
        body = json.dumps({"apiVersion": "policy/v1beta1", "kind": "Eviction",
                           "metadata": {"name": name, "namespace": "default"}}).encode()
        req = urllib.request.Request(f"{cluster.api}/api/v1/namespaces/default/pods/{name}/eviction", data=body,
                                     method="POST", headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            cluster.urlopen(req, timeout=10)
        assert err.value.code == 429 and json.loads(err.value.read())["reason"] == "TooManyRequests"
        inv_name = _inventory_name(cluster, ip)
        t0 = time.monotonic()
        p = cluster.piprov("node", "drain", inv_name, "--timeout", "6")
        assert p.returncode == 1, p.stderr
        assert time.monotonic() - t0 < 60
        text = " ".join(p.stderr.split())
        assert "PodDisruptionBudget httpd" in text and "timed out" in text and "uncordoned again" in text, text
        assert not cluster.unschedulable(ip)
        assert cluster.by_node().get(ip) == counts[ip]
    finally:
        cluster.kubectl("delete", "pdb", "httpd")
        pdb = (TESTDATA / "pdb.yaml").read_text().replace("maxUnavailable: 0", "maxUnavailable: 1")
        assert cluster.kubectl("create", "-f", "-", input=pdb).returncode == 0


def _inventory_name(cluster: Cluster, ip: str) -> str:
    lines = cluster.inventory.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() == f"address: {ip}":
            return lines[i - 1].split("name:", 1)[1].strip()
    raise AssertionError(f"{ip} not in the inventory")


def test_node_remove_leaves_no_trace_and_refuses_the_master(cluster: Cluster) -> None:
    p = cluster.piprov("node", "remove", "rpi-master")
    assert p.returncode == 1 and "is the master" in p.stderr
    new_ip = cluster.lab.nodes[4].ip
    assert any(new_ip in v for v in cluster.leases())
    p = cluster.piprov("node", "remove", "rpi-node-4", "--timeout", "120")
    assert p.returncode == 0, p.stderr[-3000:]
    assert cluster.node(new_ip) is None
    assert not any(new_ip in v for v in cluster.leases())
    assert "rpi-node-4" not in cluster.inventory.read_text()
    assert "# piprov inventory for the virtual Pi lab" in cluster.inventory.read_text()  # comments kept
    cluster.wait_replicas(4)
    assert cluster.by_node().get(new_ip, 0) == 0
    # It was reset as `piprov reset` does: piprov's units and files, its record, cbr0 gone (issue 17).
    gone = cluster.lab.exec("pi5", "for f in /etc/systemd/system/k8s-worker.service /var/lib/piprov/owned "
                                   "/etc/kubernetes/pki; do [ -e $f ] && echo present $f; done; "
                                   "ip link show cbr0 >/dev/null 2>&1 && echo present cbr0; "
                                   "systemctl is-enabled k8s-worker.service 2>/dev/null", check=False).stdout
    assert "present" not in gone and gone.strip() in ("", "not-found"), gone
    assert "reset (as `piprov reset` does)" in " ".join(p.stderr.split()), p.stderr[-2000:]
    # Its address is no member's any more: the others' firewalls stop letting it in.
    assert "firewall updated on rpi-master, rpi-node-1, rpi-node-2, rpi-node-3" in " ".join(p.stderr.split())
    for node in cluster.lab.nodes[:4]:
        assert f"-s {new_ip}/32" not in cluster.lab.exec(node.name, "iptables -S PIPROV-INPUT").stdout, node.name


KUBE_UNITS = {"pi1": "k8s-master.service", "pi2": "k8s-worker.service", "pi3": "k8s-worker.service",
              "pi4": "k8s-worker.service"}


def _started(cluster: Cluster) -> dict[str, float]:
    out = {}
    for node, unit in KUBE_UNITS.items():
        v = cluster.lab.exec(node, f"systemctl show -p ActiveEnterTimestampMonotonic --value {unit}").stdout
        out[node] = int(v.strip() or 0) / 1e6
    return out


# The rollouts move hyperkube between two tags of the profile's release line.
TAG, OTHER_TAG = "v1.18.20", "v1.18.19"


def test_up_rolling_restarts_kube_units_one_node_at_a_time(cluster: Cluster) -> None:
    assert cluster.piprov("inventory", "set", "images.hyperkube.tag", OTHER_TAG).returncode == 0
    before = _started(cluster)
    with Sampler(cluster) as s:
        p = cluster.piprov("up", "--rolling", "--batch", "1", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(p.stdout)
    assert [b["nodes"] for b in report["batches"]] == [["rpi-master"], ["rpi-node-1"], ["rpi-node-2"], ["rpi-node-3"]]
    assert all(b["status"] == "done" and b["drain"] for b in report["batches"])
    after = _started(cluster)
    assert all(after[n] > before[n] for n in KUBE_UNITS), (before, after)
    # One at a time: each worker's kubelet restarted after the previous one's.
    order = [after[n] for n in ("pi1", "pi2", "pi3", "pi4")]
    assert order == sorted(order)
    assert s.samples and min(s.samples) >= 3, s.samples
    for node in ("pi2", "pi3", "pi4"):
        images = cluster.lab.exec(node, "docker ps --format '{{.Image}}'").stdout
        assert f"hyperkube-amd64:{OTHER_TAG}" in images and f"hyperkube-amd64:{TAG}" not in images
    assert not any(cluster.unschedulable(n.ip) for n in cluster.lab.nodes[:4])
    assert "pods per node" in p.stderr


def test_a_node_killed_mid_rollout_stops_it_and_a_rerun_finishes(cluster: Cluster) -> None:
    assert cluster.piprov("inventory", "set", "images.hyperkube.tag", TAG).returncode == 0
    state = cluster.inventory.with_name(cluster.inventory.name + ".rolling.json")
    proc = subprocess.Popen([*PIPROV, "up", "--rolling", "--batch", "1", "--health-timeout", "30",
                             "-i", str(cluster.inventory)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def at_node_2() -> bool:
        try:
            return bool(json.loads(state.read_text()).get("current") == ["rpi-node-2"])
        except (OSError, ValueError):
            return False

    try:
        wait_for("the rollout to reach rpi-node-2", at_node_2, 180, 0.1)
        cluster.lab.kill("pi3")
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    text = " ".join(err.split())
    assert "rollout stopped at batch 3 (rpi-node-2)" in text, text
    assert "untouched: rpi-node-3" in text and "piprov up --rolling" in text
    assert OTHER_TAG in cluster.lab.exec("pi4", "cat /etc/systemd/system/k8s-worker.service").stdout
    cluster.lab.start("pi3")
    wait_for("pi3's units up again", lambda: cluster.lab.exec(
        "pi3", "systemctl is-active docker.service k8s-flannel.service k8s-worker.service k8s-proxy.service",
        check=False).returncode == 0, 120)
    # The progress file is a hint only: a garbled one is rebuilt from the facts (the plan).
    state.write_text('{"done": ["rpi-master", tr')
    p = cluster.piprov("up", "--rolling", "--batch", "1")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "rebuilt from the nodes' facts" in " ".join(p.stderr.split())
    assert json.loads(state.read_text())["finished"] is True
    for node in ("pi2", "pi3", "pi4"):
        wait_for(f"{node} on {TAG}", lambda node=node: f"hyperkube-amd64:{OTHER_TAG}" not in cluster.lab.exec(  # type: ignore[misc]
            node, "docker ps --format '{{.Image}}'").stdout, 60)
    assert not any(cluster.unschedulable(n.ip) for n in cluster.lab.nodes[:4])
    wait_for("every node Ready", lambda: all(cluster.ready(n.ip) for n in cluster.lab.nodes[:4]), 120)
    cluster.wait_replicas(4)
    assert cluster.piprov("plan").returncode == 0
