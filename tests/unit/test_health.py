"""Health probes from the controller, with a scripted apiserver (no network).

The Node answers are scripted in order; the discovery documents come from
tests/unit/data/kube/<release>/ (1.1 unless a test says otherwise), and on
1.18 the node's Lease answers are scripted too.
"""

from __future__ import annotations

import json

from kubefake import document

from piprov.graph.model import HealthCheck
from piprov.health import wait_http
from piprov.shell.probes import check_command


def node(ready: str, beat: str) -> tuple[int, bytes]:
    body = {"kind": "Node", "status": {"conditions": [
        {"type": "Ready", "status": ready, "lastHeartbeatTime": beat, "reason": "KubeletReady"}]}}
    return 200, json.dumps(body).encode()


class Script:
    """Answers the Node GETs from a list, then repeats the last answer; counts them. Discovery from the data files."""

    def __init__(self, *answers: tuple[int, bytes], release: str = "v1.1",
                 leases: list[tuple[int, bytes]] | None = None) -> None:
        self.answers = list(answers)
        self.leases = list(leases or [(404, b'{"kind":"Status","code":404}')])
        self.release = release
        self.calls = 0
        self.discovery = 0

    def __call__(self, url: str, timeout: float) -> tuple[int, bytes]:
        for path, name in (("/apis", "apis.json"), ("/api/v1", "api-v1.json"), ("/version", "version.json")):
            if url.endswith(":8080" + path):
                self.discovery += 1
                return 200, json.dumps(document(self.release, name)).encode()
        if "/leases/" in url:
            return self.leases.pop(0) if len(self.leases) > 1 else self.leases[0]
        self.calls += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


PROBE = HealthCheck("node_ready", "http://m:8080/api/v1/nodes/10.0.0.2", timeout=5)


def test_a_node_that_appears_ready_passes_at_once() -> None:
    get = Script((404, b'{"kind":"Status"}'), node("True", "2016-01-01T00:00:05Z"))
    r = wait_http(PROBE, get=get)
    assert r.ok and get.calls == 2


def test_a_ready_left_over_from_before_a_restart_does_not_count() -> None:
    get = Script(node("True", "T1"), node("True", "T1"), node("True", "T1"), node("True", "T2"))
    r = wait_http(PROBE, get=get)
    assert r.ok and get.calls == 4


def test_not_ready_until_timeout_says_why() -> None:
    get = Script(node("False", "T1"))
    r = wait_http(HealthCheck("node_ready", PROBE.target, timeout=0.3), get=get)
    assert not r.ok and "Ready=False" in r.detail and "KubeletReady" in r.detail


def test_http_probe_reports_connection_errors() -> None:
    r = wait_http(HealthCheck("http", "http://m:4001/health", timeout=0.2), get=Script((0, b"connection refused")))
    assert not r.ok and r.detail == "connection refused"


def test_unit_probe_waits_for_queued_jobs() -> None:
    cmd = check_command(HealthCheck("unit", "k8s-flannel.service", 10))
    assert "list-jobs" in cmd and "is-active" in cmd


def lease(renewed: str) -> tuple[int, bytes]:
    body = document("v1.18", "lease.json")
    body["spec"]["renewTime"] = renewed
    return 200, json.dumps(body).encode()


PROBE_118 = HealthCheck("node_ready", "http://m118:8080/api/v1/nodes/10.0.0.2", timeout=5)


def test_with_node_leases_freshness_is_the_lease_not_the_node_status() -> None:
    # 1.18 re-posts an unchanged Node status only every 5 min: the heartbeat stays T1 throughout,
    # the kubelet's lease renewal is what says it reports.
    get = Script(node("True", "T1"), release="v1.18",
                 leases=[lease("2021-07-01T10:00:10.1Z"), lease("2021-07-01T10:00:10.1Z"), lease("2021-07-01T10:00:20.1Z")])
    r = wait_http(PROBE_118, get=get)
    assert r.ok and get.calls == 3
    assert get.discovery == 3  # /apis, /api/v1 (policy is listed) and /version, once for the run


def test_with_node_leases_a_lease_that_stands_still_never_counts() -> None:
    get = Script(node("True", "T1"), node("True", "T2"), node("True", "T3"), release="v1.18",
                 leases=[lease("2021-07-01T10:00:10.1Z")])
    r = wait_http(HealthCheck("node_ready", "http://m118b:8080/api/v1/nodes/10.0.0.2", timeout=0.5), get=get)
    assert not r.ok and "heartbeat" in r.detail  # heartbeats changing do not count where leases decide


def test_a_1_18_kubelet_without_its_lease_yet_reports_by_heartbeat() -> None:
    get = Script(node("True", "T1"), node("True", "T2"), release="v1.18")
    r = wait_http(HealthCheck("node_ready", "http://m118c:8080/api/v1/nodes/10.0.0.2", timeout=5), get=get)
    assert r.ok and get.calls == 2


def test_garbage_discovery_holds_the_probe_and_says_why() -> None:
    def get(url: str, timeout: float) -> tuple[int, bytes]:
        if url.endswith("/apis"):
            return 200, b"<html>502 Bad Gateway</html>"
        return node("True", "T1")

    r = wait_http(HealthCheck("node_ready", "http://mgarbage:8080/api/v1/nodes/10.0.0.2", timeout=0.3), get=get)
    assert not r.ok and "/apis is not an APIGroupList" in r.detail
