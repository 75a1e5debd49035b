"""piprov's own disruption budget on servers without PodDisruptionBudgets (1.1): decisions and drains.

The decisions are pure functions of 1.1 documents (tests/unit/data/kube/v1.1/rc.json, pods-httpd.json;
garbage in tests/unit/data/kube/garbage/); the drains run against tests/unit/kubefake.py, whose
"replication manager" recreates a deleted pod on the other node, Ready after a few requests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubefake import DATA, FakeKube, document, fake_time, node_obj, pod_obj, rc_obj

from piprov.kube import budget
from piprov.kube import drain as kdrain
from piprov.kube.budget import Admission, BudgetError, Owner, RcSpec
from piprov.kube.client import is_unschedulable

JSON = dict[str, Any]
HTTPD = Owner("default", "ReplicationController", "httpd")
NODE = "10.0.0.2"


def selected() -> list[JSON]:
    return list(document("v1.1", "pods-httpd.json")["items"])


def on_node(items: list[JSON]) -> list[JSON]:
    return [p for p in items if p["spec"]["nodeName"] == NODE]


def names(pods: list[JSON]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


# -- the decisions ------------------------------------------------------------------------------------------


def test_the_1_1_rc_gives_its_desired_count_and_selector() -> None:
    spec = budget.rc_spec(document("v1.1", "rc.json"), HTTPD)
    assert spec == RcSpec(3, {"app": "httpd"}) and spec.query == "app=httpd"
    assert "readyReplicas" not in document("v1.1", "rc.json")["status"]  # 1.1 has none: pods are counted
    assert budget.rc_spec({"spec": {"selector": {"b": "2", "a": "1"}}}, HTTPD) == RcSpec(1, {"a": "1", "b": "2"})
    assert RcSpec(1, {"b": "2", "a": "1"}).query == "a=1,b=2"


@pytest.mark.parametrize("rc", json.loads((DATA / "garbage" / "rc-garbage.json").read_text())["items"],
                         ids=lambda rc: rc["metadata"]["name"])
def test_garbage_rcs_are_refused_naming_the_controller_not_guessed(rc: JSON) -> None:
    with pytest.raises(BudgetError) as ei:
        budget.rc_spec(rc, HTTPD)
    assert "httpd" in str(ei.value)


def test_the_owner_is_the_rc_of_created_by_or_of_owner_references_and_nothing_else() -> None:
    items = {p["metadata"]["name"]: p for p in document("v1.1", "pods.json")["items"]}
    assert budget.owner_of(items["httpd-a1b2c"]) == HTTPD
    assert budget.owner_of(items["logger-x9y8z"]) is None  # a DaemonSet's
    assert budget.owner_of(items["odd"]) is None and budget.owner_of(items["bare"]) is None
    modern = {p["metadata"]["name"]: p for p in document("v1.18", "pods.json")["items"]}
    assert budget.owner_of(modern["httpd-a1b2c"]) == HTTPD
    assert str(HTTPD) == "ReplicationController default/httpd"
    assert HTTPD.path == "/api/v1/namespaces/default/replicationcontrollers/httpd"


def test_one_serving_pod_goes_while_the_controller_has_its_desired_replicas_ready() -> None:
    items = selected()
    # Ready: a1b2c, d3e4f here, g5h6i elsewhere; j7k8l starting, m9n0p being deleted, q1r2s failed: 3 of 3.
    a = budget.admit(RcSpec(3, {"app": "httpd"}), HTTPD, items, NODE, on_node(items), set())
    assert names(a.go) == ["httpd-a1b2c"] and not a.single
    assert "2 of 3 replicas ready (1 on other nodes, 1 still on 10.0.0.2)" in a.waiting
    assert str(HTTPD) in a.waiting and "app=httpd" in a.waiting
    # Once a1b2c is deleted, d3e4f waits until the replacement (j7k8l) is Ready.
    rest = on_node(items)[1:]
    held = budget.admit(RcSpec(3, {"app": "httpd"}), HTTPD, items, NODE, rest, {"httpd-a1b2c-uid"})
    assert held.go == [] and "2 of 3" in held.waiting
    items[3]["status"]["conditions"][0]["status"] = "True"
    then = budget.admit(RcSpec(3, {"app": "httpd"}), HTTPD, items, NODE, rest, {"httpd-a1b2c-uid"})
    assert names(then.go) == ["httpd-d3e4f"] and then.waiting == ""


def test_a_pod_that_serves_nothing_goes_without_waiting_and_one_replica_cannot_be_kept() -> None:
    items = selected()
    items[1]["status"]["conditions"][0]["status"] = "False"
    a = budget.admit(RcSpec(5, {"app": "httpd"}), HTTPD, items, NODE, on_node(items), set())
    assert names(a.go) == ["httpd-d3e4f"] and "2 of 5" in a.waiting  # a1b2c is held: 2 serve, 5 wanted
    single = budget.admit(RcSpec(1, {"app": "httpd"}), HTTPD, items, NODE, on_node(items), set())
    assert names(single.go) == ["httpd-d3e4f", "httpd-a1b2c"] and single.single and single.waiting == ""
    assert budget.admit(RcSpec(3, {"app": "httpd"}), HTTPD, items, NODE, [], set()) == Admission()


def test_garbage_in_the_selected_pods_counts_for_nothing() -> None:
    garbage = json.loads((DATA / "garbage" / "pods-selected-garbage.json").read_text())["items"]
    here = on_node(selected())
    a = budget.admit(RcSpec(2, {"app": "httpd"}), HTTPD, garbage + here, NODE, here, set())
    assert names(a.go) == ["httpd-a1b2c"] and "1 of 2 replicas ready (0 on other nodes, 1 still" in a.waiting
    # Each garbage pod is either not serving or (a server that ignored labelSelector) not the RC's by its labels.
    assert {p["metadata"]["name"] if isinstance(p["metadata"], dict) else "?" for p in garbage
            if isinstance(p, dict) and budget.serving(p)} == {"other-labels", "labels-not-map", "?"}


# -- drains on a 1.1 fake ---------------------------------------------------------------------------------------


def cluster(release: str = "v1.1", **kw: Any) -> FakeKube:
    api = FakeKube(release, **kw)
    api.nodes_ = {"n1": node_obj("n1"), "n2": node_obj("n2")}
    api.respawn_on = "n2"
    return api


def rc_pods(api: FakeKube, app: str, n: int, replicas: int | None = None) -> None:
    api.rcs_[f"default/{app}"] = rc_obj(app, n if replicas is None else replicas)
    api.pods_ += [pod_obj(f"{app}-{i}", "n1", app=app, release=api.release) for i in range(n)]


def deleted(api: FakeKube) -> list[str]:
    return [n for n, _ in api.deletions]


def test_1_1_every_replica_on_the_node_goes_one_at_a_time_and_the_workload_keeps_serving() -> None:
    api = cluster()
    rc_pods(api, "web", 3)
    api.start_ticks = 6
    clock, sleep = fake_time()
    said: list[str] = []
    res = kdrain.drain(api, "n1", timeout=60, say=said.append, clock=clock, sleep=sleep)
    assert res.ok and sorted(res.evicted) == ["default/web-0", "default/web-1", "default/web-2"]
    assert api.min_serving["web"] == 2  # never more than one short of 3, where 1.1's own drain left 0
    assert all(p["spec"]["nodeName"] == "n2" for p in api.pods_) and res.waiting == {}
    assert any("no PodDisruptionBudgets on this server" in s for s in said)
    assert any("budget: ReplicationController default/web: 2 of 3 replicas ready" in s for s in said)
    assert ("GET", "/api/v1/namespaces/default/replicationcontrollers/web") in api.log
    assert ("GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb") in api.log


def test_1_1_controllers_go_in_parallel_and_unbudgeted_pods_at_once() -> None:
    api = cluster()
    rc_pods(api, "web", 2)
    rc_pods(api, "db", 2)
    api.pods_.append(pod_obj("loner", "n1", rc=False, release="v1.1"))
    api.start_ticks = 50  # replacements take long: the first round shows what goes together
    clock, sleep = fake_time()
    with pytest.raises(kdrain.DrainError):
        kdrain.drain(api, "n1", timeout=3, options=kdrain.DrainOptions(force=True), clock=clock, sleep=sleep)
    assert deleted(api) == ["web-0", "db-0", "loner"]


def test_1_1_a_single_replica_is_said_not_kept_and_deleted() -> None:
    api = cluster()
    rc_pods(api, "solo", 1)
    api.start_ticks = 50
    clock, sleep = fake_time()
    said: list[str] = []
    res = kdrain.drain(api, "n1", timeout=30, say=said.append, clock=clock, sleep=sleep)
    assert res.ok and deleted(api) == ["solo-0"]
    assert sum("ReplicationController default/solo has 1 desired replica: it cannot be kept serving" in s
               for s in said) == 1


def test_1_1_a_budget_that_cannot_be_kept_times_out_naming_the_controller_and_uncordons() -> None:
    api = cluster()
    rc_pods(api, "web", 2, replicas=3)  # 3 wanted, 2 here, none elsewhere: nothing may go
    clock, sleep = fake_time()
    with pytest.raises(kdrain.DrainError) as ei:
        kdrain.drain(api, "n1", timeout=5, clock=clock, sleep=sleep)
    msg = str(ei.value)
    assert "timed out after 5 s with 2 pods left" in msg and "uncordoned again" in msg
    assert "piprov's budget waited for ReplicationController default/web: 2 of 3 replicas ready" in msg
    assert "no disruption budgets" in str(ei.value.hint) and "--timeout" in str(ei.value.hint)
    assert api.deletions == [] and not is_unschedulable(api.nodes_["n1"])


def test_1_1_replacements_that_never_get_ready_stop_the_drain_after_one_pod() -> None:
    api = cluster()
    rc_pods(api, "web", 3)
    api.start_ticks = 10_000
    clock, sleep = fake_time()
    with pytest.raises(kdrain.DrainError, match="2 pods left.*2 of 3 replicas ready"):
        kdrain.drain(api, "n1", timeout=10, clock=clock, sleep=sleep)
    assert deleted(api) == ["web-0"]


def test_1_1_a_missing_controller_is_said_and_its_pods_go() -> None:
    api = cluster()
    api.pods_ = [pod_obj("orphan-0", "n1", app="orphan", release="v1.1"), pod_obj("orphan-1", "n1", app="orphan",
                                                                                    release="v1.1")]
    clock, sleep = fake_time()
    said: list[str] = []
    assert kdrain.drain(api, "n1", timeout=30, say=said.append, clock=clock, sleep=sleep).ok
    assert deleted(api) == ["orphan-0", "orphan-1"]
    assert sum("ReplicationController default/orphan not found" in s for s in said) == 1


def test_1_1_a_garbage_controller_stops_the_drain_and_uncordons() -> None:
    api = cluster()
    rc_pods(api, "web", 2)
    api.rcs_["default/web"]["spec"]["replicas"] = "2"
    with pytest.raises(BudgetError, match="spec.replicas"):
        kdrain.drain(api, "n1", timeout=5)
    assert api.deletions == [] and not is_unschedulable(api.nodes_["n1"])


def test_the_server_s_budgets_and_a_dead_node_need_no_budget_of_piprov() -> None:
    api = cluster("v1.18")
    api.pods_ = [pod_obj("web-0", "n1"), pod_obj("web-1", "n1")]
    clock, sleep = fake_time()
    assert kdrain.drain(api, "n1", timeout=30, clock=clock, sleep=sleep).ok
    assert not any("replicationcontrollers" in p for _, p in api.log)
    dead = cluster()
    rc_pods(dead, "web", 3)
    dead.start_ticks = 10_000
    assert kdrain.drain(dead, "n1", timeout=30, unreachable=True, clock=clock, sleep=sleep).ok
    assert deleted(dead) == ["web-0", "web-1", "web-2"]
    assert not any("replicationcontrollers" in p for _, p in dead.log)
