"""Rolling logic on data: pod sorting, PDB selectors, cordon ownership, drain, batches, state file.

The drain runs against a small in-memory Kubernetes API of one release
(tests/unit/kubefake.py) that speaks the paths and status codes piprov uses:
nodes, pods by node, evictions with a disruption budget (429), budgets by
namespace. These tests use the 1.18 one (eviction); test_drain_versions.py
has the per-release decisions.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from kubefake import FakeKube, fake_time, node_obj, pod_obj

from piprov.errors import ClusterError
from piprov.graph import load_graph
from piprov.inventory import load_text
from piprov.kube import drain as kdrain
from piprov.kube import etcd, pods, rollout
from piprov.kube.client import ApiResponse, KubeApi, is_unschedulable
from piprov.kube.pods import DrainOptions
from piprov.orchestrate import StepResult
from piprov.plan import ComponentPlan, NodePlan, Plan

JSON = dict[str, Any]
DISRUPTIVE = load_graph().disruptive_units()


# -- pure helpers ---------------------------------------------------------------------------------------


def test_sort_pods_keeps_mirror_pods_and_stops_on_unmanaged_ones() -> None:
    ps = [pod_obj("a", "n"), pod_obj("m", "n", mirror=True), pod_obj("bare", "n", rc=False)]
    s = pods.sort_pods(ps)
    assert [p["metadata"]["name"] for p in s.remove] == ["a"]
    assert [p["metadata"]["name"] for p in s.mirror] == ["m"]
    assert s.refused == {pods.UNMANAGED_REFUSAL: ["default/bare"]}
    forced = pods.sort_pods(ps, DrainOptions(force=True))
    assert [p["metadata"]["name"] for p in forced.remove] == ["a", "bare"]
    assert forced.warnings == {pods.UNMANAGED_WARNING: ["default/bare"]}


def test_created_by_annotation_counts_as_a_controller() -> None:
    p = pod_obj("a", "n", rc=True, release="v1.1")
    ref, readable = pods.controller_of(p)
    assert readable and ref is not None and ref.kind == "ReplicationController" and ref.source == pods.CREATED_BY_ANNOTATION


@pytest.mark.parametrize("selector,labels,want", [
    ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "1"}, True),
    ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
    ({}, {"app": "web"}, False),
    (None, {"app": "web"}, False),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}, {"app": "api"}, True),
    ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}, {"app": "web"}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"app": "web"}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"app": "web"}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "Bogus"}]}, {"tier": "x"}, False),
])
def test_selector_matches(selector: Any, labels: Any, want: bool) -> None:
    assert pods.selector_matches(selector, labels) is want


def test_find_leases_ignores_garbage_values() -> None:
    listing = {"node": {"nodes": [
        {"key": "/coreos.com/network/subnets/10.0.1.0-24", "value": '{"PublicIP": "10.1.1.2"}'},
        {"key": "/coreos.com/network/subnets/10.0.2.0-24", "value": '{"PublicIP": "10.1.1.3"}'},
        {"key": "/coreos.com/network/subnets/10.0.3.0-24", "value": "not json"},
        {"key": "/coreos.com/network/subnets/10.0.4.0-24", "value": "[1]"},
    ]}}
    assert etcd.find_leases(listing, "10.1.1.3") == ["/coreos.com/network/subnets/10.0.2.0-24"]
    assert etcd.find_leases({}, "10.1.1.3") == []


# -- cordon ownership -------------------------------------------------------------------------------------


def test_cordon_only_ready_schedulable_nodes_and_uncordon_only_ours() -> None:
    api = FakeKube()
    api.nodes_ = {"a": node_obj("a"), "admin": node_obj("admin", unschedulable=True), "down": node_obj("down", False)}
    assert kdrain.cordon(api, "a") is True
    assert is_unschedulable(api.nodes_["a"]) and kdrain.cordoned_by_us(api.nodes_["a"])
    assert kdrain.cordon(api, "a") is True  # still ours on a second look (a resumed run)
    assert kdrain.cordon(api, "admin") is False
    assert kdrain.cordon(api, "down") is False
    assert kdrain.uncordon(api, "admin", only_ours=True) is False
    assert is_unschedulable(api.nodes_["admin"])
    assert kdrain.uncordon(api, "a", only_ours=True) is True
    assert not is_unschedulable(api.nodes_["a"]) and not kdrain.cordoned_by_us(api.nodes_["a"])


# -- drain ---------------------------------------------------------------------------------------------


def test_drain_evicts_everything_but_mirror_pods() -> None:
    api = FakeKube(min_available=1)
    api.nodes_ = {"n1": node_obj("n1"), "n2": node_obj("n2")}
    api.pods_ = [pod_obj("w1", "n1"), pod_obj("w2", "n1"), pod_obj("static", "n1", mirror=True), pod_obj("w3", "n2")]
    api.respawn_on = "n2"
    clock, sleep = fake_time()
    said: list[str] = []
    res = kdrain.drain(api, "n1", timeout=30, say=said.append, clock=clock, sleep=sleep)
    assert res.ok and res.we_cordoned
    assert sorted(res.evicted) == ["default/w1", "default/w2"]
    assert res.mirror_skipped == ["default/static"]
    assert [p["metadata"]["name"] for p in api.pods_ if p["spec"]["nodeName"] == "n1"] == ["static"]
    assert is_unschedulable(api.nodes_["n1"])  # stays cordoned after a successful drain


def test_drain_names_the_budget_and_uncordons_on_timeout() -> None:
    api = FakeKube(min_available=2)
    api.nodes_ = {"n1": node_obj("n1")}
    api.pods_ = [pod_obj("w1", "n1"), pod_obj("w2", "n1")]
    clock, sleep = fake_time()
    said: list[str] = []
    with pytest.raises(kdrain.DrainError) as ei:
        kdrain.drain(api, "n1", timeout=10, say=said.append, clock=clock, sleep=sleep)
    msg = str(ei.value)
    assert "web-pdb" in msg and "timed out after 10 s" in msg and "uncordoned again" in msg
    assert "other" not in msg.split("PodDisruptionBudget")[1]
    assert not is_unschedulable(api.nodes_["n1"])
    # Each pod's refusal was said once, not once per retry (there were ten).
    assert sum("refused by PodDisruptionBudget web-pdb" in s for s in said) == 2


def test_drain_keep_cordoned_and_admin_cordon_are_respected() -> None:
    api = FakeKube(min_available=2)
    api.nodes_ = {"n1": node_obj("n1"), "n2": node_obj("n2", unschedulable=True)}
    api.pods_ = [pod_obj("w1", "n1"), pod_obj("w2", "n2")]
    clock, sleep = fake_time()
    with pytest.raises(kdrain.DrainError, match="left cordoned"):
        kdrain.drain(api, "n1", timeout=3, keep_cordoned=True, clock=clock, sleep=sleep)
    assert is_unschedulable(api.nodes_["n1"])
    with pytest.raises(kdrain.DrainError):
        kdrain.drain(api, "n2", timeout=3, clock=clock, sleep=sleep)
    assert is_unschedulable(api.nodes_["n2"])  # an admin's cordon is never lifted by us


def test_drain_refuses_unmanaged_pods_before_touching_the_node() -> None:
    api = FakeKube()
    api.nodes_ = {"n1": node_obj("n1")}
    api.pods_ = [pod_obj("bare", "n1", rc=False)]
    with pytest.raises(kdrain.DrainError, match="use --force.*default/bare"):
        kdrain.drain(api, "n1", timeout=3)
    assert not is_unschedulable(api.nodes_["n1"]) and api.evictions == []
    clock, sleep = fake_time()
    res = kdrain.drain(api, "n1", timeout=3, options=DrainOptions(force=True), clock=clock, sleep=sleep)
    assert res.evicted == ["default/bare"]


# -- batches -----------------------------------------------------------------------------------------------

INVENTORY = """\
cluster: {name: test}
nodes:
  - {name: m, address: 10.0.0.1, role: master}
  - {name: w1, address: 10.0.0.2, role: worker}
  - {name: w2, address: 10.0.0.3, role: worker}
  - {name: w3, address: 10.0.0.4, role: worker}
  - {name: w4, address: 10.0.0.5, role: worker}
