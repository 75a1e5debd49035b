"""The apiserver stand-in's discovery documents and other non-resource paths, per release.

piprov's drain decides from these documents as kubectl does (an eviction
subresource listed under /api/v1 -> evict; the coordination.k8s.io group ->
node Leases), so each release answers exactly what it served:

* ``/api``: APIVersions ``["v1"]`` (1.18 adds serverAddressByClientCIDRs, which
  came in 1.2).
* ``/api/v1`` and ``/apis/G/V``: an APIResourceList of the release's table
  (apitypes.RESOURCES). On 1.1 ``pods/eviction`` is absent. 1.1's APIResource
  had only ``name`` and ``namespaced``; the stand-in adds ``kind`` and ``verbs``
  on 1.1 too, because the lab's kubectl 1.20 cannot map a resource without them
  (a compatibility allowance, not 1.1 behaviour; nothing in piprov reads them).
* ``/apis``: an APIGroupList; 1.1: ``extensions`` (v1beta1) only; 1.18: the
  groups of its table. ``/apis/<group>`` of a group the release lacks, e.g.
  ``/apis/policy`` on 1.1, is a 404 as on the real server.
* ``/version``, ``/healthz`` (1.18 also ``/livez``, ``/readyz``), and on 1.18
  ``/openapi/v2`` (an empty protobuf document: kubectl's validation then skips
  unknown kinds; 1.1 served only /swaggerapi, which kubectl 1.20 does not read).
"""

from __future__ import annotations

from typing import Any

from .apitypes import CATEGORY_ALL, SUB_KINDS, Resource, resources_of
from .release import Release

Obj = dict[str, Any]
# Build details /version reported: go1.4.2 built 1.1 (hack/lib/golang.sh at 1.1), go1.13 built 1.18.
GO_VERSION = {"1.1": "go1.4.2", "1.18": "go1.13.15"}
BUILD_DATE = {"1.1": "2015-11-20T17:04:00Z", "1.18": "2021-06-16T12:52:14Z"}


def resource_list(rel: Release, group: str, version: str) -> Obj:
    out: list[Obj] = []
    for r in resources_of(rel):
        if (r.group, r.version) != (group, version):
            continue
        entry: Obj = {"name": r.plural, "namespaced": r.namespaced, "kind": r.kind, "verbs": list(r.verbs)}
        if rel.modern:
            entry.update({"singularName": r.kind.lower(), "shortNames": list(r.short),
                          **({"categories": ["all"]} if r.plural in CATEGORY_ALL else {})})
        elif r.short:
            entry["shortNames"] = list(r.short)  # the kubectl 1.20 allowance again (`kubectl get po`)
        out.append(entry)
        out.extend(_subresources(rel, r, group, version))
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def _subresources(rel: Release, r: Resource, group: str, version: str) -> list[Obj]:
    out = []
    for sub in r.subresources:
        gvk = SUB_KINDS[rel.line][sub]
        entry: Obj = {"name": f"{r.plural}/{sub}", "namespaced": r.namespaced,
                      "kind": r.kind if gvk is None else gvk[2],
                      "verbs": ["create"] if sub in ("binding", "eviction") else
                      ["get"] if sub == "log" else ["get", "patch", "update"]}
        if rel.modern:
            entry["singularName"] = ""
            if gvk is not None and (gvk[0], gvk[1]) != (group, version):
                entry["group"], entry["version"] = gvk[0], gvk[1]
        out.append(entry)
    return out


def groups(rel: Release) -> list[Obj]:
    seen: dict[str, list[str]] = {}
    for r in resources_of(rel):
        if r.group and r.version not in seen.setdefault(r.group, []):
            seen[r.group].append(r.version)
    out = []
    for name, versions in seen.items():
        gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        out.append({"name": name, "versions": gvs, "preferredVersion": gvs[0]})
    return out


def version_info(rel: Release) -> Obj:
    return {"major": str(rel.major), "minor": str(rel.minor), "gitVersion": rel.version, "gitCommit": "standin",
            "gitTreeState": "clean", "buildDate": BUILD_DATE[rel.line], "goVersion": GO_VERSION[rel.line],
            "compiler": "gc", "platform": "linux/amd64"}


def document(rel: Release, path: str, host: str) -> tuple[int, Any, str] | None:
    """The (code, body, content type) of a non-resource path, or None if it is a resource path."""
    p = path.rstrip("/") or "/"
    if p == "/version":
        return 200, version_info(rel), "application/json"
    if p == "/api":
        doc: Obj = {"kind": "APIVersions", "versions": ["v1"]}
        if rel.modern:
            doc["serverAddressByClientCIDRs"] = [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]
        return 200, doc, "application/json"
    if p == "/api/v1":
        return 200, resource_list(rel, "", "v1"), "application/json"
    gs = {g["name"]: g for g in groups(rel)}
    if p == "/apis":
        return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": list(gs.values())}, "application/json"
    parts = p.strip("/").split("/")
    if parts[0] == "apis" and len(parts) in (2, 3):
        g = gs.get(parts[1])
        if g is None or (len(parts) == 3 and parts[2] not in [v["version"] for v in g["versions"]]):
            return 404, b"404 page not found\n", "text/plain"
        if len(parts) == 2:
            return 200, {"kind": "APIGroup", "apiVersion": "v1", **g}, "application/json"
        return 200, resource_list(rel, parts[1], parts[2]), "application/json"
    if rel.modern and p in ("/openapi/v2", "/swagger-2.0.0.pb-v1"):
        return 200, b"", "application/octet-stream"
    if p == "/":
        paths = ["/api", "/api/v1", "/apis", *[f"/apis/{g['preferredVersion']['groupVersion']}" for g in gs.values()],
                 "/healthz", "/version"]
        return 200, {"paths": paths}, "application/json"
    return None


def health_path(rel: Release, path: str) -> bool:
    p = path.rstrip("/") or "/"
    return p in ("/healthz", "/healthz/ping") or (rel.modern and p in ("/livez", "/readyz"))
