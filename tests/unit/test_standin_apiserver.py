"""The hyperkube stand-in's apiserver, controller-manager and scheduler against real etcd,
driven by Debian's kubectl 1.20 over loopback (no root, no docker: a fake kubelet posts status).

These run the 1.18 release (PDBs, eviction, ownerReferences); what differs on 1.1
is in test_standin_versions.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from piprov_lab.images import testsupport

testsupport.standins_on_path()
from standins import apiserver, kobj, release  # noqa: E402
from standins.common import KubeClient  # noqa: E402
from standins.controller_manager import ControllerManager  # noqa: E402
from standins.scheduler import schedule_once  # noqa: E402

TESTDATA = testsupport.IMAGES_DIR / "testdata"
REL = release.parse("v1.18.20")
KUBECTL = next((k for k in ("/opt/piprov-tools/usr/bin/kubectl", shutil.which("kubectl") or "") if k and Path(k).exists()),
               None)

pytestmark = pytest.mark.skipif(testsupport.etcd_binary() is None, reason="etcd not installed (scripts/setup.sh)")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="Debian's kubectl not installed (scripts/setup.sh)")


class Cluster:
    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.kube = KubeClient(url)
        self.cm = ControllerManager(KubeClient(url), grace=3.0, rel=REL)
        self.live: dict[str, str] = {}  # nodes whose fake kubelet keeps posting heartbeats

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        proc = subprocess.run([KUBECTL, "-s", self.url, f"--cache-dir={self.tmp}/kcache", *args], input=stdin,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr}{proc.stdout}")
        return proc

    def raw(self, method: str, path: str, body: Any = None, ctype: str = "application/json") -> tuple[int, Any]:
        return self.kube.request(method, path, body, content_type=ctype)

    def heartbeat(self, name: str, ip: str, age: float = 0.0) -> None:
        """What a kubelet posts: register once, then Ready with a heartbeat age seconds old."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - age))
        if age:
            self.live.pop(name, None)
        else:
            self.live[name] = ip
        status, node = self.raw("GET", f"/api/v1/nodes/{name}")
        if status == 404:
            node = {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {}, "status": {}}
            status, node = self.raw("POST", "/api/v1/nodes", node)
            assert status == 201, node
        node["status"]["addresses"] = [{"type": "InternalIP", "address": ip}]
        node["status"]["nodeInfo"] = {"kubeletVersion": "v1.18.20"}
        kobj.set_condition(node, {"type": "Ready", "status": "True", "reason": "KubeletReady",
                                  "lastHeartbeatTime": stamp, "lastTransitionTime": stamp})
        status, body = self.raw("PUT", f"/api/v1/nodes/{name}/status", node)
        assert status == 200, body

    def run_pods(self) -> None:
        """Fake kubelets: every bound pod becomes Running and Ready with a pod IP."""
        for i, p in enumerate(self.kube.list("/api/v1/pods")):
            if p["spec"].get("nodeName") in self.live and not kobj.pod_ready(p):
                p["status"].update({"phase": "Running", "podIP": f"10.0.9.{i + 2}",
                                    "conditions": [{"type": "Ready", "status": "True"}]})
                status, body = self.raw("PUT", f"/api/v1/namespaces/{p['metadata']['namespace']}/pods/"
                                        f"{p['metadata']['name']}/status", p)
                assert status == 200, body

    def settle(self, rounds: int = 3) -> None:
        for _ in range(rounds):
            for name, ip in list(self.live.items()):
                self.heartbeat(name, ip)
            self.cm.run_once(monitor=True)
            schedule_once(self.kube, REL)
            self.run_pods()

    def pods(self, selector: str = "") -> list[dict[str, Any]]:
        return self.kube.list("/api/v1/pods", labelSelector=selector or None)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("api")
    etcd = testsupport.start_etcd(tmp / "etcd")
    opts = apiserver.parse_flags("apiserver", [f"--etcd-servers={etcd.url}", "--insecure-port=0",
                                               "--service-cluster-ip-range=10.0.0.0/24", "--v=2",
                                               "--enable-admission-plugins=NamespaceLifecycle"],
                                 apiserver.flags_for("apiserver", REL))
    server = apiserver.serve(opts, REL)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    c = Cluster(f"http://127.0.0.1:{server.server_address[1]}", tmp)
    c.heartbeat("n1", "192.0.2.11")
    c.heartbeat("n2", "192.0.2.12")
    try:
        yield c
    finally:
        server.shutdown()
        etcd.stop()


