"""kube-apiserver STAND-IN (``/hyperkube apiserver``).

Not Kubernetes: no Kubernetes server binary can be obtained here, so the lab
runs this program in its place. It follows the contract of the Kubernetes v1 REST
API as kubectl 1.20 and the seed's kubelet use it, served the 2016 way:

* flags: ``--etcd-servers`` (comma list), ``--insecure-bind-address`` (default
  127.0.0.1), ``--insecure-port`` (default 8080), ``--service-cluster-ip-range``,
  ``--allow-privileged``; every other flag is accepted and logged.
* insecure HTTP, no authentication or authorization (as the 2016 insecure port).
* state in etcd through the v2 keys API, one JSON object per key under
  ``/registry/`` (``minions``, ``pods/<ns>``, ``controllers/<ns>``,
  ``namespaces``, ``poddisruptionbudgets/<ns>``) as Kubernetes 1.1 laid it out;
  ``metadata.resourceVersion`` is the key's etcd modifiedIndex, a list's is the
  etcd index it was read at; updates carrying a resourceVersion are
  compare-and-swap (409 Conflict when stale), updates without one are unconditional.
* endpoints: ``/healthz`` (+ ``/livez``, ``/readyz``), ``/version``, discovery
  (``/api``, ``/api/v1``, ``/apis``, ``/apis/policy``, ``/apis/policy/v1beta1``),
  ``/openapi/v2`` (an empty protobuf document: kubectl's validation then skips
  unknown kinds), and these resources:
    nodes (get, list, create, update, patch, delete, status);
    pods (get, list with labelSelector/fieldSelector, create, update, patch, delete,
    status, ``binding``, ``eviction``, ``log`` proxied to the kubelet's
    ``/containerLogs`` on its node's InternalIP:10250);
    replicationcontrollers (CRUD, status, ``scale`` as autoscaling/v1 Scale);
    poddisruptionbudgets (policy/v1beta1, CRUD, status);
    namespaces (default and kube-system always exist);
    events (accepted and dropped; lists are empty).
  Patches: JSON merge, strategic merge (for the merge keys kubectl uses) and JSON
  patch. ``Accept: ...;as=Table`` answers a server-side Table (the columns kubectl
  prints for pods, nodes, RCs, PDBs, namespaces). Errors are ``Status`` objects
  (404 NotFound, 405 MethodNotAllowed, 409 AlreadyExists/Conflict, 422 Invalid,
  429 TooManyRequests for an eviction a PodDisruptionBudget forbids).
* eviction: a Running pod covered by a PDB is evicted only while the PDB allows a
  disruption, computed at eviction time from the ready pods matching its selector
  (minAvailable / maxUnavailable, integer or percent, of the owning RCs' replicas).

Watch: ``?watch=true`` streams ADDED/MODIFIED/DELETED events (chunked, one JSON
per line, as Tables when asked) from etcd's v2 wait, from ``resourceVersion`` or
after the current list; a resourceVersion etcd no longer remembers answers an
ERROR event with a 410 Status.

Not covered: TLS, authn/authz, admission control, watch bookmarks and
field-selector transitions (an object that stops matching sends no DELETED),
``continue``/limit paging (a list is always complete), graceful deletion
(pods are removed at once, as with ``--grace-period=0``; the kubelet then stops
their containers), services/endpoints/configmaps/secrets/deployments/daemonsets,
field managers and server-side apply, OpenAPI schemas, protobuf.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import socket
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from . import kobj
from .common import Flag, parse_flags, setup_logging
from .etcd2 import COMPARE_FAILED, KEY_NOT_FOUND, NODE_EXISTS, Etcd2, EtcdError, EtcdUnreachable

log = logging.getLogger("standin")
Obj = dict[str, Any]

VERSION = os.environ.get("KUBE_VERSION", "v1.1.2")

FLAGS = [
    Flag("etcd-servers", "http://127.0.0.1:4001"),
    Flag("etcd-prefix", "/registry"),
    Flag("insecure-bind-address", "127.0.0.1"),
    Flag("insecure-port", 8080, int),
    Flag("address", ""),  # 1.1's deprecated alias of --insecure-bind-address
    Flag("port", 0, int),  # 1.1's deprecated alias of --insecure-port
    Flag("service-cluster-ip-range", "10.0.0.0/24"),
    Flag("allow-privileged", False, bool),
]


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    etcd_dir: str | None  # None: accepted and dropped
    short: tuple[str, ...]
    subresources: tuple[str, ...]
    verbs: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES = [
    Resource("", "v1", "nodes", "Node", False, "minions", ("no",), ("status",)),
    Resource("", "v1", "pods", "Pod", True, "pods", ("po",), ("status", "binding", "eviction", "log")),
    Resource("", "v1", "replicationcontrollers", "ReplicationController", True, "controllers", ("rc",), ("status", "scale")),
    Resource("", "v1", "namespaces", "Namespace", False, "namespaces", ("ns",), ("status",)),
    Resource("", "v1", "events", "Event", True, None, ("ev",), ()),
    Resource("policy", "v1beta1", "poddisruptionbudgets", "PodDisruptionBudget", True, "poddisruptionbudgets", ("pdb",), ("status",)),
]
BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}

SUB_KINDS = {
    "status": None, "binding": ("", "v1", "Binding"), "eviction": ("policy", "v1beta1", "Eviction"),
    "scale": ("autoscaling", "v1", "Scale"), "log": ("", "v1", "Pod"),
}
CATEGORY_ALL = {"pods", "replicationcontrollers"}  # what `kubectl get all` expands to


class APIError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> Obj:
        s: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            s["details"] = self.details
        return s


def not_found(res: Resource, name: str) -> APIError:
    group_res = res.plural + (f".{res.group}" if res.group else "")
    return APIError(404, "NotFound", f'{group_res} "{name}" not found',
                    {"name": name, "kind": res.plural, **({"group": res.group} if res.group else {})})


def invalid(res: Resource, name: str, message: str) -> APIError:
    return APIError(422, "Invalid", f'{res.kind} "{name}" is invalid: {message}', {"name": name, "kind": res.kind})


class Store:
    """Objects as JSON in etcd v2; resourceVersion is etcd's modifiedIndex."""

    def __init__(self, etcd: Etcd2, prefix: str) -> None:
        self.etcd = etcd
        self.prefix = prefix.rstrip("/")

    def key(self, res: Resource, ns: str | None, name: str = "") -> str:
        assert res.etcd_dir
        parts = [self.prefix, res.etcd_dir] + ([ns] if res.namespaced and ns else []) + ([name] if name else [])
        return "/".join(parts)

    @staticmethod
    def _decode(node: Any) -> Obj:
        obj: Obj = json.loads(node.value)
        obj.setdefault("metadata", {})["resourceVersion"] = str(node.modified_index)
        return obj

    @staticmethod
    def _encode(obj: Obj) -> str:
        o = dict(obj)
        o["metadata"] = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
        return json.dumps(o, separators=(",", ":"))

    def get(self, res: Resource, ns: str | None, name: str) -> Obj:
        try:
            return self._decode(self.etcd.get(self.key(res, ns, name)))
        except EtcdError as e:
            if e.code == KEY_NOT_FOUND:
                raise not_found(res, name) from None
            raise

    def list(self, res: Resource, ns: str | None) -> tuple[list[Obj], str]:
        nodes, index = self.etcd.list(self.key(res, ns))
        return [self._decode(n) for n in nodes if n.value], str(index)

    def create(self, res: Resource, obj: Obj) -> Obj:
        meta = obj["metadata"]
        try:
            node = self.etcd.create(self.key(res, meta.get("namespace"), meta["name"]), self._encode(obj))
        except EtcdError as e:
            if e.code == NODE_EXISTS:
                raise APIError(409, "AlreadyExists", f'{res.plural} "{meta["name"]}" already exists',
                               {"name": meta["name"], "kind": res.plural}) from None
            raise
        meta["resourceVersion"] = str(node.modified_index)
        return obj

    def put(self, res: Resource, obj: Obj, prev_rv: str | None) -> Obj:
        meta = obj["metadata"]
        try:
            node = self.etcd.set(self.key(res, meta.get("namespace"), meta["name"]), self._encode(obj),
                                 prev_index=int(prev_rv) if prev_rv else None, prev_exist=True)
        except EtcdError as e:
            if e.code == COMPARE_FAILED:
                raise APIError(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} "{meta["name"]}": '
                               "the object has been modified; please apply your changes to the latest version and try again",
                               {"name": meta["name"], "kind": res.plural}) from None
            if e.code == KEY_NOT_FOUND:
                raise not_found(res, meta["name"]) from None
            raise
        meta["resourceVersion"] = str(node.modified_index)
        return obj

    def delete(self, res: Resource, ns: str | None, name: str, prev_rv: str | None = None) -> None:
        try:
            self.etcd.delete(self.key(res, ns, name), prev_index=int(prev_rv) if prev_rv else None)
        except EtcdError as e:
            if e.code == KEY_NOT_FOUND:
                raise not_found(res, name) from None
            if e.code == COMPARE_FAILED:
                raise APIError(409, "Conflict", f'{res.plural} "{name}" changed while being deleted') from None
            raise

    def update(self, res: Resource, ns: str | None, name: str, fn: Callable[[Obj], Obj | None]) -> Obj:
        """Read-modify-write with compare-and-swap, retried on conflicts."""
        for _ in range(20):
            cur = self.get(res, ns, name)
            new = fn(copy.deepcopy(cur))
            if new is None:
                return cur
            try:
                return self.put(res, new, cur["metadata"]["resourceVersion"])
            except APIError as e:
                if e.code != 409:
                    raise
        raise APIError(409, "Conflict", f'too many conflicting writes to {res.plural} "{name}"')


