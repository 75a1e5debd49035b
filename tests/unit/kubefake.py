"""A small in-memory Kubernetes API of one release (1.1 or 1.18), as a transport under KubeApi.

It answers the paths piprov uses with the status codes that release answers:
discovery from tests/unit/data/kube/<release>/, nodes, pods by node, pod
GET/DELETE (graceful: the pod is Terminating until the "kubelet" finishes it
on a later request), evictions (1.18: a budget says 429 with its name in the
Status causes; 1.1: 404, there is no such subresource), budgets (1.18 only),
node leases (1.18 only), ReplicationControllers by GET and pods of a
namespace by ``labelSelector`` (equality terms). Every request is logged as
``(method, path)``.
"""

from __future__ import annotations

import copy
import itertools
import json
import urllib.parse
from pathlib import Path
from typing import Any

from piprov.kube.client import ApiResponse, ApiStatusError, KubeApi

JSON = dict[str, Any]
DATA = Path(__file__).parent / "data" / "kube"
_SERIAL = itertools.count()  # each fake its own base URL: discovery is cached per apiserver URL
NOT_FOUND: JSON = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                   "message": "the server could not find the requested resource"}


def document(release: str, name: str) -> JSON:
    return dict(json.loads((DATA / release / name).read_text()))


def node_obj(name: str, ready: bool = True, unschedulable: bool = False, beat: str = "t0") -> JSON:
    return {"metadata": {"name": name, "annotations": {}},
            "spec": {"unschedulable": unschedulable} if unschedulable else {},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastHeartbeatTime": beat}]}}


def pod_obj(name: str, node: str, *, rc: bool = True, mirror: bool = False, app: str = "web",
            release: str = "v1.18") -> JSON:
    meta: JSON = {"name": name, "namespace": "default", "uid": f"{name}-uid", "labels": {"app": app},
                  "annotations": {}}
    if rc and release == "v1.18":
        meta["ownerReferences"] = [{"kind": "ReplicationController", "name": app, "controller": True}]
    elif rc:
        meta["annotations"]["kubernetes.io/created-by"] = json.dumps(
            {"kind": "SerializedReference", "apiVersion": "v1",
             "reference": {"kind": "ReplicationController", "namespace": "default", "name": app}}) + "\n"
    if mirror:
        meta["annotations"]["kubernetes.io/config.mirror"] = "x"
    return {"metadata": meta, "spec": {"nodeName": node},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


def rc_obj(app: str, replicas: int) -> JSON:
    """An RC as a 1.1 GET answers it (tests/unit/data/kube/v1.1/rc.json), renamed and rescaled."""
    rc = document("v1.1", "rc.json")
    rc["metadata"].update(name=app, uid=f"{app}-uid")
    rc["spec"].update(replicas=replicas, selector={"app": app})
    return rc


class FakeKube(KubeApi):
    """Nodes, pods and one budget: ``min_available`` pods of app=web must stay."""

    def __init__(self, release: str = "v1.18", min_available: int | None = None) -> None:
        super().__init__(f"http://fake-{release}-{next(_SERIAL)}:8080")
        self.release = release
        self.nodes_: dict[str, JSON] = {}
        self.leases_: dict[str, JSON] = {}
        self.pods_: list[JSON] = []
        self.min_available = min_available
        self.evictions: list[str] = []
        self.deletions: list[tuple[str, JSON | None]] = []
        self.log: list[tuple[str, str]] = []
        self.counter = 0
        self.respawn_on: str | None = None  # where the "controller" recreates removed managed pods
        self.kubelet_alive = True  # terminating pods finish on the next request
        self.kubelets_report = False  # each request is a kubelet report: heartbeat (1.1) or lease renewal (1.18)
        self.graceful_evictions = False  # an eviction leaves the pod Terminating, as a real graceful delete
        self.discovery_override: dict[str, tuple[int, JSON]] = {}
        self.serve_eviction = release == "v1.18"  # False on 1.18: a server whose discovery says more than it serves
        self.rcs_: dict[str, JSON] = {}  # default/NAME -> the RC a GET answers
        self.start_ticks = 0  # requests a replacement pod takes to get Ready (0: Ready at once)
        self.starting: dict[str, int] = {}  # replacement -> requests left until Ready
        self.min_serving: dict[str, int] = {}  # app -> fewest Ready, not deleted pods seen after a removal

    def request(self, method: str, path: str, body: JSON | None = None, *, content_type: str = "application/json",
                ok: tuple[int, ...] = (200, 201)) -> ApiResponse:
        self.log.append((method, path))
        self._tick()
        resp = self._handle(method, path, body)
        if resp.status not in ok:
            raise ApiStatusError(method, path, resp)
        return ApiResponse(resp.status, copy.deepcopy(resp.body))

    # -- the cluster moving on between requests -----------------------------------------------------------
    def _tick(self) -> None:
        for name in list(self.starting):
            self.starting[name] -= 1
            pod = self.pod_named(name)
            if self.starting[name] <= 0 and pod is not None:
                pod["status"]["conditions"][0]["status"] = "True"
                del self.starting[name]
        if self.kubelet_alive:
            for p in [p for p in self.pods_ if p["metadata"].get("deletionTimestamp")]:
                self._remove(p)
        if self.kubelets_report:
            self.counter += 1
            for name, n in self.nodes_.items():
                if self.release == "v1.18":
                    self.leases_.setdefault(name, {"kind": "Lease", "spec": {}})["spec"]["renewTime"] = f"r{self.counter}"
                else:
                    n["status"]["conditions"][0]["lastHeartbeatTime"] = f"t{self.counter}"

    def _remove(self, pod: JSON) -> None:
        self.pods_.remove(pod)
        managed = pod["metadata"].get("ownerReferences") or "kubernetes.io/created-by" in pod["metadata"].get("annotations", {})
        if self.respawn_on and managed:
            self.counter += 1
            app = pod["metadata"]["labels"].get("app", "web")
            new = pod_obj(f"{pod['metadata']['name']}-r{self.counter}", self.respawn_on, app=app, release=self.release)
            if self.start_ticks:
                new["status"]["conditions"][0]["status"] = "False"
                self.starting[new["metadata"]["name"]] = self.start_ticks
            self.pods_.append(new)

    def serving(self, app: str) -> int:
        return sum(1 for p in self.pods_ if p["metadata"]["labels"].get("app") == app
                   and not p["metadata"].get("deletionTimestamp") and p["status"]["conditions"][0]["status"] == "True")

    def _note_serving(self, pod: JSON) -> None:
        app = pod["metadata"]["labels"].get("app", "")
        self.min_serving[app] = min(self.min_serving.get(app, 99), self.serving(app))

    def pod_named(self, name: str) -> JSON | None:
        return next((p for p in self.pods_ if p["metadata"]["name"] == name), None)

    # -- the API ------------------------------------------------------------------------------------------------
    def _handle(self, method: str, path: str, body: JSON | None) -> ApiResponse:
        u = urllib.parse.urlparse(path)
        parts = [urllib.parse.unquote(p) for p in u.path.strip("/").split("/")]
        if u.path in self.discovery_override:
            return ApiResponse(*self.discovery_override[u.path])
        if u.path in ("/apis", "/api/v1", "/version"):
            name = {"/apis": "apis.json", "/api/v1": "api-v1.json", "/version": "version.json"}[u.path]
            return ApiResponse(200, document(self.release, name))
        if parts[:3] == ["api", "v1", "nodes"] and len(parts) == 4:
            return self._node(method, parts[3], body)
        if parts == ["api", "v1", "pods"]:
            sel = urllib.parse.parse_qs(u.query).get("fieldSelector", [""])[0]
            items = self.pods_
            if sel.startswith("spec.nodeName="):
                items = [p for p in items if p["spec"]["nodeName"] == sel.split("=", 1)[1]]
            return ApiResponse(200, {"kind": "PodList", "items": items})
        if parts[:3] == ["api", "v1", "namespaces"] and parts[4:5] == ["replicationcontrollers"] and len(parts) == 6:
            rc = self.rcs_.get(f"{parts[3]}/{parts[5]}")
            return ApiResponse(200, rc) if rc is not None else ApiResponse(404, {
                **NOT_FOUND, "message": f'replicationcontrollers "{parts[5]}" not found'})
        if parts[:3] == ["api", "v1", "namespaces"] and parts[4:] == ["pods"]:
            sel = urllib.parse.parse_qs(u.query).get("labelSelector", [""])[0]
            want = dict(t.split("=", 1) for t in sel.split(",") if t)
            return ApiResponse(200, {"kind": "PodList", "items": [
                p for p in self.pods_ if p["metadata"].get("namespace") == parts[3]
                and all(p["metadata"]["labels"].get(k) == v for k, v in want.items())]})
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) >= 6 and parts[4] == "pods":
            return self._pod(method, parts[5], parts[6] if len(parts) > 6 else None, body)
        if self.release == "v1.18" and parts[-1] == "poddisruptionbudgets" and parts[:3] == ["apis", "policy", "v1beta1"]:
            return ApiResponse(200, {"items": [
                {"metadata": {"name": "web-pdb"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}},
                {"metadata": {"name": "other"}, "spec": {"selector": {"matchLabels": {"app": "db"}}}},
            ]})
        if self.release == "v1.18" and parts[:2] == ["apis", "coordination.k8s.io"] and parts[-2] == "leases":
            lease = self.leases_.get(parts[-1])
            return ApiResponse(200, lease) if lease is not None else ApiResponse(404, dict(NOT_FOUND))
        return ApiResponse(404, dict(NOT_FOUND))

    def _node(self, method: str, name: str, body: JSON | None) -> ApiResponse:
        n = self.nodes_.get(name)
        if n is None:
            return ApiResponse(404, dict(NOT_FOUND))
        if method == "PATCH":
            assert body is not None
            n["metadata"]["annotations"] = {**n["metadata"]["annotations"], **body["metadata"]["annotations"]}
            n["metadata"]["annotations"] = {k: v for k, v in n["metadata"]["annotations"].items() if v is not None}
            n["spec"]["unschedulable"] = body["spec"]["unschedulable"]
        return ApiResponse(200, n)

    def _pod(self, method: str, name: str, sub: str | None, body: JSON | None) -> ApiResponse:
        pod = self.pod_named(name)
        if sub == "eviction":
            if not self.serve_eviction:
                return ApiResponse(404, dict(NOT_FOUND))  # 1.1: no such subresource
            return self._evict(name, pod)
        if sub is not None or pod is None:
            return ApiResponse(404, {**NOT_FOUND, "message": f'pods "{name}" not found'})
        if method == "DELETE":
            self.deletions.append((name, body))
            if body is not None and body.get("gracePeriodSeconds") == 0:
                self._remove(pod)
            else:
                pod["metadata"]["deletionTimestamp"] = "2016-03-01T10:01:00Z"
            self._note_serving(pod)
        return ApiResponse(200, pod)

    def _evict(self, name: str, pod: JSON | None) -> ApiResponse:
        if pod is None:
            return ApiResponse(404, {**NOT_FOUND, "message": f'pods "{name}" not found'})
        web = sum(1 for p in self.pods_ if p["metadata"]["labels"].get("app") == "web")
        if self.min_available is not None and pod["metadata"]["labels"].get("app") == "web" \
                and web - 1 < self.min_available:
            return ApiResponse(429, {"kind": "Status", "status": "Failure", "reason": "TooManyRequests", "code": 429,
                                     "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                                     "details": {"causes": [{"reason": "DisruptionBudget", "message":
                                                 f"The disruption budget web-pdb needs {self.min_available} healthy "
                                                 f"pods and has {web} currently"}]}})
        self.evictions.append(name)
        if self.graceful_evictions:
            pod["metadata"]["deletionTimestamp"] = "2021-07-01T10:01:00Z"
        else:
            self._remove(pod)
        return ApiResponse(201, {"kind": "Status", "status": "Success", "code": 201})


def fake_time() -> tuple[Any, Any]:
    """A clock and a sleep that only advances it: waits without waiting."""
    now = [0.0]

    def clock() -> float:
        return now[0]

    def sleep(s: float) -> None:
        now[0] += s

    return clock, sleep
