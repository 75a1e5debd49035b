"""The apiserver stand-in's verbs: list, watch, get, create, update, patch, delete.

Patches: JSON merge, strategic merge (for the merge keys kubectl uses) and JSON
patch. ``Accept: ...;as=Table`` answers a server-side Table (the columns kubectl
prints for pods, nodes, RCs, PDBs, namespaces). On every write the object goes
through what the release's decoder keeps (apitypes.drop_unknown_fields: no
ownerReferences on 1.1), its defaulting and validation.

Watch: ``?watch=true`` streams ADDED/MODIFIED/DELETED events (chunked, one JSON
per line, as Tables when asked) from etcd's v2 wait, from ``resourceVersion`` or
after the current list; a resourceVersion etcd no longer remembers answers an
ERROR event with a 410 Status.

Not covered: watch bookmarks and field-selector transitions (an object that
stops matching sends no DELETED), ``continue``/limit paging (a list is always
complete), graceful deletion (pods are removed at once, as with
``--grace-period=0``; the kubelet then stops their containers), field managers
and server-side apply.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from typing import Any

from . import kobj
from .apistore import Store
from .apitypes import DEFAULTERS, SYSTEM_NAMESPACES, VALIDATORS, APIError, Resource, drop_unknown_fields, invalid
from .etcd2 import KEY_NOT_FOUND, EtcdError
from .release import Release

log = logging.getLogger("standin")
Obj = dict[str, Any]


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


class Verbs:
    store: Store
    rel: Release
    by_path: dict[tuple[str, str, str], Resource]

    def body(self, req: Request) -> Any:
        try:
            return json.loads(req.body or b"null")
        except ValueError as e:
            raise APIError(400, "BadRequest", f"the body of the request was in an unknown format: {e}") from None

    def wants_table(self, req: Request) -> bool:
        return "as=Table" in (req.headers.get("Accept") or "")

    def ensure_namespace(self, ns: str) -> None:
        self.store.get(self.by_path[("", "v1", "namespaces")], None, ns)

    def render(self, req: Request, res: Resource, obj: Obj, code: int = 200) -> Response:
        obj.setdefault("kind", res.kind)
        obj.setdefault("apiVersion", res.api_version)
        if self.wants_table(req):
            return Response(code, kobj.to_table(res.kind, [obj], obj["metadata"].get("resourceVersion", ""),
                                                req.query.get("includeObject", "Metadata")))
        return Response(code, obj)

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
        drop_unknown_fields(self.rel, obj)
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
        if res.kind in ("Pod", "Node", "ReplicationController", "PodDisruptionBudget", "Namespace", "DaemonSet"):
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
        drop_unknown_fields(self.rel, merged)
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
            drop_unknown_fields(self.rel, merged)
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
        if res.kind == "Namespace" and name in SYSTEM_NAMESPACES[self.rel.line]:
            raise APIError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        self.store.delete(res, ns, name, obj["metadata"]["resourceVersion"])
        policy = opts.get("propagationPolicy") if isinstance(opts, dict) else None
        if isinstance(opts, dict) and (policy == "Orphan" or opts.get("orphanDependents") is True):
            self.orphan(obj)
        log.info("deleted %s %s%s", res.plural, f"{ns}/" if ns else "", name)
        return self.render(req, res, obj)

    def orphan(self, owner: Obj) -> None:
        uid = owner["metadata"].get("uid")
        pods = self.by_path[("", "v1", "pods")]
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