# -- defaults and validation ---------------------------------------------------------
def default_pod(pod: Obj) -> None:
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for c in spec.get("containers") or []:
        image = str(c.get("image", ""))
        tag = image.rsplit("/", 1)[-1]
        c.setdefault("imagePullPolicy", "Always" if ":" not in tag or tag.endswith(":latest") else "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})
    status = pod.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", "BestEffort")


def validate_pod(res: Resource, pod: Obj) -> None:
    name = pod["metadata"]["name"]
    containers = (pod.get("spec") or {}).get("containers")
    if not containers:
        raise invalid(res, name, "spec.containers: Required value")
    for i, c in enumerate(containers):
        if not c.get("name"):
            raise invalid(res, name, f"spec.containers[{i}].name: Required value")
        if not c.get("image"):
            raise invalid(res, name, f"spec.containers[{i}].image: Required value")


def default_rc(rc: Obj) -> None:
    spec = rc.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not spec.get("selector"):
        spec["selector"] = dict(tmpl_labels)
    if not rc["metadata"].get("labels"):
        rc["metadata"]["labels"] = dict(tmpl_labels)
    rc.setdefault("status", {"replicas": 0})
    tmpl = spec.get("template") or {}
    if tmpl:
        fake = {"metadata": tmpl.get("metadata") or {}, "spec": tmpl.setdefault("spec", {})}
        default_pod(fake)
        del fake["status"]


def validate_rc(res: Resource, rc: Obj) -> None:
    name = rc["metadata"]["name"]
    spec = rc.get("spec") or {}
    tmpl = spec.get("template")
    if not tmpl:
        raise invalid(res, name, "spec.template: Required value")
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    if not kobj.map_selector_matches(spec.get("selector"), labels):
        raise invalid(res, name, "spec.template.metadata.labels: Invalid value: "
                      f"{json.dumps(labels)}: `selector` does not match template `labels`")
    if int(spec.get("replicas", 0)) < 0:
        raise invalid(res, name, "spec.replicas: must be greater than or equal to 0")
    validate_pod(res, {"metadata": {"name": name}, "spec": tmpl.get("spec") or {}})


def default_node(node: Obj) -> None:
    node.setdefault("spec", {})
    node.setdefault("status", {})


def default_ns(ns: Obj) -> None:
    ns.setdefault("spec", {"finalizers": ["kubernetes"]})
    ns.setdefault("status", {"phase": "Active"})


def default_pdb(pdb: Obj) -> None:
    pdb.setdefault("spec", {})
    pdb.setdefault("status", {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0})


DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "Pod": default_pod, "ReplicationController": default_rc, "Node": default_node,
    "Namespace": default_ns, "PodDisruptionBudget": default_pdb,
}
VALIDATORS: dict[str, Callable[[Resource, Obj], None]] = {"Pod": validate_pod, "ReplicationController": validate_rc}


