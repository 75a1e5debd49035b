"""Drain and Ready freshness per Kubernetes release, from data files and a fake transport of each release.

The decisions (what the server can do, which pods go) are pure functions of
the documents in tests/unit/data/kube/; the request sequences run against
tests/unit/kubefake.py (1.1: no Eviction API, DELETE with grace; 1.18: evict).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubefake import DATA, FakeKube, document, fake_time, node_obj, pod_obj

from piprov.kube import discovery, pods
from piprov.kube import drain as kdrain
from piprov.kube.client import is_unschedulable, json_object
from piprov.kube.discovery import Capabilities, DiscoveryError
from piprov.kube.pods import DrainOptions

JSON = dict[str, Any]


def caps_of(release: str) -> Capabilities:
    def fetch(path: str) -> tuple[int, JSON]:
        name = {"/apis": "apis.json", "/api/v1": "api-v1.json", "/version": "version.json"}[path]
        return 200, document(release, name)

    return discovery.read_capabilities(fetch)


# -- what the server can do, from its discovery documents ----------------------------------------------------


def test_1_1_has_no_eviction_no_budgets_no_leases() -> None:
    c = caps_of("v1.1")
    assert c == Capabilities("v1.1.2", None, None, None)
    assert "no Eviction API" in c.describe() and "heartbeats" in c.describe()


def test_1_18_evicts_through_policy_v1beta1_and_has_node_leases() -> None:
    assert caps_of("v1.18") == Capabilities("v1.18.20", "policy/v1beta1", "policy/v1beta1", "coordination.k8s.io/v1")


def test_kubectl_needs_both_the_policy_group_and_the_eviction_resource() -> None:
    groups = discovery.group_list(document("v1.18", "apis.json"))
    core = discovery.resource_kinds(document("v1.18", "api-v1.json"))
    assert discovery.capabilities_from(groups, core, "x").eviction == "policy/v1beta1"
    without = {k: v for k, v in core.items() if k != "pods/eviction"}
    assert discovery.capabilities_from(groups, without, "x").eviction is None
    no_policy = {k: v for k, v in groups.items() if k != "policy"}
    assert not discovery.needs_core_list(no_policy)
    assert discovery.capabilities_from(no_policy, core, "x").eviction is None
    # 1.1's APIResources have no kind: even a pods/eviction entry there would not be the Eviction kind.
    assert discovery.resource_kinds(document("v1.1", "api-v1.json"))["pods"] == ""


def test_a_server_without_api_groups_deletes() -> None:
    def fetch(path: str) -> tuple[int, JSON]:
        return (404, {}) if path == "/apis" else (404, {})

    assert discovery.read_capabilities(fetch) == Capabilities("unknown", None, None, None)


@pytest.mark.parametrize("name", ["apis-not-a-group-list.json", "apis-groups-not-a-list.json",
                                  "apis-nameless-group.json", "apis-html.txt"])
def test_garbage_group_lists_are_refused_not_guessed(name: str) -> None:
    doc = json_object((DATA / "garbage" / name).read_bytes())
    with pytest.raises(DiscoveryError, match="/apis"):
        discovery.group_list(doc)


def test_garbage_resource_list_and_failing_discovery_are_refused() -> None:
    with pytest.raises(DiscoveryError, match="/api/v1 is not an APIResourceList"):
        discovery.resource_kinds(json_object((DATA / "garbage" / "api-v1-not-a-resource-list.json").read_bytes()))

    def fetch(path: str) -> tuple[int, JSON]:
        return (200, document("v1.18", "apis.json")) if path == "/apis" else (500, {"message": "etcd down"})

    with pytest.raises(DiscoveryError, match="GET /api/v1 answered 500: etcd down"):
        discovery.read_capabilities(fetch)


# -- which pods go, from each release's pod list ---------------------------------------------------------------

BUCKET = {"refused-unmanaged": pods.UNMANAGED_REFUSAL, "refused-local": pods.LOCAL_DATA_REFUSAL,
          "refused-unreadable": pods.UNREADABLE_REFUSAL}


def pod_list(release: str) -> list[JSON]:
    return list(document(release, "pods.json")["items"])


def expected(items: list[JSON], label: str) -> list[str]:
    return [pods.pod_key(p) for p in items if p["metadata"]["labels"]["expect"] == label]


@pytest.mark.parametrize("release", ["v1.1", "v1.18"])
def test_default_options_sort_each_release_as_its_data_file_says(release: str) -> None:
    items = pod_list(release)
    s = pods.sort_pods(items)
    assert [pods.pod_key(p) for p in s.remove] == expected(items, "remove")
    assert [pods.pod_key(p) for p in s.mirror] == expected(items, "mirror")
    assert [pods.pod_key(p) for p in s.daemonset] == expected(items, "daemonset") != []
    want = {BUCKET[b]: expected(items, b) for b in BUCKET if expected(items, b)}
    assert s.refused == want
    assert s.warnings == {}


@pytest.mark.parametrize("release", ["v1.1", "v1.18"])
def test_force_and_delete_local_data_allow_what_they_name_and_no_more(release: str) -> None:
    items = pod_list(release)
    s = pods.sort_pods(items, DrainOptions(force=True))
    assert list(s.refused) == [pods.LOCAL_DATA_REFUSAL]  # --force does not delete local data
    assert s.warnings[pods.UNMANAGED_WARNING] == expected(items, "refused-unmanaged") + expected(items, "refused-unreadable")
    both = pods.sort_pods(items, DrainOptions(force=True, delete_local_data=True))
    assert both.refused == {}
    assert both.warnings[pods.LOCAL_DATA_WARNING] == expected(items, "refused-local")
    assert [pods.pod_key(p) for p in both.daemonset] == expected(items, "daemonset")  # never removed


@pytest.mark.parametrize("release", ["v1.1", "v1.18"])
def test_no_ignore_daemonsets_refuses_as_kubectl_without_the_flag(release: str) -> None:
    s = pods.sort_pods(pod_list(release), DrainOptions(ignore_daemonsets=False))
    assert s.refused[pods.DAEMONSET_REFUSAL] == ["default/logger-x9y8z"] and s.daemonset == []


def test_garbage_pods_are_sorted_without_a_crash_and_never_removed_by_default() -> None:
    items = json.loads((DATA / "garbage" / "pods-garbage.json").read_text())["items"]
    s = pods.sort_pods(items)
    assert [pods.pod_key(p) for p in s.remove] == ["default/vols-not-list"]
    assert s.refused == {pods.UNMANAGED_REFUSAL: ["default/None", "default/owners-garbage"],
                         pods.UNREADABLE_REFUSAL: ["default/no-spec", "default/ref-no-kind"]}


def test_the_budget_is_named_from_the_429_causes() -> None:
    status = {"kind": "Status", "code": 429, "details": {"causes": [
        {"reason": "DisruptionBudget", "message": "The disruption budget httpd needs 4 healthy pods and has 4 currently"},
        {"reason": "Other", "message": "The disruption budget nope needs"}]}}
    assert pods.budgets_in_refusal(status) == ["httpd"]
    for garbage in ({}, {"details": "x"}, {"details": {"causes": "x"}}, {"details": {"causes": [1, {"reason": "DisruptionBudget"}]}}):
        assert pods.budgets_in_refusal(garbage) == []


# -- request sequences per release ------------------------------------------------------------------------------


def pods_on_n1(release: str, *expects: str) -> list[JSON]:
    """The release's pod list (those whose `expect` label is one of ``expects``, or all), on node n1."""
    items = [p for p in pod_list(release) if not expects or p["metadata"]["labels"]["expect"] in expects]
    for p in items:
        p["spec"]["nodeName"] = "n1"
    return items