@needs_kubectl
def test_kubectl_sees_the_server_version_and_its_resources(cluster: Cluster) -> None:
    out = cluster.kubectl("version").stdout
    assert 'GitVersion:"v1.18.20"' in out
    res = cluster.kubectl("api-resources").stdout
    for line in ("pods ", "nodes ", "replicationcontrollers ", "poddisruptionbudgets ", "namespaces "):
        assert line in res, res
    assert "default " in cluster.kubectl("get", "namespaces").stdout


def test_health_and_discovery_endpoints(cluster: Cluster) -> None:
    assert urllib.request.urlopen(cluster.url + "/healthz").read() == b"ok"
    status, groups = cluster.raw("GET", "/apis")
    assert status == 200 and {g["preferredVersion"]["groupVersion"] for g in groups["groups"]} == {
        "apps/v1", "policy/v1beta1", "coordination.k8s.io/v1"}
    status, v1 = cluster.raw("GET", "/api/v1")
    names = {r["name"]: r for r in v1["resources"]}
    assert names["pods/eviction"]["kind"] == "Eviction" and names["pods/eviction"]["group"] == "policy"
    assert names["replicationcontrollers/scale"]["group"] == "autoscaling"


@pytest.mark.parametrize("method, path, code, reason", [
    ("GET", "/api/v1/widgets", 404, "NotFound"),
    ("GET", "/api/v1/nodes/nope", 404, "NotFound"),
    ("GET", "/apis/apps/v1/deployments", 404, "NotFound"),
    ("GET", "/totally/unknown", 404, "NotFound"),
    ("DELETE", "/api/v1/namespaces/default/pods", 405, "MethodNotAllowed"),
    ("POST", "/api/v1/namespaces/nope/pods", 404, "NotFound"),
])
def test_errors_are_kubernetes_status_objects(cluster: Cluster, method: str, path: str, code: int, reason: str) -> None:
    body = {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c", "image": "i"}]}} if method == "POST" else None
    status, answer = cluster.raw(method, path, body)
    assert status == code
    assert answer["kind"] == "Status" and answer["reason"] == reason and answer["code"] == code


def test_resource_version_is_compare_and_swap(cluster: Cluster) -> None:
    status, ns = cluster.raw("POST", "/api/v1/namespaces", {"metadata": {"name": "rv-test"}})
    assert status == 201
    pod = {"metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    status, created = cluster.raw("POST", "/api/v1/namespaces/rv-test/pods", pod)
    assert status == 201 and created["metadata"]["uid"] and created["status"]["phase"] == "Pending"
    rv = created["metadata"]["resourceVersion"]
    created["metadata"]["labels"]["a"] = "2"
    status, updated = cluster.raw("PUT", "/api/v1/namespaces/rv-test/pods/p", created)
    assert status == 200 and int(updated["metadata"]["resourceVersion"]) > int(rv)
    created["metadata"]["labels"]["a"] = "3"  # still carries the old resourceVersion
    status, conflict = cluster.raw("PUT", "/api/v1/namespaces/rv-test/pods/p", created)
    assert status == 409 and conflict["reason"] == "Conflict"
    status, dup = cluster.raw("POST", "/api/v1/namespaces/rv-test/pods", pod)
    assert status == 409 and dup["reason"] == "AlreadyExists"
    status, listed = cluster.raw("GET", "/api/v1/namespaces/rv-test/pods")
    assert int(listed["metadata"]["resourceVersion"]) >= int(updated["metadata"]["resourceVersion"])
    assert cluster.raw("DELETE", "/api/v1/namespaces/rv-test/pods/p")[0] == 200


def test_patch_flavours(cluster: Cluster) -> None:
    cluster.heartbeat("patchme", "192.0.2.99")
    cluster.live.pop("patchme")
    path = "/api/v1/nodes/patchme"
    status, n = cluster.raw("PATCH", path, {"metadata": {"labels": {"x": "1"}}}, "application/merge-patch+json")
    assert status == 200 and n["metadata"]["labels"]["x"] == "1"
    status, n = cluster.raw("PATCH", path, [{"op": "add", "path": "/metadata/labels/y", "value": "2"}],
                            "application/json-patch+json")
    assert status == 200 and n["metadata"]["labels"]["y"] == "2"
    status, n = cluster.raw("PATCH", path, {"spec": {"unschedulable": True}, "metadata": {"labels": {"x": None}}},
                            "application/strategic-merge-patch+json")
    assert status == 200 and n["spec"]["unschedulable"] is True and "x" not in n["metadata"]["labels"]
    # A status patch merges conditions by type (strategic merge key).
    status, n = cluster.raw("PATCH", path + "/status", {"status": {"conditions": [
        {"type": "DiskPressure", "status": "False"}]}}, "application/strategic-merge-patch+json")
    assert {c["type"] for c in n["status"]["conditions"]} == {"Ready", "DiskPressure"}
    status, bad = cluster.raw("PATCH", path, {"a": 1}, "text/plain")
    assert status == 415
    assert cluster.raw("DELETE", path)[0] == 200


def test_field_and_label_selectors(cluster: Cluster) -> None:
    for name, node in (("sel-a", "n1"), ("sel-b", "n2"), ("sel-c", "")):
        spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
        if node:
            spec["nodeName"] = node
        status, _ = cluster.raw("POST", "/api/v1/namespaces/default/pods",
                                {"metadata": {"name": name, "labels": {"sel": name[-1], "tier": "x"}}, "spec": spec})
        assert status == 201
    on_n1 = cluster.kube.list("/api/v1/pods", fieldSelector="spec.nodeName=n1", labelSelector="tier=x")
    assert [p["metadata"]["name"] for p in on_n1] == ["sel-a"]
    pending = cluster.kube.list("/api/v1/pods", fieldSelector="spec.nodeName=", labelSelector="tier=x")
    assert [p["metadata"]["name"] for p in pending] == ["sel-c"]
    some = cluster.kube.list("/api/v1/namespaces/default/pods", labelSelector="sel in (a,c),tier,!nope")
    assert sorted(p["metadata"]["name"] for p in some) == ["sel-a", "sel-c"]
    for name in ("sel-a", "sel-b", "sel-c"):
        assert cluster.raw("DELETE", f"/api/v1/namespaces/default/pods/{name}")[0] == 200


@needs_kubectl
def test_rc_create_scale_spread_cordon_drain_and_pdb(cluster: Cluster) -> None:
    c = cluster
    rc = (TESTDATA / "rc.yaml").read_text().replace("{{REGISTRY}}", "registry.invalid:5000")
    assert "replicationcontroller/httpd created" in c.kubectl("create", "-f", "-", stdin=rc).stdout
    c.settle()
    pods = c.pods("app=httpd")
    assert len(pods) == 3
    assert all(kobj.controller_ref(p)["kind"] == "ReplicationController" for p in pods)  # type: ignore[index]
    per_node = sorted(sum(1 for p in pods if p["spec"]["nodeName"] == n) for n in ("n1", "n2"))
    assert per_node == [1, 2], [p["spec"].get("nodeName") for p in pods]  # spread: fewest pods first
    wide = c.kubectl("get", "pods", "-o", "wide").stdout
    assert "Running" in wide and "10.0.9." in wide and "n1" in wide and "NODE" in wide
    assert "3         3         3" in c.kubectl("get", "rc", "httpd").stdout

    c.kubectl("scale", "rc", "httpd", "--replicas=5")
    c.settle()
    assert len(c.pods("app=httpd")) == 5
    c.kubectl("scale", "rc", "httpd", "--replicas=3")
    c.settle()
    assert len(c.pods("app=httpd")) == 3

    c.kubectl("cordon", "n1")
    assert "Ready,SchedulingDisabled" in c.kubectl("get", "nodes").stdout
    out = c.kubectl("drain", "n1", "--ignore-daemonsets", "--timeout=30s").stdout
    assert "evicting pod default/httpd-" in out or "n1" in out
    c.settle()
    pods = c.pods("app=httpd")
    assert len(pods) == 3 and {p["spec"]["nodeName"] for p in pods} == {"n2"}
    c.kubectl("uncordon", "n1")
    assert "SchedulingDisabled" not in c.kubectl("get", "nodes").stdout

    c.kubectl("create", "-f", str(TESTDATA / "pdb.yaml"))
    c.settle()
    status, pdb = c.raw("GET", "/apis/policy/v1beta1/namespaces/default/poddisruptionbudgets/httpd")
    assert pdb["status"]["currentHealthy"] == 3 and pdb["status"]["disruptionsAllowed"] == 0
    victim = pods[0]["metadata"]["name"]
    status, answer = c.raw("POST", f"/api/v1/namespaces/default/pods/{victim}/eviction",
                           {"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": victim}})
    assert status == 429 and answer["reason"] == "TooManyRequests"
    assert "needs 3 healthy pods and has 3" in answer["details"]["causes"][0]["message"]
    proc = c.kubectl("drain", "n2", "--ignore-daemonsets", "--timeout=2s", check=False)
    assert proc.returncode != 0 and "disruption budget" in proc.stderr
    c.kubectl("uncordon", "n2")
    # minAvailable 2 of 3 ready: exactly one eviction goes through.
    c.kubectl("delete", "pdb", "httpd")
    pdb2 = {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "two"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "httpd"}}}}
    c.kubectl("create", "-f", "-", stdin=json.dumps(pdb2))
    names = [p["metadata"]["name"] for p in c.pods("app=httpd")]
    codes = [c.raw("POST", f"/api/v1/namespaces/default/pods/{n}/eviction",
                   {"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": n}})[0] for n in names[:2]]
    assert codes == [201, 429]
    c.kubectl("delete", "pdb", "two")

    c.kubectl("delete", "rc", "httpd")
    c.settle()
    assert c.pods("app=httpd") == []


