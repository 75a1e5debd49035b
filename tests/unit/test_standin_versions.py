"""The hyperkube stand-in is exactly the release in KUBE_VERSION: 1.1 or 1.18.

Command lines (subcommand names, flag sets, unknown flag -> exit 1 naming it),
discovery documents, the 404s of what 1.1 did not have, created-by vs
ownerReferences, DaemonSet pods, node Leases. In process, no root; the API
tests run against a throwaway real etcd (v2 keys API).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from piprov_lab.images import testsupport

testsupport.standins_on_path()
from standins import apidiscovery, apiserver, controller_manager, hyperkube, kobj, kubelet, proxy  # noqa: E402
from standins import release, scheduler  # noqa: E402
from standins.common import KubeClient  # noqa: E402
from standins.docker_api import Docker  # noqa: E402

V11, V118 = release.parse("v1.1.2"), release.parse("v1.18.20")
MODULES = {"apiserver": apiserver, "controller-manager": controller_manager, "scheduler": scheduler,
           "kubelet": kubelet, "proxy": proxy}
needs_etcd = pytest.mark.skipif(testsupport.etcd_binary() is None, reason="etcd not installed (scripts/setup.sh)")


# -- command lines ---------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v1.1.2", "v1.18.20"])
@pytest.mark.parametrize("server", sorted(MODULES))
def test_every_server_refuses_an_unknown_flag_naming_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                        version: str, server: str) -> None:
    monkeypatch.setenv("KUBE_VERSION", version)
    with pytest.raises(SystemExit) as exc:
        MODULES[server].main(["--v=2", "--no-such-flag=1"])  # type: ignore[attr-defined]
    assert exc.value.code == 1
    assert "unknown flag: --no-such-flag" in capsys.readouterr().err


@pytest.mark.parametrize("rel, server, flag", [
    (V118, "kubelet", "--api-servers=http://m:8080"),       # gone since 1.8: --kubeconfig
    (V118, "kubelet", "--allow-privileged=true"),           # removed in 1.15
    (V11, "kubelet", "--pod-manifest-path=/etc/kubernetes/manifests"),
    (V11, "kubelet", "--node-ip=10.0.0.1"),
    (V11, "apiserver", "--enable-admission-plugins=NamespaceLifecycle"),
    (V11, "controller-manager", "--leader-elect=false"),
    (V11, "proxy", "--metrics-bind-address=127.0.0.1:10249"),
])
def test_a_flag_of_the_other_release_is_refused(capsys: pytest.CaptureFixture[str], rel: release.Release,
                                               server: str, flag: str) -> None:
    from standins.common import flags_for, parse_flags
    with pytest.raises(SystemExit) as exc:
        parse_flags(server, [flag], flags_for(server, rel))
    assert exc.value.code == 1 and f"unknown flag: {flag.split('=')[0]}" in capsys.readouterr().err


def test_the_templates_flags_parse_on_their_release() -> None:
    from standins.common import flags_for, parse_flags
    k11 = parse_flags("kubelet", ["--api-servers=http://m:8080", "--hostname-override=10.0.0.2",
                                  "--config=/etc/kubernetes/manifests", "--allow-privileged=true",
                                  "--pod-infra-container-image=r/pause:2.0", "--register-schedulable=false"],
                      flags_for("kubelet", V11))
    assert k11["api-servers"] == "http://m:8080" and k11["register-schedulable"] is False
    k118 = parse_flags("kubelet", ["--kubeconfig=/etc/kubernetes/kubelet.conf", "--hostname-override=10.0.0.2",
                                   "--pod-manifest-path=/etc/kubernetes/manifests", "--fail-swap-on=false",
                                   "--pod-infra-container-image=r/pause:3.2"], flags_for("kubelet", V118))
    assert k118["pod-manifest-path"] == "/etc/kubernetes/manifests"
    for rel in (V11, V118):
        parse_flags("apiserver", ["--etcd-servers=http://127.0.0.1:4001", "--insecure-bind-address=0.0.0.0",
                                  "--insecure-port=8080", "--service-cluster-ip-range=10.0.0.0/24",
                                  "--allow-privileged=true", "--v=2"], flags_for("apiserver", rel))


def run_hyperkube(monkeypatch: pytest.MonkeyPatch, version: str, *argv: str) -> int:
    monkeypatch.setenv("KUBE_VERSION", version)
    with pytest.raises(SystemExit) as exc:
        hyperkube.main(["/hyperkube", *argv])
    return int(exc.value.code or 0)


def test_hyperkube_1_1_subcommands(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_hyperkube(monkeypatch, "v1.1.2", "--version") == 0
    assert capsys.readouterr().out == "Kubernetes v1.1.2\n"
    assert run_hyperkube(monkeypatch, "v1.1.2", "kube-apiserver") == 1
    assert "Error: Server not found: kube-apiserver" in capsys.readouterr().err
    assert run_hyperkube(monkeypatch, "v1.1.2", "apiserver", "--version") == 0
    assert capsys.readouterr().out == "Kubernetes v1.1.2\n"
    assert run_hyperkube(monkeypatch, "v1.1.2", "proxy", "--healthz_port=1", "--bogus") == 1
    assert "unknown flag: --bogus" in capsys.readouterr().err
    monkeypatch.setenv("KUBE_VERSION", "v1.1.3")
    with pytest.raises(SystemExit):  # busybox style: called by the server's name
        hyperkube.main(["/usr/local/bin/kubelet", "--version"])
    assert capsys.readouterr().out == "Kubernetes v1.1.3\n"


def test_hyperkube_1_18_is_the_shell_script(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_hyperkube(monkeypatch, "v1.18.20", "apiserver") == 0  # the script's print_usage exits 0
    assert capsys.readouterr().out.startswith("apiserver: command not supported\nUsage:")
    assert run_hyperkube(monkeypatch, "v1.18.20", "--version") == 0
    assert "--version: command not supported" in capsys.readouterr().out
    assert run_hyperkube(monkeypatch, "v1.18.20", "kube-apiserver", "--version") == 0
    assert capsys.readouterr().out == "Kubernetes v1.18.20\n"
    assert run_hyperkube(monkeypatch, "v1.18.20", "kube-proxy", "--bogus") == 1
    assert "unknown flag: --bogus" in capsys.readouterr().err
    assert run_hyperkube(monkeypatch, "v1.18.20", "kubectl", "get", "pods") == 1


def test_unsupported_versions_are_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert release.parse("1.18.20-0") == V118
    assert run_hyperkube(monkeypatch, "v1.25.0", "kubelet") == 1
    assert "emulates only the 1.1 and 1.18 lines" in capsys.readouterr().err


# -- discovery (pure) ---------------------------------------------------------------------
def doc(rel: release.Release, path: str) -> tuple[int, Any]:
    got = apidiscovery.document(rel, path, "127.0.0.1:8080")
    assert got is not None, path
    return got[0], got[1]


def test_discovery_of_1_1() -> None:
    names = {r["name"] for r in doc(V11, "/api/v1")[1]["resources"]}
    assert {"pods", "pods/binding", "pods/status", "nodes", "replicationcontrollers"} <= names
    assert "pods/eviction" not in names and "replicationcontrollers/scale" not in names
    groups = doc(V11, "/apis")[1]["groups"]
    assert [g["preferredVersion"]["groupVersion"] for g in groups] == ["extensions/v1beta1"]
    ext = {r["name"] for r in doc(V11, "/apis/extensions/v1beta1")[1]["resources"]}
    assert ext == {"horizontalpodautoscalers", "horizontalpodautoscalers/status", "ingresses", "ingresses/status",
                   "jobs", "jobs/status", "replicationcontrollers", "replicationcontrollers/scale"}
    for path in ("/apis/policy", "/apis/policy/v1beta1", "/apis/apps/v1", "/apis/coordination.k8s.io"):
        assert doc(V11, path)[0] == 404
    assert "serverAddressByClientCIDRs" not in doc(V11, "/api")[1]
    assert doc(V11, "/version")[1]["gitVersion"] == "v1.1.2" and doc(V11, "/version")[1]["minor"] == "1"


def test_discovery_of_1_18() -> None:
    res = {r["name"]: r for r in doc(V118, "/api/v1")[1]["resources"]}
    assert res["pods/eviction"]["group"] == "policy" and res["pods/eviction"]["version"] == "v1beta1"
    assert res["pods/eviction"]["kind"] == "Eviction" and res["pods/eviction"]["verbs"] == ["create"]
    groups = {g["name"]: g["preferredVersion"]["version"] for g in doc(V118, "/apis")[1]["groups"]}
    assert groups == {"apps": "v1", "policy": "v1beta1", "coordination.k8s.io": "v1"}
    assert {r["name"] for r in doc(V118, "/apis/coordination.k8s.io/v1")[1]["resources"]} == {"leases"}
    assert doc(V118, "/apis/extensions")[0] == 404
    assert doc(V118, "/version")[1]["gitVersion"] == "v1.18.20"


# -- the API against etcd -----------------------------------------------------------------
class Server:
    def __init__(self, rel: release.Release, etcd_url: str) -> None:
        opts = apiserver.parse_flags("apiserver", [f"--etcd-servers={etcd_url}", "--insecure-port=0",
                                                   f"--etcd-prefix=/registry-{rel.minor}"],
                                     apiserver.flags_for("apiserver", rel))
        self.rel = rel
        self.http = apiserver.serve(opts, rel)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.kube = KubeClient(self.url)
        self.cm = controller_manager.ControllerManager(KubeClient(self.url), grace=3.0, rel=rel)

    def node(self, name: str, age: float = 0.0, unschedulable: bool = False) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - age))
        body = {"metadata": {"name": name}, "spec": {"unschedulable": unschedulable},
                "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": stamp,
                                           "lastTransitionTime": stamp}]}}
        status, got = self.kube.request("POST", "/api/v1/nodes", body)
        assert status == 201, got
        got["status"] = body["status"]
        assert self.kube.request("PUT", f"/api/v1/nodes/{name}/status", got)[0] == 200

    def rc(self, name: str, replicas: int) -> dict[str, Any]:
        rc = {"metadata": {"name": name}, "spec": {"replicas": replicas, "selector": {"app": name}, "template": {
            "metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
        status, got = self.kube.request("POST", "/api/v1/namespaces/default/replicationcontrollers", rc)
        assert status == 201, got
        return dict(got)

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return self.kube.list("/api/v1/pods", labelSelector=selector)


@pytest.fixture(scope="module")
def etcd_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    etcd = testsupport.start_etcd(tmp_path_factory.mktemp("versions") / "etcd")
    try:
        yield etcd.url
    finally:
        etcd.stop()


@pytest.fixture(scope="module")
def v11(etcd_url: str) -> Iterator[Server]:
    s = Server(V11, etcd_url)
    yield s
    s.http.shutdown()


@pytest.fixture(scope="module")
def v118(etcd_url: str) -> Iterator[Server]:
    s = Server(V118, etcd_url)
    yield s
    s.http.shutdown()


@needs_etcd
def test_1_1_has_no_eviction_no_policy_no_owner_references(v11: Server) -> None:
    pod = {"metadata": {"name": "p", "ownerReferences": [{"apiVersion": "v1", "kind": "ReplicationController",
                                                          "name": "x", "uid": "u", "controller": True}]},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    status, created = v11.kube.request("POST", "/api/v1/namespaces/default/pods", pod)
    assert status == 201 and "ownerReferences" not in created["metadata"]
    assert "ownerReferences" not in v11.kube.call("GET", "/api/v1/namespaces/default/pods/p")["metadata"]
    patch = {"metadata": {"ownerReferences": [{"uid": "u", "kind": "ReplicationController", "name": "x"}]}}
    status, patched = v11.kube.request("PATCH", "/api/v1/namespaces/default/pods/p", patch,
                                       content_type="application/merge-patch+json")
    assert status == 200 and "ownerReferences" not in patched["metadata"]
    eviction = {"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "p", "namespace": "default"}}
    assert v11.kube.request("POST", "/api/v1/namespaces/default/pods/p/eviction", eviction)[0] == 404
    assert v11.kube.request("GET", "/apis/policy")[0] == 404
    assert v11.kube.request("GET", "/apis/policy/v1beta1/poddisruptionbudgets")[0] == 404
    assert v11.kube.request("GET", "/apis/apps/v1/daemonsets")[0] == 404
    assert v11.kube.request("GET", "/api/v1/namespaces/default/pods/p")[0] == 200  # the pod is still there


@needs_etcd
def test_1_1_replication_manager_marks_pods_created_by(v11: Server) -> None:
    v11.node("n1")
    rc = v11.rc("web", 2)
    v11.cm.run_once(monitor=False)
    pods = v11.pods("app=web")
    assert len(pods) == 2
    for p in pods:
        assert "ownerReferences" not in p["metadata"]
        ref = json.loads(p["metadata"]["annotations"]["kubernetes.io/created-by"])
        assert ref["kind"] == "SerializedReference" and ref["apiVersion"] == "v1"
        assert ref["reference"] == {"kind": "ReplicationController", "namespace": "default", "name": "web",
                                    "uid": rc["metadata"]["uid"], "apiVersion": "v1",
                                    "resourceVersion": rc["metadata"]["resourceVersion"]}
    # 1.1 finds an RC's pods by its selector: a deleted pod is replaced, the count stays.
    v11.kube.call("DELETE", f"/api/v1/namespaces/default/pods/{pods[0]['metadata']['name']}")
    v11.cm.run_once(monitor=False)
    assert len(v11.pods("app=web")) == 2
    # Scale lives in extensions/v1beta1 on 1.1, with a map selector.
    scale = v11.kube.call("GET", "/apis/extensions/v1beta1/namespaces/default/replicationcontrollers/web/scale")
    assert scale["apiVersion"] == "extensions/v1beta1" and scale["status"]["selector"] == {"app": "web"}
    assert v11.kube.request("GET", "/api/v1/namespaces/default/replicationcontrollers/web/scale")[0] == 404


@needs_etcd
def test_1_1_serves_what_piprov_s_drain_budget_reads_and_no_more(v11: Server) -> None:
    """GET of the RC (desired count, map selector; status without readyReplicas) and pods by labelSelector."""
    v11.rc("api", 2)  # n1 is there from the test above (module-scoped server)
    v11.cm.run_once(monitor=False)
    rc = v11.kube.call("GET", "/api/v1/namespaces/default/replicationcontrollers/api")
    assert rc["spec"]["replicas"] == 2 and rc["spec"]["selector"] == {"app": "api"}
    assert not {"readyReplicas", "availableReplicas", "fullyLabeledReplicas"} & set(rc["status"])
    got = v11.kube.call("GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Dapi")
    assert got["kind"] == "PodList" and len(got["items"]) == 2
    assert {p["metadata"]["labels"]["app"] for p in got["items"]} == {"api"}
    assert v11.kube.request("GET", "/api/v1/namespaces/default/replicationcontrollers/nope")[0] == 404


@needs_etcd
def test_1_18_daemon_set_pods_are_owned_pinned_and_tolerate_cordoned_nodes(v118: Server) -> None:
    v118.node("a")
    v118.node("b", unschedulable=True)  # cordoned
    ds = {"metadata": {"name": "agent"}, "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
        "metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    status, created = v118.kube.request("POST", "/apis/apps/v1/namespaces/default/daemonsets", ds)
    assert status == 201, created
    v118.cm.run_once(monitor=False)
    pods = v118.pods("app=agent")
    assert sorted(controller_manager.daemon_pod_node(p) for p in pods) == ["a", "b"]
    for p in pods:
        assert kobj.controller_ref(p) == {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                                          "uid": created["metadata"]["uid"], "controller": True,
                                          "blockOwnerDeletion": True}
        assert {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"} in \
            p["spec"]["tolerations"]
    assert scheduler.schedule_once(v118.kube, V118) >= 2
    bound = {p["spec"]["nodeName"] for p in v118.pods("app=agent")}
    assert bound == {"a", "b"}  # the cordoned node got its daemon pod, an RC pod would not
    v118.cm.run_once(monitor=False)
    assert len(v118.pods("app=agent")) == 2  # no duplicates once bound
    status_ = v118.kube.call("GET", "/apis/apps/v1/namespaces/default/daemonsets/agent")["status"]
    assert status_["desiredNumberScheduled"] == 2 and status_["currentNumberScheduled"] == 2
    # The garbage collector (1.3+) removes the pods of a deleted DaemonSet.
    v118.kube.call("DELETE", "/apis/apps/v1/namespaces/default/daemonsets/agent")
    v118.cm.run_once(monitor=False)
    assert v118.pods("app=agent") == []


@needs_etcd
def test_1_18_rc_pods_carry_owner_references_not_created_by(v118: Server) -> None:
    v118.node("c")
    rc = v118.rc("api", 1)
    v118.cm.run_once(monitor=False)
    (pod,) = v118.pods("app=api")
    assert kobj.controller_ref(pod)["uid"] == rc["metadata"]["uid"]  # type: ignore[index]
    assert "kubernetes.io/created-by" not in (pod["metadata"].get("annotations") or {})


@needs_etcd
def test_1_18_kubelet_renews_its_lease_and_the_lease_keeps_the_node_ready(v118: Server, tmp_path: Path) -> None:
    opts = kubelet.parse_flags("kubelet", [f"--kubeconfig={kubeconfig(tmp_path, v118.url)}", "--hostname-override=k1",
                                           f"--root-dir={tmp_path / 'root'}"], kubelet.flags_for("kubelet", V118))
    k = kubelet.Kubelet(opts, Docker(f"unix://{tmp_path / 'no-docker.sock'}"), V118)
    assert k.api_url == v118.url and k.opts["allow-privileged"] is True
    assert k.register()
    k.renew_lease()
    lease = v118.kube.call("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/k1")
    assert lease["spec"]["holderIdentity"] == "k1" and lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
    first = lease["spec"]["renewTime"]
    time.sleep(0.01)
    k.renew_lease()
    assert v118.kube.call("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/k1")[
        "spec"]["renewTime"] > first
    # An unchanged status is not re-posted before nodeStatusReportFrequency (5 min).
    rv = v118.kube.call("GET", "/api/v1/nodes/k1")["metadata"]["resourceVersion"]
    k.heartbeat()
    assert v118.kube.call("GET", "/api/v1/nodes/k1")["metadata"]["resourceVersion"] == rv
    # Its heartbeat does not change, but a renewed lease says the node lives: still Ready.
    clock = [time.time()]
    cm = controller_manager.ControllerManager(KubeClient(v118.url), grace=3.0, rel=V118, clock=lambda: clock[0])

    def monitor() -> str:
        cm.monitor_nodes(v118.kube.list("/api/v1/nodes"), [])
        return str(kobj.condition(v118.kube.call("GET", "/api/v1/nodes/k1"), "Ready")["status"])  # type: ignore[index]

    assert monitor() == "True"
    clock[0] += 2.5
    time.sleep(0.01)
    k.renew_lease()
    clock[0] += 2.5
    assert monitor() == "True"
    # No renewal and no new heartbeat for longer than the grace: Ready=Unknown.
    clock[0] += 3.5
    assert monitor() == "Unknown"
    # ...which the kubelet, seeing a changed status, re-posts at once.
    k.heartbeat()
    assert kobj.condition(v118.kube.call("GET", "/api/v1/nodes/k1"), "Ready")["status"] == "True"  # type: ignore[index]


@needs_etcd
def test_1_1_kubelet_registers_the_1_1_way(v11: Server, tmp_path: Path) -> None:
    opts = kubelet.parse_flags("kubelet", [f"--api-servers={v11.url}", "--hostname-override=k11",
                                           "--register-schedulable=false"], kubelet.flags_for("kubelet", V11))
    k = kubelet.Kubelet(opts, Docker(f"unix://{tmp_path / 'no-docker.sock'}"), V11)
    assert k.opts["allow-privileged"] is False
    assert k.register()
    node = v11.kube.call("GET", "/api/v1/nodes/k11")
    assert node["metadata"]["labels"] == {"kubernetes.io/hostname": "k11"} and node["spec"]["unschedulable"]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.1.2"
    assert v11.kube.request("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/k11")[0] == 404


def kubeconfig(tmp: Path, server: str) -> Path:
    path = tmp / "kubelet.conf"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "lab",
                                "clusters": [{"name": "lab", "cluster": {"server": server}}],
                                "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "kubelet"}}],
                                "users": [{"name": "kubelet", "user": {}}]}))
    return path