def cluster(release: str, **kw: Any) -> FakeKube:
    api = FakeKube(release, **kw)
    api.nodes_ = {"n1": node_obj("n1"), "n2": node_obj("n2")}
    return api


def writes(api: FakeKube) -> list[tuple[str, str]]:
    return [(m, p) for m, p in api.log if m != "GET"]


def test_1_1_cordons_then_deletes_with_grace_and_waits_never_evicting() -> None:
    api = cluster("v1.1")
    api.pods_ = [pod_obj("w1", "n1", release="v1.1"), pod_obj("w2", "n1", release="v1.1")]
    api.respawn_on = "n2"
    clock, sleep = fake_time()
    said: list[str] = []
    res = kdrain.drain(api, "n1", timeout=30, say=said.append, clock=clock, sleep=sleep)
    assert res.ok and res.how == "deleted" and res.evicted == ["default/w1", "default/w2"]
    assert "v1.1.2 has no Eviction API" in res.message
    assert api.log[:2] == [("GET", "/apis"), ("GET", "/version")]  # no policy group: no /api/v1, as kubectl
    assert writes(api) == [("PATCH", "/api/v1/nodes/n1"), ("DELETE", "/api/v1/namespaces/default/pods/w1"),
                           ("DELETE", "/api/v1/namespaces/default/pods/w2")]
    assert api.deletions == [("w1", None), ("w2", None)]  # the pods' own grace period (kubectl's -1)
    assert not any(p.endswith("/eviction") or "poddisruptionbudgets" in p for _, p in api.log)
    assert [p["spec"]["nodeName"] for p in api.pods_] == ["n2", "n2"] and is_unschedulable(api.nodes_["n1"])


