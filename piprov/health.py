"""Health probes: is a component really up? Never a guess, never a fixed sleep.

A probe is a kind plus a target (already rendered from the playbook):

=============  ============================================  ====================
kind           target                                        checked
=============  ============================================  ====================
unit           a systemd unit name                           on the node (SSH)
docker_socket  a docker host (unix:///...)                         on the node (SSH)
file           a path that must exist and be non-empty      on the node (SSH)
http           a URL that must answer 2xx                    from the controller
node_ready     an apiserver URL .../api/v1/nodes/NAME        from the controller
=============  ============================================  ====================

A node_ready probe wants a report of the (re)started kubelet itself: the
Ready condition's heartbeat changing, or, where the apiserver has node leases
(1.17+ posts an unchanged Node status only every 5 min), the lease's renewTime
changing (see piprov.kube.discovery).

Probes on the node poll *on the node* (their shell is in piprov.shell.probes),
inside one SSH command bounded by
``timeout``, so a gate costs one round trip however long it waits. Probes from
the controller poll with a short, growing interval. Either way the wait ends
the moment the check passes. A probe never changes state.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable

from piprov import http
from piprov.errors import PiprovError, TransportError
from piprov.graph.model import HealthCheck
from piprov.kube.client import JSON, NodeRead, json_object, ready_state, wait_ready
from piprov.kube.discovery import capabilities_at, freshness, lease_path
from piprov.shell.probes import wait_command
from piprov.transport import Transport

SSH_KINDS = ("unit", "docker_socket", "file")


@dataclass(frozen=True)
class ProbeResult:
    check: HealthCheck
    ok: bool
    detail: str  # the last thing the probe saw: for the person reading a failure
    seconds: float


def wait_on_node(check: HealthCheck, transport: Transport) -> ProbeResult:
    start = time.monotonic()
    try:
        res = transport.run(wait_command(check), sudo=True, timeout=check.timeout + 15)
    except TransportError as e:
        return ProbeResult(check, False, str(e.message), time.monotonic() - start)
    detail = res.tail(8) if not res.ok else "healthy"
    if not res.ok and not detail:
        detail = f"not healthy after {check.timeout:g} s"
    return ProbeResult(check, res.ok, detail, time.monotonic() - start)


HttpGet = Callable[[str, float], tuple[int, bytes]]


def http_get(url: str, timeout: float, tls: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """GET ``url``; (status, body). Connection errors (a refused TLS handshake too) come back as status 0."""
    try:
        resp = http.request("GET", url, timeout=timeout, limit=65536, tls=tls)
    except http.Unreachable as e:
        return 0, e.reason.encode()
    return resp.status, resp.body


def https_getter(tls: Callable[[], ssl.SSLContext]) -> HttpGet:
    """:func:`http_get` reaching https targets with the context ``tls()``, asked for at the first one.

    The cluster's servers take the controller's client certificate only; a
    plan whose checks are all on the node never needs (or creates) it.
    """
    def get(url: str, timeout: float) -> tuple[int, bytes]:
        return http_get(url, timeout, tls() if url.startswith("https:") else None)

    return get


def _node_ready(status: int, body: bytes) -> tuple[bool, str | None, str]:
    """(Ready?, last heartbeat, what we saw) from a GET of the Node object."""
    if status != 200:
        return False, None, f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}" if status else body.decode()
    try:
        node = json.loads(body)
        if not isinstance(node, dict):
            raise ValueError("not an object")
        return ready_state(node)
    except (ValueError, AttributeError):
        return False, None, "apiserver answered something that is not a Node object"


NODE_PATH = "/api/v1/nodes/"


def _node_reader(check: HealthCheck, get: HttpGet) -> NodeRead:
    """The probe's look at its Node; where the apiserver has node leases, freshness is the lease's renewTime.

    The apiserver is the probe target's own (``BASE/api/v1/nodes/NAME``); its
    discovery is read once per run (piprov.kube.discovery).
    """
    timeout = min(5.0, max(0.5, check.timeout))
    base, _, name = check.target.partition(NODE_PATH)

    def fetch(path: str) -> tuple[int, JSON]:
        status, body = get(base + path, timeout)
        if status == 0:
            raise PiprovError(f"cannot reach the apiserver at {base}: {body.decode('utf-8', 'replace')}")
        return status, json_object(body)

    def read() -> tuple[bool, str | None, str]:
        status, body = get(check.target, timeout)
        ready, beat, detail = _node_ready(status, body)
        if not ready or not name or "/" in name:
            return ready, beat, detail
        try:
            path = lease_path(capabilities_at(base, fetch), name)
            lease = fetch(path) if path else None
        except PiprovError as e:
            return False, None, f"Ready, but the apiserver's discovery is unreadable: {e.message}"
        return freshness(json_object(body), lease[1] if lease is not None and lease[0] == 200 else None)

    return read


def check_http_once(check: HealthCheck, get: HttpGet = http_get) -> tuple[bool, str]:
    status, body = get(check.target, min(5.0, max(0.5, check.timeout)))
    if check.probe == "http":
        if 200 <= status < 300:
            return True, f"HTTP {status}"
        return False, f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}" if status else body.decode()
    ready, _, detail = _node_ready(status, body)
    return ready, detail


def wait_http(
    check: HealthCheck,
    *,
    get: HttpGet = http_get,
    cancel: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ProbeResult:
    start = clock()
    if check.probe == "node_ready":
        # A node already Ready when we start looking (its kubelet was just
        # restarted) must report once more: its Ready may be the old kubelet's.
        ok, detail = wait_ready(_node_reader(check, get), check.timeout, fresh=True, cancel=cancel, clock=clock)
    else:
        ok, detail = http.poll_until(lambda: check_http_once(check, get), check.timeout, cancel=cancel, clock=clock)
    return ProbeResult(check, ok, detail, clock() - start)


def wait_healthy(
    check: HealthCheck, transport: Transport | None, *, cancel: threading.Event | None = None,
    get: HttpGet = http_get,
) -> ProbeResult:
    """Block until ``check`` passes or its timeout ends (``get``: how the controller reaches an HTTP target)."""
    if check.probe in SSH_KINDS:
        if transport is None:
            raise PiprovError(f"probe {check.describe()} needs a connection to the node")
        return wait_on_node(check, transport)
    return wait_http(check, get=get, cancel=cancel)