# -- the API -------------------------------------------------------------------------
@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Any
    body: bytes


@dataclass
class Response:
    code: int
    body: Any
    content_type: str = "application/json"


class API:
    def __init__(self, store: Store) -> None:
        self.store = store

    # discovery ------------------------------------------------------------------
    def resource_list(self, group: str, version: str) -> Obj:
        out = []
        for r in RESOURCES:
            if (r.group, r.version) != (group, version):
                continue
            out.append({"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": list(r.verbs), "shortNames": list(r.short),
                        **({"categories": ["all"]} if r.plural in CATEGORY_ALL else {})})
            for sub in r.subresources:
                gvk = SUB_KINDS[sub]
                entry: Obj = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                              "kind": r.kind if gvk is None else gvk[2],
                              "verbs": ["create"] if sub in ("binding", "eviction") else
                              ["get"] if sub == "log" else ["get", "patch", "update"]}
                if gvk is not None and (gvk[0], gvk[1]) != (group, version):
                    entry["group"], entry["version"] = gvk[0], gvk[1]
                out.append(entry)
        if group == "" and version == "v1":
            # Eviction lives in the policy group; kubectl drain looks for this entry.
            pass
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}

    def discovery(self, req: Request) -> Response | None:
        p = req.path.rstrip("/") or "/"
        if p in ("/healthz", "/livez", "/readyz", "/healthz/ping"):
            self.store.etcd.version() if p != "/healthz/ping" else None
            return Response(200, b"ok", "text/plain")
        if p == "/version":
            major, minor = VERSION.lstrip("v").split(".")[:2]
            return Response(200, {"major": major, "minor": minor, "gitVersion": VERSION, "gitCommit": "standin",
                                  "gitTreeState": "clean", "buildDate": "2016-01-01T00:00:00Z", "goVersion": "go1.4.2",
                                  "compiler": "gc", "platform": "linux/amd64"})
        if p == "/api":
            return Response(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": req.headers.get("Host", "")}]})
        if p == "/api/v1":
            return Response(200, self.resource_list("", "v1"))
        policy = {"name": "policy", "versions": [{"groupVersion": "policy/v1beta1", "version": "v1beta1"}],
                  "preferredVersion": {"groupVersion": "policy/v1beta1", "version": "v1beta1"}}
        if p == "/apis":
            return Response(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [policy]})
        if p == "/apis/policy":
            return Response(200, {"kind": "APIGroup", "apiVersion": "v1", **policy})
        if p == "/apis/policy/v1beta1":
            return Response(200, self.resource_list("policy", "v1beta1"))
        if p in ("/openapi/v2", "/swagger-2.0.0.pb-v1"):
            # An empty protobuf message is a valid, empty OpenAPI document.
            return Response(200, b"", "application/octet-stream")
        if p == "/":
            return Response(200, {"paths": ["/api", "/api/v1", "/apis", "/apis/policy/v1beta1", "/healthz", "/version"]})
        return None

    # routing --------------------------------------------------------------------
    def route(self, path: str) -> tuple[Resource, str | None, str | None, str | None]:
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if parts[0] == "api" and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        ns: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        res = BY_PATH.get((group, version, rest[0]))
        if res is None or (ns is not None and not res.namespaced) or len(rest) > 3:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) == 3 else None
        if sub is not None and sub not in res.subresources:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        if name is not None and res.namespaced and ns is None:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        return res, ns, name, sub

    def handle(self, req: Request) -> Response:
        try:
            d = self.discovery(req) if req.method == "GET" else None
            if d is not None:
                return d
            res, ns, name, sub = self.route(req.path)
            return self.dispatch(req, res, ns, name, sub)
        except APIError as e:
            return Response(e.code, e.status())
        except EtcdUnreachable as e:
            return Response(503, APIError(503, "ServiceUnavailable", f"etcd unreachable: {e}").status())

    def dispatch(self, req: Request, res: Resource, ns: str | None, name: str | None, sub: str | None) -> Response:
        m = req.method
        if res.etcd_dir is None:
            return self.events(req, res, ns, name)
        if name is None:
            if m == "GET":
                if req.query.get("watch") in ("1", "true"):
                    return self.watch(req, res, ns)
                return self.list(req, res, ns)
            if m == "POST":
                return self.create(req, res, ns)
            raise APIError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource")
        if sub == "eviction" and m == "POST":
            return self.evict(req, res, ns or "default", name)
        if sub == "binding" and m == "POST":
            return self.bind(req, res, ns or "default", name)
        if sub == "log" and m == "GET":
            return self.logs(req, res, ns or "default", name)
        if sub == "scale":
            if m == "GET":
                return Response(200, self.scale_of(self.store.get(res, ns, name)))
            if m in ("PUT", "PATCH"):
                return self.update_scale(req, res, ns, name)
        if sub in (None, "status"):
            if m == "GET":
                return self.get(req, res, ns, name)
            if m == "PUT":
                return self.replace(req, res, ns, name, sub)
            if m == "PATCH":
                return self.patch(req, res, ns, name, sub)
            if m == "DELETE" and sub is None:
                return self.delete(req, res, ns, name)
        raise APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    # helpers ---------------------------------------------------------------------
    def body(self, req: Request) -> Any:
        try:
            return json.loads(req.body or b"null")
        except ValueError as e:
            raise APIError(400, "BadRequest", f"the body of the request was in an unknown format: {e}") from None

    def wants_table(self, req: Request) -> bool:
        return "as=Table" in (req.headers.get("Accept") or "")

    def ensure_namespace(self, ns: str) -> None:
        self.store.get(BY_PATH[("", "v1", "namespaces")], None, ns)

    def render(self, req: Request, res: Resource, obj: Obj, code: int = 200) -> Response:
        obj.setdefault("kind", res.kind)
        obj.setdefault("apiVersion", res.api_version)
        if self.wants_table(req):
            return Response(code, kobj.to_table(res.kind, [obj], obj["metadata"].get("resourceVersion", ""),
                                                req.query.get("includeObject", "Metadata")))
        return Response(code, obj)

    # verbs ------------------------------------------------------------------------
    def list(self, req: Request, res: Resource, ns: str | None) -> Response:
        try:
            labels = kobj.parse_label_selector(req.query.get("labelSelector"))
            fields = kobj.parse_field_selector(req.query.get("fieldSelector"))
        except kobj.SelectorError as e:
            raise APIError(400, "BadRequest", str(e)) from None
        items, rv = self.store.list(res, ns)
        items = [o for o in items if kobj.match_requirements(labels, o["metadata"].get("labels"))
                 and kobj.match_fields(fields, o)]
        for o in items:
            o.setdefault("kind", res.kind)
            o.setdefault("apiVersion", res.api_version)
        if self.wants_table(req):
            return Response(200, kobj.to_table(res.kind, items, rv, req.query.get("includeObject", "Metadata")))
        for o in items:
            o.pop("kind", None)
            o.pop("apiVersion", None)
        return Response(200, {"kind": res.kind + "List", "apiVersion": res.api_version,
                              "metadata": {"resourceVersion": rv}, "items": items})

    def watch(self, req: Request, res: Resource, ns: str | None) -> Response:
        """A watch stream: one JSON event per line, from etcd's v2 wait on the resource's keys."""
        try:
            labels = kobj.parse_label_selector(req.query.get("labelSelector"))
            fields = kobj.parse_field_selector(req.query.get("fieldSelector"))
        except kobj.SelectorError as e:
            raise APIError(400, "BadRequest", str(e)) from None
        rv = req.query.get("resourceVersion") or ""
        timeout = float(req.query.get("timeoutSeconds") or 1800)
        table = self.wants_table(req)
        include = req.query.get("includeObject", "Metadata")
        prefix = self.store.key(res, ns)

        def matches(o: Obj) -> bool:
            return kobj.match_requirements(labels, o["metadata"].get("labels")) and kobj.match_fields(fields, o)

        def event(kind: str, o: Obj) -> bytes:
            o.setdefault("kind", res.kind)
            o.setdefault("apiVersion", res.api_version)
            body = kobj.to_table(res.kind, [o], o["metadata"]["resourceVersion"], include) if table else o
            return json.dumps({"type": kind, "object": body}).encode() + b"\n"

        def stream() -> Any:
            import time
            start = int(rv) if rv not in ("", "0") else None
            if start is None:
                items, index = self.store.list(res, ns)
                start = int(index)
                for o in items:
                    if matches(o):
                        yield event("ADDED", o)
            deadline = time.monotonic() + timeout
            index = start
            while time.monotonic() < deadline:
                try:
                    got = self.store.etcd.watch(prefix, index, timeout=min(30.0, max(0.1, deadline - time.monotonic())))
                except EtcdError as e:
                    if e.code == KEY_NOT_FOUND:
                        time.sleep(1)
                        continue
                    gone = APIError(410, "Expired", f"too old resource version: {index + 1} ({e.index})").status()
                    yield json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n"
                    return
                if got is None:
                    yield b""  # keeps the stream alive; a gone client shows up as a write error
                    continue
                action, node, prev = got
                index = node.modified_index
                gone = action in ("delete", "compareAndDelete", "expire")
                raw = (prev.value if gone and prev else node.value) or ""
                try:
                    o = json.loads(raw)
                except ValueError:
                    continue
                o.setdefault("metadata", {})["resourceVersion"] = str(node.modified_index)
                if not matches(o):
                    continue
                kind = "DELETED" if gone else ("ADDED" if action == "create" or prev is None else "MODIFIED")
                yield event(kind, o)

        return Response(200, stream())

    def get(self, req: Request, res: Resource, ns: str | None, name: str) -> Response:
        return self.render(req, res, self.store.get(res, ns, name))

    def create(self, req: Request, res: Resource, ns: str | None) -> Response:
        obj = self.body(req)
        if not isinstance(obj, dict):
            raise APIError(400, "BadRequest", "the body of the request must be an object")
        if obj.get("kind") not in (None, res.kind):
            raise APIError(400, "BadRequest", f"the kind {obj.get('kind')!r} does not match {res.kind!r}")
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            ns = ns or meta.get("namespace") or "default"
            if meta.get("namespace") not in (None, ns):
                raise APIError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
            self.ensure_namespace(ns)
            meta["namespace"] = ns
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + kobj.random_suffix()
        name = meta.get("name") or ""
        if not name:
            raise invalid(res, "", "metadata.name: Required value: name or generateName is required")
        if not kobj.DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
            raise invalid(res, name, f"metadata.name: Invalid value: {name!r}: a DNS-1123 subdomain must consist of "
                          "lower case alphanumeric characters, '-' or '.'")
        meta["uid"] = kobj.new_uid()
        meta["creationTimestamp"] = kobj.now_rfc3339()
        meta.pop("resourceVersion", None)
        meta.pop("deletionTimestamp", None)
        meta["generation"] = 1
        DEFAULTERS.get(res.kind, lambda o: None)(obj)
        VALIDATORS.get(res.kind, lambda r, o: None)(res, obj)
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        if req.query.get("dryRun"):
            return self.render(req, res, obj, 201)
        self.store.create(res, obj)
        log.info("created %s %s%s", res.plural, f"{ns}/" if ns else "", name)
        return self.render(req, res, obj, 201)

    def _merge_update(self, res: Resource, old: Obj, new: Obj, sub: str | None) -> Obj:
        """Apply the spec/status split: the main resource keeps status, /status keeps spec."""
        new.setdefault("metadata", {})
        for k in ("uid", "creationTimestamp", "namespace", "name", "generation", "deletionTimestamp"):
            if k in old["metadata"]:
                new["metadata"][k] = old["metadata"][k]
        if sub == "status":
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status", {})
            merged["metadata"]["resourceVersion"] = new["metadata"].get("resourceVersion")
            return merged
        if res.kind in ("Pod", "Node", "ReplicationController", "PodDisruptionBudget", "Namespace"):
            new["status"] = old.get("status", {})
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if res.kind == "Pod":
            old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
            if old_spec.get("nodeName") and new_spec.get("nodeName") != old_spec.get("nodeName"):
                raise invalid(res, old["metadata"]["name"], "spec.nodeName: Forbidden: pod updates may not change nodeName")
        return new

    def replace(self, req: Request, res: Resource, ns: str | None, name: str, sub: str | None) -> Response:
        new = self.body(req)
        if not isinstance(new, dict) or (new.get("metadata") or {}).get("name") not in (None, name):
            raise APIError(400, "BadRequest", "the name of the object does not match the name on the URL")
        old = self.store.get(res, ns, name)
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise APIError(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} "{name}": the object has been '
                           "modified; please apply your changes to the latest version and try again",
                           {"name": name, "kind": res.plural})
        merged = self._merge_update(res, old, new, sub)
        DEFAULTERS.get(res.kind, lambda o: None)(merged)
        if sub is None:
            VALIDATORS.get(res.kind, lambda r, o: None)(res, merged)
        merged["kind"], merged["apiVersion"] = res.kind, res.api_version
        return self.render(req, res, self.store.put(res, merged, old["metadata"]["resourceVersion"]))

    def _apply_patch(self, req: Request, obj: Obj) -> Obj:
        ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip()
        patch = self.body(req)
        try:
            if ctype == "application/json-patch+json":
                out = kobj.json_patch(obj, patch)
            elif ctype == "application/merge-patch+json":
                out = kobj.json_merge_patch(obj, patch)
            elif ctype == "application/strategic-merge-patch+json":
                out = kobj.strategic_merge_patch(obj, patch)
            else:
                raise APIError(415, "UnsupportedMediaType", f"the server does not support patch type {ctype!r}")
        except ValueError as e:
            raise APIError(422, "Invalid", f"the patch could not be applied: {e}") from None
        if not isinstance(out, dict):
            raise APIError(422, "Invalid", "the patch produced a non-object")
        return out

    def patch(self, req: Request, res: Resource, ns: str | None, name: str, sub: str | None) -> Response:
        def fn(cur: Obj) -> Obj:
            patched = self._apply_patch(req, cur)
            rv = patched.get("metadata", {}).get("resourceVersion")
            if rv and rv != cur["metadata"]["resourceVersion"]:
                raise APIError(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} "{name}": the object '
                               "has been modified; please apply your changes to the latest version and try again")
            merged = self._merge_update(res, cur, patched, sub)
            DEFAULTERS.get(res.kind, lambda o: None)(merged)
            if sub is None:
                VALIDATORS.get(res.kind, lambda r, o: None)(res, merged)
            return merged

        return self.render(req, res, self.store.update(res, ns, name, fn))

    def delete(self, req: Request, res: Resource, ns: str | None, name: str) -> Response:
        opts = self.body(req) or {}
        obj = self.store.get(res, ns, name)
        pre = (opts.get("preconditions") or {}) if isinstance(opts, dict) else {}
        if pre.get("uid") and pre["uid"] != obj["metadata"].get("uid"):
            raise APIError(409, "Conflict", f'Precondition failed: UID in precondition: {pre["uid"]}, UID in object meta: '
                           f'{obj["metadata"].get("uid")}')
        if res.kind == "Namespace" and name in ("default", "kube-system"):
            raise APIError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        self.store.delete(res, ns, name, obj["metadata"]["resourceVersion"])
        policy = opts.get("propagationPolicy") if isinstance(opts, dict) else None
        if isinstance(opts, dict) and (policy == "Orphan" or opts.get("orphanDependents") is True):
            self.orphan(obj)
        log.info("deleted %s %s%s", res.plural, f"{ns}/" if ns else "", name)
        return self.render(req, res, obj)

    def orphan(self, owner: Obj) -> None:
        uid = owner["metadata"].get("uid")
        pods = BY_PATH[("", "v1", "pods")]
        for p in self.store.list(pods, owner["metadata"].get("namespace"))[0]:
            if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or []):
                def strip(cur: Obj) -> Obj:
                    cur["metadata"]["ownerReferences"] = [r for r in cur["metadata"].get("ownerReferences") or []
                                                          if r.get("uid") != uid]
                    return cur
                try:
                    self.store.update(pods, p["metadata"]["namespace"], p["metadata"]["name"], strip)
                except APIError:
                    pass

    # subresources ------------------------------------------------------------------
    def bind(self, req: Request, res: Resource, ns: str, name: str) -> Response:
        binding = self.body(req) or {}
        target = (binding.get("target") or {}).get("name")
        if not target:
            raise APIError(422, "Invalid", "Binding.target.name: Required value")

        def fn(pod: Obj) -> Obj:
            if pod["spec"].get("nodeName"):
                raise APIError(409, "Conflict", f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} '
                               f'is already assigned to node "{pod["spec"]["nodeName"]}"')
            pod["spec"]["nodeName"] = target
            kobj.set_condition(pod, {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                                     "lastTransitionTime": kobj.now_rfc3339()})
            return pod

        self.store.update(res, ns, name, fn)
        return Response(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})

    def logs(self, req: Request, res: Resource, ns: str, name: str) -> Response:
        """Proxy to the kubelet's /containerLogs, as the real apiserver does."""
        pod = self.store.get(res, ns, name)
        containers = [c["name"] for c in pod["spec"].get("containers") or []]
        container = req.query.get("container") or (containers[0] if len(containers) == 1 else "")
        if container not in containers:
            raise APIError(400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: "
                           f"{containers}" if not container else f"container {container} is not valid for pod {name}")
        node_name = pod["spec"].get("nodeName")
        if not node_name:
            raise APIError(400, "BadRequest", f'pod "{name}" is not scheduled yet')
        node = self.store.get(BY_PATH[("", "v1", "nodes")], None, node_name)
        addrs = {a.get("type"): a.get("address") for a in node.get("status", {}).get("addresses") or []}
        port = ((node.get("status", {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port", 10250)
        host = addrs.get("InternalIP") or node_name
        query = urllib.parse.urlencode({k: v for k, v in req.query.items() if k in ("tailLines", "previous")})
        import http.client
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("GET", f"/containerLogs/{ns}/{name}/{container}" + (f"?{query}" if query else ""))
            resp = conn.getresponse()
            body = resp.read()
        except OSError as e:
            raise APIError(500, "InternalError", f"cannot reach the kubelet of node {node_name} at {host}:{port}: {e}") from None
        finally:
            conn.close()
        if resp.status != 200:
            raise APIError(resp.status if resp.status in (400, 404) else 500, "NotFound" if resp.status == 404 else
                           "InternalError", body.decode(errors="replace").strip() or f"kubelet answered {resp.status}")
        return Response(200, body, "text/plain")

    def scale_of(self, rc: Obj) -> Obj:
        m = rc["metadata"]
        sel = ",".join(f"{k}={v}" for k, v in (rc["spec"].get("selector") or {}).items())
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": m["name"], "namespace": m.get("namespace"), "uid": m.get("uid"),
                             "resourceVersion": m["resourceVersion"], "creationTimestamp": m.get("creationTimestamp")},
                "spec": {"replicas": rc["spec"].get("replicas", 0)},
                "status": {"replicas": (rc.get("status") or {}).get("replicas", 0), "selector": sel}}

    def update_scale(self, req: Request, res: Resource, ns: str | None, name: str) -> Response:
        def fn(rc: Obj) -> Obj:
            scale = self.scale_of(rc)
            new = self._apply_patch(req, scale) if req.method == "PATCH" else self.body(req)
            rv = (new.get("metadata") or {}).get("resourceVersion")
            if rv and rv != rc["metadata"]["resourceVersion"]:
                raise APIError(409, "Conflict", f'Operation cannot be fulfilled on replicationcontrollers "{name}": '
                               "the object has been modified; please apply your changes to the latest version and try again")
            replicas = (new.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise invalid(res, name, "spec.replicas: must be a non-negative integer")
            if replicas != rc["spec"].get("replicas"):
                rc["spec"]["replicas"] = replicas
                rc["metadata"]["generation"] = int(rc["metadata"].get("generation", 1)) + 1
            return rc

        rc = self.store.update(res, ns, name, fn)
        log.info("scaled replicationcontrollers %s/%s to %s", ns, name, rc["spec"]["replicas"])
        return Response(200, self.scale_of(rc))

    @staticmethod
    def pdb_status(pdb: Obj, pods: list[Obj], rcs: list[Obj]) -> Obj:
        """What the disruption controller would publish for pdb (policy/v1beta1 status)."""
        reqs = kobj.selector_requirements(pdb["spec"].get("selector"))
        matching = [p for p in pods if reqs and kobj.match_requirements(reqs, p["metadata"].get("labels"))
                    and kobj.pod_active(p)]
        healthy = sum(1 for p in matching if kobj.pod_ready(p))
        expected, counted = 0, set()
        for p in matching:
            ref = kobj.controller_ref(p)
            rc = next((r for r in rcs if ref and r["metadata"].get("uid") == ref.get("uid")), None)
            if rc is None:
                expected += 1
            elif rc["metadata"]["uid"] not in counted:
                counted.add(rc["metadata"]["uid"])
                expected += int(rc["spec"].get("replicas", 0))
        spec = pdb["spec"]
        if "maxUnavailable" in spec and spec["maxUnavailable"] is not None:
            desired = max(0, expected - kobj.int_or_percent(spec["maxUnavailable"], expected, True))
        else:
            desired = kobj.int_or_percent(spec.get("minAvailable", 1), expected, True)
        return {"observedGeneration": pdb["metadata"].get("generation", 1), "currentHealthy": healthy,
                "desiredHealthy": desired, "expectedPods": expected,
                "disruptionsAllowed": max(0, healthy - desired)}

    def evict(self, req: Request, res: Resource, ns: str, name: str) -> Response:
        pod = self.store.get(res, ns, name)
        phase = (pod.get("status") or {}).get("phase")
        ok = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        if phase in ("Succeeded", "Failed", "Pending"):
            self.store.delete(res, ns, name)
            return Response(201, ok)
        pdb_res = BY_PATH[("policy", "v1beta1", "poddisruptionbudgets")]
        pdbs = [p for p in self.store.list(pdb_res, ns)[0]
                if kobj.match_requirements(kobj.selector_requirements(p["spec"].get("selector")) or [("", "exists", [])],
                                           pod["metadata"].get("labels"))]
        if len(pdbs) > 1:
            raise APIError(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the eviction "
                           "subresource does not support.")
        if pdbs:
            pdb = pdbs[0]
            pods = self.store.list(res, ns)[0]
            rcs = self.store.list(BY_PATH[("", "v1", "replicationcontrollers")], ns)[0]
            st = self.pdb_status(pdb, pods, rcs)
            allowed = st["disruptionsAllowed"] >= 1 if kobj.pod_ready(pod) else st["currentHealthy"] >= st["desiredHealthy"]
            if not allowed:
                log.info("eviction of pods %s/%s refused by poddisruptionbudget %s", ns, name, pdb["metadata"]["name"])
                raise APIError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.",
                               {"causes": [{"reason": "DisruptionBudget", "message":
                                            f"The disruption budget {pdb['metadata']['name']} needs "
                                            f"{st['desiredHealthy']} healthy pods and has {st['currentHealthy']} currently"}]})
        self.store.delete(res, ns, name, pod["metadata"]["resourceVersion"])
        log.info("evicted pods %s/%s", ns, name)
        return Response(201, ok)

    def events(self, req: Request, res: Resource, ns: str | None, name: str | None) -> Response:
        if req.method == "GET" and name is None:
            return Response(200, {"kind": "EventList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []})
        if req.method in ("POST", "PUT", "PATCH"):
            obj = self.body(req) or {}
            if isinstance(obj, dict):
                meta = obj.setdefault("metadata", {})
                meta.setdefault("uid", kobj.new_uid())
                meta["resourceVersion"] = "1"
                return Response(201 if req.method == "POST" else 200, obj)
        if req.method == "GET" and name:
            raise not_found(res, name)
        if req.method == "DELETE":
            return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
        raise APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def make_handler(api: API) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "standin-apiserver"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes; without NODELAY, Nagle and the
            # client's delayed ACK stall every keep-alive request by ~40 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def _serve(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            req = Request(self.command, url.path, dict(urllib.parse.parse_qsl(url.query)), self.headers, body)
            try:
                resp = api.handle(req)
            except Exception as exc:  # noqa: BLE001 - a server answers 500, it does not die
                log.exception("internal error on %s %s", self.command, self.path)
                resp = Response(500, APIError(500, "InternalError", f"internal error: {exc}").status())
            if not isinstance(resp.body, (bytes, dict, list)):
                self._stream(resp)
                return
            data = resp.body if isinstance(resp.body, bytes) else json.dumps(resp.body).encode()
            self.send_response(resp.code)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            if resp.code >= 400 and resp.code != 404:
                log.info("%s %s -> %d", self.command, self.path, resp.code)

        def _stream(self, resp: Response) -> None:
            self.send_response(resp.code)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for chunk in resp.body:
                    if chunk:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    elif self._client_gone():
                        return
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True

        def _client_gone(self) -> bool:
            import select
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            try:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    return Handler


def ensure_namespaces(store: Store) -> None:
    res = BY_PATH[("", "v1", "namespaces")]
    for ns in ("default", "kube-system"):
        obj = {"kind": "Namespace", "apiVersion": "v1",
               "metadata": {"name": ns, "uid": kobj.new_uid(), "creationTimestamp": kobj.now_rfc3339()}}
        default_ns(obj)
        try:
            store.create(res, obj)
        except APIError as e:
            if e.code != 409:
                raise


def serve(opts: dict[str, Any], ready: threading.Event | None = None) -> ThreadingHTTPServer:
    etcd = Etcd2(opts["etcd-servers"].split(","))
    store = Store(etcd, opts["etcd-prefix"])
    for attempt in range(60):
        try:
            ensure_namespaces(store)
            break
        except EtcdUnreachable as exc:
            if attempt == 59:
                raise
            log.info("waiting for etcd: %s", exc)
            import time
            time.sleep(1)
    host = opts["address"] or opts["insecure-bind-address"]
    port = opts["port"] or opts["insecure-port"]
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer((host, port), make_handler(API(store)))
    log.info("serving insecurely on %s:%d (etcd %s)", host, server.server_address[1], opts["etcd-servers"])
    return server


def main(argv: list[str]) -> None:
    setup_logging("apiserver")
    opts = parse_flags("apiserver", argv, FLAGS)
    try:
        server = serve(opts)
    except (EtcdUnreachable, OSError) as exc:
        log.error("cannot start: %s", exc)
        sys.exit(1)
    server.serve_forever()