def test_1_1_grace_period_goes_into_the_delete_options() -> None:
    api = cluster("v1.1")
    api.pods_ = [pod_obj("w1", "n1", release="v1.1")]
    clock, sleep = fake_time()
    kdrain.drain(api, "n1", timeout=30, options=DrainOptions(grace_period=5), clock=clock, sleep=sleep)
    assert api.deletions == [("w1", {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 5})]


def test_1_1_daemonset_and_mirror_pods_stay_and_are_listed() -> None:
    api = cluster("v1.1")
    api.pods_ = pods_on_n1("v1.1", "remove", "daemonset", "mirror")
    clock, sleep = fake_time()
    said: list[str] = []
    res = kdrain.drain(api, "n1", timeout=30, say=said.append, clock=clock, sleep=sleep)
    assert res.daemonset_skipped == ["default/logger-x9y8z"] and res.mirror_skipped == ["kube-system/kube-proxy-10.0.0.2"]
    assert [n for n, _ in api.deletions] == ["httpd-a1b2c", "httpd-d3e4f", "done"]
    assert any("DaemonSet pods stay" in s and "logger-x9y8z" in s for s in said)


def test_1_1_unmanaged_and_local_data_pods_stop_the_drain_before_it_touches_the_node() -> None:
    api = cluster("v1.1")
    api.pods_ = pods_on_n1("v1.1")
    with pytest.raises(kdrain.DrainError) as ei:
        kdrain.drain(api, "n1", timeout=3)
    msg = str(ei.value)
    assert "default/bare" in msg and "--force" in msg and "default/cache-q7w8e" in msg and "--delete-local-data" in msg
    assert "default/odd" in msg and "created-by" in msg
    assert writes(api) == [] and not is_unschedulable(api.nodes_["n1"])
    clock, sleep = fake_time()
    res = kdrain.drain(api, "n1", timeout=30, options=DrainOptions(force=True, delete_local_data=True),
                       clock=clock, sleep=sleep)
    assert sorted(res.evicted) == ["default/bare", "default/cache-q7w8e", "default/done", "default/httpd-a1b2c",
                                   "default/httpd-d3e4f", "default/odd"]
    assert set(res.warnings) == {pods.UNMANAGED_WARNING, pods.LOCAL_DATA_WARNING}


def test_1_1_a_dead_kubelet_times_the_drain_out_unless_the_node_is_unreachable() -> None:
    api = cluster("v1.1")
    api.pods_ = [pod_obj("w1", "n1", release="v1.1")]
    api.kubelet_alive = False
    clock, sleep = fake_time()
    with pytest.raises(kdrain.DrainError, match="1 pods left") as ei:
        kdrain.drain(api, "n1", timeout=5, clock=clock, sleep=sleep)
    assert "uncordoned again" in str(ei.value) and "still terminating" in str(ei.value.hint)
    assert len(api.deletions) == 1  # deleted once, then waited for: no DELETE per round
    res = kdrain.drain(api, "n1", timeout=5, unreachable=True, clock=clock, sleep=sleep)
    assert res.ok


def test_1_18_evicts_with_the_preferred_policy_version_and_skips_daemonsets() -> None:
    api = cluster("v1.18")
    api.pods_ = pods_on_n1("v1.18", "remove", "daemonset", "mirror")
    clock, sleep = fake_time()
    res = kdrain.drain(api, "n1", timeout=30, clock=clock, sleep=sleep)
    assert res.ok and res.how == "evicted" and res.server == "v1.18.20"
    assert api.log[:3] == [("GET", "/apis"), ("GET", "/api/v1"), ("GET", "/version")]
    assert api.evictions == ["httpd-a1b2c", "web-7d9f-k2l3m", "done"] and api.deletions == []
    assert res.daemonset_skipped == ["default/logger-x9y8z"]
    assert [p["metadata"]["name"] for p in api.pods_] == ["logger-x9y8z", "kube-proxy-10.0.0.2"]


def test_1_18_graceful_evictions_are_waited_for_not_repeated() -> None:
    api = cluster("v1.18")
    api.pods_ = [pod_obj("w1", "n1")]
    api.graceful_evictions, api.kubelet_alive = True, False
    clock, sleep = fake_time()
    with pytest.raises(kdrain.DrainError, match="1 pods left"):
        kdrain.drain(api, "n1", timeout=4, clock=clock, sleep=sleep)
    assert api.evictions == ["w1"]


