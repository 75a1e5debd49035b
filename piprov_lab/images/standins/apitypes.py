"""What the apiserver stand-in serves, per release: resources, errors, defaults, validation.

Resource tables (one per release line, as data). Only what the stand-in can
store and serve is listed; each table is a subset of what that release served
(the rest, services, secrets, ..., was never needed by piprov or its lab).

1.1 (pkg/master/master.go, pkg/api/v1 at 1.1): core ``v1`` nodes, pods
(``status``, ``binding``, ``log``), replicationcontrollers (``status``; no
``scale`` under /api/v1: the RC scale subresource of 1.1 lives in
extensions/v1beta1 as ``replicationcontrollers/scale``, kind extensions
``Scale``, for the horizontal pod autoscaler), namespaces, events; group
``extensions/v1beta1`` with what 1.1 enabled by default: horizontalpodautoscalers,
ingresses, jobs and the RC scale (daemonsets and deployments were off unless
``--runtime-config`` turned them on). No policy group, no eviction, no
ownerReferences (dropped on write, as 1.1's decoder drops unknown fields).

1.18: core ``v1`` as above plus ``pods/eviction`` (group policy, version
v1beta1, kind Eviction) and ``replicationcontrollers/scale`` (autoscaling/v1
Scale); ``apps/v1`` daemonsets (``status``); ``policy/v1beta1``
poddisruptionbudgets (``status``); ``coordination.k8s.io/v1`` leases (the
node heartbeats in ``kube-node-lease``). ownerReferences are kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from . import kobj
from .release import Release

Obj = dict[str, Any]


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
    verbs: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


R = Resource
RESOURCES: dict[str, list[Resource]] = {
    "1.1": [
        R("", "v1", "nodes", "Node", False, "minions", ("no",), ("status",)),
        R("", "v1", "pods", "Pod", True, "pods", ("po",), ("status", "binding", "log")),
        R("", "v1", "replicationcontrollers", "ReplicationController", True, "controllers", ("rc",), ("status",)),
        R("", "v1", "namespaces", "Namespace", False, "namespaces", ("ns",), ("status",)),
        R("", "v1", "events", "Event", True, None, ("ev",), ()),
        R("extensions", "v1beta1", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True,
          "horizontalpodautoscalers", ("hpa",), ("status",)),
        R("extensions", "v1beta1", "ingresses", "Ingress", True, "ingress", ("ing",), ("status",)),
        R("extensions", "v1beta1", "jobs", "Job", True, "jobs", (), ("status",)),
        R("extensions", "v1beta1", "replicationcontrollers", "ReplicationControllerDummy", True, "controllers", (),
          ("scale",)),
    ],
    "1.18": [
        R("", "v1", "nodes", "Node", False, "minions", ("no",), ("status",)),
        R("", "v1", "pods", "Pod", True, "pods", ("po",), ("status", "binding", "eviction", "log")),
        R("", "v1", "replicationcontrollers", "ReplicationController", True, "controllers", ("rc",),
          ("status", "scale")),
        R("", "v1", "namespaces", "Namespace", False, "namespaces", ("ns",), ("status",)),
        R("", "v1", "events", "Event", True, None, ("ev",), ()),
        R("apps", "v1", "daemonsets", "DaemonSet", True, "daemonsets", ("ds",), ("status",)),
        R("policy", "v1beta1", "poddisruptionbudgets", "PodDisruptionBudget", True, "poddisruptionbudgets",
          ("pdb",), ("status",)),
        R("coordination.k8s.io", "v1", "leases", "Lease", True, "leases", (), ()),
    ],
}

# subresource -> (group, version, kind) of its body; None: the resource's own kind
SUB_KINDS: dict[str, dict[str, tuple[str, str, str] | None]] = {
    "1.1": {"status": None, "binding": ("", "v1", "Binding"), "log": ("", "v1", "Pod"),
            "scale": ("extensions", "v1beta1", "Scale")},
    "1.18": {"status": None, "binding": ("", "v1", "Binding"), "eviction": ("policy", "v1beta1", "Eviction"),
             "scale": ("autoscaling", "v1", "Scale"), "log": ("", "v1", "Pod")},
}
CATEGORY_ALL = {"pods", "replicationcontrollers", "daemonsets"}  # what `kubectl get all` expands to (1.18)
# Namespaces the apiserver creates itself: 1.1 default and kube-system (kube-system by the
# addons of that time, the master's static pods live there); 1.18 adds kube-public and
# kube-node-lease (pkg/master/controller.go systemNamespaces).
SYSTEM_NAMESPACES = {"1.1": ("default", "kube-system"),
                     "1.18": ("default", "kube-system", "kube-public", "kube-node-lease")}


def resources_of(rel: Release) -> list[Resource]:
    return RESOURCES[rel.line]


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


def drop_unknown_fields(rel: Release, obj: Obj) -> None:
    """What the release's decoder would not keep: 1.1's ObjectMeta has no ownerReferences."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and not rel.owner_references:
        meta.pop("ownerReferences", None)


def default_ds(ds: Obj) -> None:
    spec = ds.setdefault("spec", {})
    tmpl = spec.setdefault("template", {})
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    spec.setdefault("selector", {"matchLabels": dict(labels)})
    spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}})
    spec.setdefault("revisionHistoryLimit", 10)
    fake = {"metadata": tmpl.get("metadata") or {}, "spec": tmpl.setdefault("spec", {})}
    default_pod(fake)
    del fake["status"]
    ds.setdefault("status", {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                             "numberReady": 0})


def validate_ds(res: Resource, ds: Obj) -> None:
    name = ds["metadata"]["name"]
    spec = ds.get("spec") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    reqs = kobj.selector_requirements(spec.get("selector"))
    if not reqs:
        raise invalid(res, name, "spec.selector: Required value")
    if not kobj.match_requirements(reqs, labels):
        raise invalid(res, name, "spec.template.metadata.labels: Invalid value: "
                      f"{json.dumps(labels)}: `selector` does not match template `labels`")
    validate_pod(res, {"metadata": {"name": name}, "spec": (spec.get("template") or {}).get("spec") or {}})


DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "Pod": default_pod, "ReplicationController": default_rc, "Node": default_node,
    "Namespace": default_ns, "PodDisruptionBudget": default_pdb, "DaemonSet": default_ds,
}
VALIDATORS: dict[str, Callable[[Resource, Obj], None]] = {
    "Pod": validate_pod, "ReplicationController": validate_rc, "DaemonSet": validate_ds,
}
