"""A small client for the Kubernetes API of the cluster piprov built.

The apiserver's secure port authenticates piprov by the controller's admin
client certificate (the cluster PKI, :mod:`piprov.pki`); :mod:`piprov.http`
with that TLS context is enough: no kubeconfig, no client library. Only
what status, drain and remove need: nodes, pods, evictions. The Ready
condition is read in one place, :func:`ready_condition`, by the health probe,
status, drain and the rollout alike.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from piprov import http
from piprov.errors import ClusterError, PiprovError
from piprov.inventory.model import Inventory, Node, refuse_documentation_address

JSON = dict[str, Any]


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: JSON


class KubeApi:
    def __init__(self, base_url: str, *, timeout: float = 10.0, tls: ssl.SSLContext | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.tls = tls

    def request(
        self, method: str, path: str, body: JSON | None = None, *, content_type: str = "application/json",
        ok: tuple[int, ...] = (200, 201),
    ) -> ApiResponse:
        try:
            raw = http.request(method, self.base + path, json_body=body, content_type=content_type,
                               accept="application/json", timeout=self.timeout, tls=self.tls)
        except http.Unreachable as e:
            raise ClusterError(
                f"cannot reach the Kubernetes API at {self.base}: {e.reason}",
                hint="is the master up? `piprov status` shows its components",
            ) from None
        resp = ApiResponse(raw.status, json_object(raw.body))
        if resp.status not in ok:
            raise ApiStatusError(method, path, resp)
        return resp

    def get(self, path: str) -> JSON:
        return self.request("GET", path).body

    # -- nodes ---------------------------------------------------------------
    def node(self, name: str) -> JSON | None:
        try:
            return self.get(f"/api/v1/nodes/{quote(name)}")
        except ApiStatusError as e:
            if e.response.status == 404:
                return None
            raise

    def nodes(self) -> list[JSON]:
        items = self.get("/api/v1/nodes").get("items") or []
        return list(items)

    def patch_node(self, name: str, patch: JSON) -> None:
        self.request("PATCH", f"/api/v1/nodes/{quote(name)}", patch, content_type="application/merge-patch+json")

    def delete_node(self, name: str) -> None:
        self.request("DELETE", f"/api/v1/nodes/{quote(name)}", ok=(200, 202, 404))

    # -- pods ----------------------------------------------------------------
    def pods_on(self, node: str) -> list[JSON]:
        sel = urllib.parse.quote(f"spec.nodeName={node}")
        return list(self.get(f"/api/v1/pods?fieldSelector={sel}").get("items") or [])

    def pods(self, namespace: str | None = None, label_selector: str | None = None) -> list[JSON]:
        base = f"/api/v1/namespaces/{quote(namespace)}/pods" if namespace else "/api/v1/pods"
        if label_selector:
            base += "?labelSelector=" + urllib.parse.quote(label_selector)
        return list(self.get(base).get("items") or [])

    def pod(self, namespace: str, name: str) -> JSON | None:
        """One pod, or None when the apiserver says 404."""
        resp = self.request("GET", f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}", ok=(200, 404))
        return resp.body if resp.status == 200 else None

    def evict(self, namespace: str, pod: str, *, group_version: str = "policy/v1beta1",
              grace_period: int = -1) -> ApiResponse:
        """POST an Eviction; returns the response (429 = a disruption budget said no; 404 = no pod, or no API)."""
        # kubernetes/kubectl kubernetes-1.18.19 pkg/drain/drain.go EvictPod: the policy group's preferred
        # version as apiVersion, DeleteOptions carrying the grace period when one is given.
        body: JSON = {"apiVersion": group_version, "kind": "Eviction",
                      "metadata": {"name": pod, "namespace": namespace}}
        if grace_period >= 0:
            body["deleteOptions"] = {"gracePeriodSeconds": grace_period}
        return self.request(
            "POST", f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/eviction", body,
            ok=(200, 201, 404, 429),
        )

    def delete_pod(self, namespace: str, pod: str, *, grace_period: int = -1) -> ApiResponse:
        """DELETE a pod (graceful: it terminates first); 404 is returned, not raised."""
        # kubectl 1.2 drain deletePods (kubernetes pkg/kubectl/cmd/drain.go of the 1.2 line): DeleteOptions with
        # gracePeriodSeconds only when --grace-period >= 0, otherwise the pod's own grace period.
        body: JSON | None = None
        if grace_period >= 0:
            body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": grace_period}
        return self.request("DELETE", f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}", body,
                            ok=(200, 202, 404))


class ApiStatusError(ClusterError):
    def __init__(self, method: str, path: str, response: ApiResponse) -> None:
        msg = response.body.get("message") or response.body.get("reason") or "no message"
        super().__init__(f"Kubernetes API {method} {path} answered {response.status}: {msg}")
        self.response = response


def json_object(raw: bytes) -> JSON:
    """An HTTP body (the apiserver's, etcd's) as a JSON object: a list becomes ``items``, non-JSON the start of the text as ``message``."""
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = {"message": raw[:200].decode("utf-8", "replace")}
    if not isinstance(parsed, dict):
        parsed = {"items": parsed}
    return parsed


def apiserver_url(inventory: Inventory) -> str:
    """The master's apiserver, as the client and the kubeconfig reach it: its secure port.

    The insecure port (``network.apiserver_port``) is bound to the master's
    loopback: only the master's own components reach it.
    """
    return f"https://{inventory.master.address}:{inventory.network.apiserver_secure_port}"


def client_tls(inventory: Inventory) -> ssl.SSLContext:
    """The controller's TLS to the cluster it built: trust its CA, present the admin certificate.

    One context per inventory and run (contexts are thread-safe and keep their
    session cache): the CA and the admin certificate are read once.
    """
    key = str(inventory.path.resolve())
    with _TLS_LOCK:
        ctx = _TLS.get(key)
        if ctx is None:
            from piprov.pki import cluster_pki

            ctx = _TLS[key] = cluster_pki(inventory).controller_tls().context()
    return ctx


def forget_client_tls(inventory: Inventory) -> None:
    """Drop the cached context: the next request reads the CA and the admin certificate again.

    For a run that re-issued the admin certificate (`piprov certs rotate`): its
    later requests present the new one.
    """
    with _TLS_LOCK:
        _TLS.pop(str(inventory.path.resolve()), None)


_TLS: dict[str, ssl.SSLContext] = {}
_TLS_LOCK = threading.Lock()


def api_for(inventory: Inventory, timeout: float = 10.0) -> KubeApi:
    refuse_documentation_address(inventory.master)
    return KubeApi(apiserver_url(inventory), timeout=timeout, tls=client_tls(inventory))


def api_or_none(inventory: Inventory) -> KubeApi | None:
    """The cluster's API, or None where the inventory cannot name one (a documentation address, no PKI yet):
    for work that goes ahead without the cluster (a node not in it is reset or rebooted all the same)."""
    try:
        return api_for(inventory)
    except PiprovError:
        return None


def k8s_name(node: Node) -> str:
    """The Node object's name: kubelets register under the address (--hostname-override)."""
    return node.address