def test_1_18_a_404_eviction_of_a_pod_that_is_still_there_is_an_error_not_done() -> None:
    api = cluster("v1.18")
    api.pods_ = [pod_obj("w1", "n1")]
    api.serve_eviction = False  # discovery lists pods/eviction, the path answers 404 anyway
    with pytest.raises(kdrain.DrainError, match="answered 404 but the pod is still there") as ei:
        kdrain.drain(api, "n1", timeout=30)
    assert "v1.18.20" in str(ei.value) and "uncordoned again" in str(ei.value)
    assert api.pod_named("w1") is not None and not is_unschedulable(api.nodes_["n1"])
    assert ("GET", "/api/v1/namespaces/default/pods/w1") in api.log  # the 404 was checked with a GET


def test_1_18_a_404_eviction_of_a_pod_that_a_get_shows_gone_counts_as_gone() -> None:
    api = cluster("v1.18")
    api.pods_ = [pod_obj("w1", "n1")]
    orig = api._evict

    def vanish_first(name: str, pod: JSON | None) -> Any:
        if pod is not None:
            api.pods_.remove(pod)  # deleted by someone else between our list and our eviction
        return orig(name, None)

    api._evict = vanish_first  # type: ignore[method-assign]
    clock, sleep = fake_time()
    said: list[str] = []
    res = kdrain.drain(api, "n1", timeout=30, say=said.append, clock=clock, sleep=sleep)
    assert res.ok and res.evicted == ["default/w1"] and any("already gone" in s for s in said)


def test_1_18_a_replacement_under_the_same_name_counts_as_gone() -> None:
    api = cluster("v1.18")
    old = pod_obj("db-0", "n1")
    api.pods_ = [old]
    orig = api._evict

    def replaced(name: str, pod: JSON | None) -> Any:
        new = pod_obj("db-0", "n2")
        new["metadata"]["uid"] = "db-0-uid-2"
        api.pods_[:] = [new]
        return orig(name, None)

    api._evict = replaced  # type: ignore[method-assign]
    clock, sleep = fake_time()
    assert kdrain.drain(api, "n1", timeout=30, clock=clock, sleep=sleep).ok


def test_capabilities_are_read_once_per_run_and_apiserver() -> None:
    api = cluster("v1.18")
    clock, sleep = fake_time()
    kdrain.drain(api, "n1", timeout=3, clock=clock, sleep=sleep)
    kdrain.drain(api, "n2", timeout=3, clock=clock, sleep=sleep)
    assert api.log.count(("GET", "/apis")) == 1
    discovery.forget(api.base)
    kdrain.drain(api, "n1", timeout=3, clock=clock, sleep=sleep)
    assert api.log.count(("GET", "/apis")) == 2


def test_unreadable_discovery_stops_the_drain_before_anything_changes() -> None:
    api = cluster("v1.18")
    api.pods_ = [pod_obj("w1", "n1")]
    api.discovery_override["/apis"] = (200, {"message": "<html>proxy error</html>"})
    with pytest.raises(DiscoveryError, match="/apis is not an APIGroupList"):
        kdrain.drain(api, "n1", timeout=3)
    assert writes(api) == []


# -- Ready freshness per release ------------------------------------------------------------------------------------


@pytest.mark.parametrize("release,token", [("v1.1", "heartbeat t"), ("v1.18", "lease r")])
def test_ready_reader_takes_freshness_from_leases_only_where_discovery_lists_them(release: str, token: str) -> None:
    api = cluster(release)
    api.kubelets_report = True
    read = discovery.ready_reader(api, "n1")
    first, second = read(), read()
    assert first[0] and second[0]
    assert first[1] is not None and first[1].startswith(token) and first[1] != second[1]


def test_freshness_from_data_files() -> None:
    node = node_obj("10.0.0.2", beat="2021-07-01T09:55:00Z")
    lease = document("v1.18", "lease.json")
    assert discovery.freshness(node, lease) == (True, "lease 2021-07-01T10:00:10.123456Z", "Ready")
    assert discovery.freshness(node, None) == (True, "heartbeat 2021-07-01T09:55:00Z", "Ready")
    assert discovery.freshness(node, {"spec": "garbage"}) == (True, "heartbeat 2021-07-01T09:55:00Z", "Ready")
    assert discovery.freshness(node_obj("x", ready=False), lease)[:2] == (False, None)
    assert discovery.lease_path(caps_of("v1.18"), "10.0.0.2") == \
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/10.0.0.2"
    assert discovery.lease_path(caps_of("v1.1"), "10.0.0.2") is None


def test_data_files_are_what_the_readme_says(tmp_path: Path) -> None:
    for release in ("v1.1", "v1.18"):
        for p in pod_list(release):
            assert p["metadata"]["labels"]["expect"] in ("remove", "mirror", "daemonset", *BUCKET)
        assert ("ownerReferences" in json.dumps(pod_list(release))) is (release == "v1.18")