class Clock:
    """The controller manager's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _clocked(c: Cluster, **kw: Any) -> tuple[ControllerManager, Clock]:
    """A controller manager of its own whose clock the test moves (grace 3 s)."""
    clock = Clock()
    return ControllerManager(KubeClient(c.url), grace=3.0, rel=REL, clock=clock, **kw), clock


def _monitor(c: Cluster, cm: ControllerManager, name: str) -> Any:
    """One node-monitor pass of `cm` over node `name` alone (other tests' nodes stay as they are)."""
    cm.monitor_nodes([c.raw("GET", f"/api/v1/nodes/{name}")[1]], c.kube.list("/api/v1/pods"))
    return kobj.condition(c.raw("GET", f"/api/v1/nodes/{name}")[1], "Ready")


@needs_kubectl
def test_stale_heartbeat_turns_node_not_ready(cluster: Cluster) -> None:
    c = cluster
    cm, clock = _clocked(c)
    c.heartbeat("stale", "192.0.2.50", age=10.0)
    # First sight (a controller manager just restarted): the grace starts now, whatever the
    # heartbeat's own age, as in the real tryUpdateNodeHealth.
    assert _monitor(c, cm, "stale")["status"] == "True"
    clock.now += 3.5
    ready = _monitor(c, cm, "stale")
    assert ready["status"] == "Unknown" and ready["reason"] == "NodeStatusUnknown"
    table = c.kubectl("get", "nodes").stdout
    assert any(line.startswith("stale ") and " NotReady " in line for line in table.splitlines()), table
    c.heartbeat("stale", "192.0.2.50")
    assert kobj.node_ready(c.raw("GET", "/api/v1/nodes/stale")[1])


def test_a_heartbeat_seen_within_the_grace_keeps_the_node_ready(cluster: Cluster) -> None:
    c = cluster
    cm, clock = _clocked(c)
    c.heartbeat("beating", "192.0.2.51", age=30.0)
    assert _monitor(c, cm, "beating")["status"] == "True"
    clock.now += 2.5
    c.heartbeat("beating", "192.0.2.51", age=29.0)  # a new heartbeat, however old its stamp
    clock.now += 2.5
    assert _monitor(c, cm, "beating")["status"] == "True"
    clock.now += 3.5
    assert _monitor(c, cm, "beating")["status"] == "Unknown"


def test_pods_of_a_long_dead_node_are_deleted(cluster: Cluster) -> None:
    c = cluster
    c.heartbeat("dead", "192.0.2.70", age=10.0)
    status, _ = c.raw("POST", "/api/v1/namespaces/default/pods", {
        "metadata": {"name": "on-dead"}, "spec": {"nodeName": "dead", "containers": [{"name": "c", "image": "i"}]}})
    assert status == 201
    cm, clock = _clocked(c, eviction_timeout=1.0)
    _monitor(c, cm, "dead")
    clock.now += 3.5
    assert _monitor(c, cm, "dead")["status"] == "Unknown"
    assert c.raw("GET", "/api/v1/namespaces/default/pods/on-dead")[0] == 200
    clock.now += 2.2
    _monitor(c, cm, "dead")  # NotReady for longer than the eviction timeout
    assert c.raw("GET", "/api/v1/namespaces/default/pods/on-dead")[0] == 404
    assert c.raw("DELETE", "/api/v1/nodes/dead")[0] == 200


@needs_kubectl
def test_deleting_a_node_collects_its_pods(cluster: Cluster) -> None:
    c = cluster
    c.heartbeat("doomed", "192.0.2.60")
    status, _ = c.raw("POST", "/api/v1/namespaces/default/pods", {
        "metadata": {"name": "on-doomed"}, "spec": {"nodeName": "doomed", "containers": [{"name": "c", "image": "i"}]}})
    assert status == 201
    assert 'node "doomed" deleted' in c.kubectl("delete", "node", "doomed").stdout
    c.live.pop("doomed")
    c.cm.run_once(monitor=False)
    assert c.raw("GET", "/api/v1/namespaces/default/pods/on-doomed")[0] == 404


def test_events_are_accepted_and_dropped(cluster: Cluster) -> None:
    status, _ = cluster.raw("POST", "/api/v1/namespaces/default/events", {"metadata": {"name": "e1"}, "reason": "x"})
    assert status == 201
    status, lst = cluster.raw("GET", "/api/v1/namespaces/default/events")
    assert status == 200 and lst["items"] == []


def test_watch_streams_added_modified_deleted(cluster: Cluster) -> None:
    import http.client
    c = cluster
    rv = c.raw("GET", "/api/v1/namespaces/default/pods")[1]["metadata"]["resourceVersion"]
    host, port = c.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", f"/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&timeoutSeconds=3"
                        "&labelSelector=w%3D1")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
    pod = {"metadata": {"name": "watched", "labels": {"w": "1"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    assert c.raw("POST", "/api/v1/namespaces/default/pods", {**pod, "metadata": {"name": "unwatched"}})[0] == 201
    assert c.raw("POST", "/api/v1/namespaces/default/pods", pod)[0] == 201
    assert c.raw("PATCH", "/api/v1/namespaces/default/pods/watched", {"metadata": {"annotations": {"a": "b"}}},
                 "application/merge-patch+json")[0] == 200
    assert c.raw("DELETE", "/api/v1/namespaces/default/pods/watched")[0] == 200
    assert c.raw("DELETE", "/api/v1/namespaces/default/pods/unwatched")[0] == 200
    events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]  # ends after timeoutSeconds
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")]
    conn.close()


@needs_kubectl
def test_kubectl_wait_for_a_ready_pod(cluster: Cluster) -> None:
    c = cluster
    c.heartbeat("n1", "192.0.2.11")
    assert c.raw("POST", "/api/v1/namespaces/default/pods", {
        "metadata": {"name": "waited"}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}})[0] == 201
    timer = threading.Timer(1.0, c.run_pods)
    timer.start()
    t0 = time.monotonic()
    out = c.kubectl("wait", "--for=condition=Ready", "pod/waited", "--timeout=20s").stdout
    timer.join()
    assert "pod/waited condition met" in out and time.monotonic() - t0 < 10
    assert c.raw("DELETE", "/api/v1/namespaces/default/pods/waited")[0] == 200