def orphans(inventory: Inventory, names: Iterable[str]) -> list[str]:
    """The Node objects no inventory node registers as (a node removed from the inventory by hand, a
    re-addressed Pi): shown by `plan` and `status` with :func:`orphan_fix`, never removed unasked."""
    ours = {k8s_name(n) for n in inventory.nodes} | {n.name for n in inventory.nodes}
    return sorted(n for n in names if n not in ours)


def orphan_fix(name: str) -> str:
    return f"kubectl delete node {name}  (with piprov's kubeconfig: `piprov kubeconfig --use` first)"


# -- the Ready condition: one reading for every caller ---------------------------------------------------


def ready_condition(obj: JSON | None) -> JSON | None:
    """The ``Ready`` entry of a Node's (or Pod's) status conditions, or None if it has none yet."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return dict(c)
    return None


def is_ready(obj: JSON | None) -> bool:
    c = ready_condition(obj)
    return c is not None and c.get("status") == "True"


def heartbeat(obj: JSON | None) -> str | None:
    """The Ready condition's lastHeartbeatTime: changes each time the kubelet reports."""
    hb = (ready_condition(obj) or {}).get("lastHeartbeatTime")
    return str(hb) if hb else None


def is_unschedulable(node: JSON) -> bool:
    return bool((node.get("spec") or {}).get("unschedulable"))


def quote(s: str) -> str:
    """One path segment of an API URL."""
    return urllib.parse.quote(s, safe="")


# One look at a Node: (Ready?, its last heartbeat, what we saw, for the person reading a failure).
NodeRead = Callable[[], tuple[bool, "str | None", str]]


def ready_state(obj: JSON) -> tuple[bool, str | None, str]:
    """(Ready?, last heartbeat, what we saw) of a Node object."""
    ready = ready_condition(obj)
    if ready is None:
        return False, None, "node has no Ready condition yet"
    if ready.get("status") == "True":
        return True, heartbeat(obj), "Ready"
    why = f"{ready.get('reason', '')} {ready.get('message', '')}".strip()
    return False, None, f"Ready={ready.get('status')}" + (f": {why}" if why else "")


def node_reader(api: KubeApi, name: str) -> NodeRead:
    """A :data:`NodeRead` of Node ``name`` through ``api``."""

    def read() -> tuple[bool, str | None, str]:
        try:
            obj = api.node(name)
        except ClusterError as e:
            return False, None, e.message  # the apiserver restarts during the master's batch
        return ready_state(obj) if obj is not None else (False, None, "no Node object yet")

    return read


def wait_ready(
    read: NodeRead,
    timeout: float,
    *,
    newer_than: str | None = None,
    fresh: bool = False,
    cancel: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[bool, str]:
    """Until the Node is Ready: (Ready?, what the last look saw). The one Ready wait.

    A restarted kubelet's Node keeps the old Ready for a grace period, so with
    ``newer_than`` only a Ready whose heartbeat differs from that one counts
    (the rollout passes the heartbeat seen before the update); with ``fresh``, a
    node already Ready at the first look must report once more (the health
    probe). Heartbeats are compared with each other, never with our clock: a Pi
    without an RTC may be minutes off.
    """
    baseline, first = newer_than, True

    def look() -> tuple[bool, str]:
        nonlocal baseline, first
        ready, beat, detail = read()
        if first and fresh and ready and baseline is None:
            baseline = beat
        first = False
        if ready and (baseline is None or (beat is not None and beat != baseline)):
            return True, detail
        return False, "Ready, waiting for a heartbeat of the restarted kubelet" if ready else detail

    return http.poll_until(look, timeout, cancel=cancel, clock=clock)
