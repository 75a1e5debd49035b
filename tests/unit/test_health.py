"""Health probes from the controller, with a scripted apiserver (no network)."""

from __future__ import annotations

import json

from piprov.graph.model import HealthCheck
from piprov.health import wait_http
from piprov.shell.probes import check_command


def node(ready: str, beat: str) -> tuple[int, bytes]:
    body = {"kind": "Node", "status": {"conditions": [
        {"type": "Ready", "status": ready, "lastHeartbeatTime": beat, "reason": "KubeletReady"}]}}
    return 200, json.dumps(body).encode()


class Script:
    """Answers GETs from a list, then repeats the last answer; counts calls."""

    def __init__(self, *answers: tuple[int, bytes]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, url: str, timeout: float) -> tuple[int, bytes]:
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
