"""A small client for the Kubernetes API of the cluster piprov built.

The seed's apiserver listens on insecure HTTP :8080 on the master (2016
style), so plain urllib is enough; no kubeconfig, no client library. Only what
status, drain and remove need: nodes, pods, evictions, replication controllers.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from piprov.errors import ClusterError

JSON = dict[str, Any]


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: JSON


class KubeApi:
    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout

    def request(
        self, method: str, path: str, body: JSON | None = None, *, content_type: str = "application/json",
        ok: tuple[int, ...] = (200, 201),
    ) -> ApiResponse:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        req.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - the cluster's own API
                status, raw = int(resp.status), resp.read()
        except urllib.error.HTTPError as e:
            status, raw = int(e.code), e.read()
        except (urllib.error.URLError, OSError) as e:
            raise ClusterError(
                f"cannot reach the Kubernetes API at {self.base}: {getattr(e, 'reason', e)}",
                hint="is the master up? `piprov status` shows its components",
            ) from None
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {"message": raw[:200].decode("utf-8", "replace")}
        if not isinstance(parsed, dict):
            parsed = {"items": parsed}
        resp_ = ApiResponse(status, parsed)
        if status not in ok:
            raise ApiStatusError(method, path, resp_)
        return resp_

    def get(self, path: str) -> JSON:
        return self.request("GET", path).body

    # -- nodes ---------------------------------------------------------------
    def node(self, name: str) -> JSON | None:
        try:
            return self.get(f"/api/v1/nodes/{_q(name)}")
        except ApiStatusError as e:
            if e.response.status == 404:
                return None
            raise

    def nodes(self) -> list[JSON]:
        items = self.get("/api/v1/nodes").get("items") or []
        return list(items)

    def set_unschedulable(self, name: str, value: bool) -> None:
        self.request(
            "PATCH", f"/api/v1/nodes/{_q(name)}", {"spec": {"unschedulable": value}},
            content_type="application/merge-patch+json",
        )

    def delete_node(self, name: str) -> None:
        self.request("DELETE", f"/api/v1/nodes/{_q(name)}", ok=(200, 202, 404))

    # -- pods ----------------------------------------------------------------
    def pods_on(self, node: str) -> list[JSON]:
        sel = urllib.parse.quote(f"spec.nodeName={node}")
        return list(self.get(f"/api/v1/pods?fieldSelector={sel}").get("items") or [])

    def pods(self, namespace: str | None = None, label_selector: str | None = None) -> list[JSON]:
        base = f"/api/v1/namespaces/{_q(namespace)}/pods" if namespace else "/api/v1/pods"
        if label_selector:
            base += "?labelSelector=" + urllib.parse.quote(label_selector)
        return list(self.get(base).get("items") or [])

    def evict(self, namespace: str, pod: str) -> ApiResponse:
        """POST an Eviction; returns the response (429 = a disruption budget said no)."""
        body = {
            "apiVersion": "policy/v1beta1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": namespace},
        }
        return self.request(
            "POST", f"/api/v1/namespaces/{_q(namespace)}/pods/{_q(pod)}/eviction", body,
            ok=(200, 201, 404, 429),
        )


class ApiStatusError(ClusterError):
    def __init__(self, method: str, path: str, response: ApiResponse) -> None:
        msg = response.body.get("message") or response.body.get("reason") or "no message"
        super().__init__(f"Kubernetes API {method} {path} answered {response.status}: {msg}")
        self.response = response


def is_ready(node: JSON) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def is_unschedulable(node: JSON) -> bool:
    return bool((node.get("spec") or {}).get("unschedulable"))


def _q(s: str) -> str:
    return urllib.parse.quote(s, safe="")