"""


def _np(node: str, restart: list[str] | None = None, start: list[str] | None = None) -> NodePlan:
    cp = ComponentPlan("kube", restart=list(restart or []), start=list(start or []))
    return NodePlan(node, "x", None, [cp])


def test_batches_master_first_alone_then_workers(tmp_path: Path) -> None:
    inv = load_text(INVENTORY, tmp_path / "inventory.yaml")
    kube = ["k8s-worker.service"]
    plan = Plan([_np("m", ["k8s-master.service"]), _np("w1", kube), _np("w2", kube), _np("w3", kube),
                 _np("w4", [], ["k8s-worker.service"])])
    got = [(b.nodes, b.drain) for b in rollout.rolling_batches(inv, plan, DISRUPTIVE, batch=2)]
    assert got == [(("w4",), False), (("m",), True), (("w1", "w2"), True), (("w3",), True)]
    got2 = [b.nodes for b in rollout.rolling_batches(inv, plan, DISRUPTIVE, max_unavailable_pct=50)]
    assert got2 == [("w4",), ("m",), ("w1", "w2"), ("w3",)]
    got3 = [b.nodes for b in rollout.rolling_batches(inv, plan, DISRUPTIVE, max_unavailable_pct=10)]
    assert got3 == [("w4",), ("m",), ("w1",), ("w2",), ("w3",)]  # at least one at a time
    assert rollout.rolling_batches(inv, Plan([_np("m"), _np("w1")]), DISRUPTIVE) == []


def test_state_file_garbage_is_never_fatal(tmp_path: Path) -> None:
    p = tmp_path / "inv.yaml.rolling.json"
    assert rollout.RollingState.load(p) == (None, "")
    for garbage in ("{", "[1, 2]", '{"batches": 5}', '{"failed": [1]}'):
        p.write_text(garbage)
        st, why = rollout.RollingState.load(p)
        assert st is None and "rebuilt from the nodes' facts" in why
    rollout.RollingState(started="s", done=["a"], failed={"b": "x"}).save(p)
    st, why = rollout.RollingState.load(p)
    assert st is not None and st.done == ["a"] and st.failed == {"b": "x"} and why == ""


def test_rollout_stops_at_the_first_failed_batch(tmp_path: Path) -> None:
    inv_path = tmp_path / "inventory.yaml"
    inv_path.write_text(INVENTORY)
    inv = load_text(INVENTORY, inv_path)
    api = FakeKube()
    api.nodes_ = {n.address: node_obj(n.address) for n in inv.nodes}
    kube = ["k8s-worker.service"]
    plan = Plan([_np("w1", kube), _np("w2", kube), _np("w3", kube)])
    batches = rollout.rolling_batches(inv, plan, DISRUPTIVE, batch=1)
    applied: list[str] = []

    def apply(nodes: Any) -> list[StepResult]:
        applied.extend(nodes)
        if "w2" in nodes:
            return [StepResult("w2", "kube-worker", "failed", detail="cannot reach 10.0.0.3:22 over SSH")]
        return []

    api.kubelets_report = True  # every request is a kubelet's report: 1.18 renews the lease, the Node stays as is
    report = rollout.run_rollout(inv, plan, batches, api, apply, ready_timeout=5)
    assert applied == ["w1", "w2"]
    assert [r.status for r in report.batches] == ["done", "failed", "skipped"]
    assert not report.ok and report.failed is not None and "10.0.0.3:22" in report.failed.detail
    assert not is_unschedulable(api.nodes_["10.0.0.2"])  # w1 done: uncordoned
    assert kdrain.cordoned_by_us(api.nodes_["10.0.0.3"])  # w2 broken: stays cordoned, marked as ours
    assert not is_unschedulable(api.nodes_["10.0.0.4"])  # w3 untouched
    st, _ = rollout.RollingState.load(rollout.state_path(inv))
    assert st is not None and st.done == ["w1"] and list(st.failed) == ["w2"] and not st.finished
    # A re-run whose plan no longer lists w2 (fixed meanwhile) lifts our cordon and notes the resume.
    report2 = rollout.run_rollout(inv, Plan([_np("w3", kube)]), rollout.rolling_batches(inv, Plan([_np("w3", kube)]), DISRUPTIVE),
                                  api, lambda nodes: [], ready_timeout=5)
    assert report2.ok and report2.uncordoned_leftovers == ["w2"]
    assert "resuming" in report2.state_note
    assert not is_unschedulable(api.nodes_["10.0.0.3"])


# -- the one HTTP client, the one Ready reading, named steps --------------------------------------------------


def test_http_client_returns_every_answer_and_raises_only_when_nothing_answers() -> None:
    import http.server
    import threading

    from piprov import http as phttp

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            code = 404 if self.path == "/missing" else 200
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b'{"path": "%s"}' % self.path.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        ok = phttp.request("GET", base + "/x")
        assert ok.status == 200 and json.loads(ok.body) == {"path": "/x"}
        assert phttp.request("GET", base + "/missing").status == 404
        with pytest.raises(ClusterError, match="cannot reach the Kubernetes API"):
            KubeApi(base.rsplit(":", 1)[0] + ":1").get("/api/v1/nodes")
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(phttp.Unreachable):
        phttp.request("GET", "not a url")



def test_health_status_and_rollout_read_ready_alike() -> None:
    from piprov.health import _node_ready
    from piprov.kube.client import heartbeat, is_ready

    objs: list[JSON] = [node_obj("a"), node_obj("b", ready=False), {"status": {"conditions": []}}]
    for obj in objs:
        ready, beat, _ = _node_ready(200, json.dumps(obj).encode())
        assert ready is is_ready(obj)
        assert beat == (heartbeat(obj) if ready else None)


def test_steps_report_their_number_and_stop_at_the_first_failure() -> None:
    from piprov.errors import PiprovError
    from piprov.kube.procedures import Step, StepEvent, run_steps

    events: list[StepEvent] = []

    def slow(announce: Any) -> str:
        announce("draining n")
        return "2 pods evicted"

    def broken(_: Any) -> str:
        raise PiprovError("no")

    steps = [Step("draining", slow), Step("stopping units", lambda _: "x", skip="--unreachable"),
             Step("breaking", broken), Step("never", lambda _: "never")]
    with pytest.raises(PiprovError):
        run_steps(steps, events.append)
    assert [(e.index, e.total, e.kind, e.text, e.announced) for e in events] == [
        (1, 4, "announce", "draining n", False), (1, 4, "done", "2 pods evicted", True),
        (2, 4, "skipped", "--unreachable", False)]
