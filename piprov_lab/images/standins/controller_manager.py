"""kube-controller-manager STAND-IN (``/hyperkube controller-manager`` on 1.1,
``/hyperkube kube-controller-manager`` on 1.18).

Not Kubernetes; the lab's stand-in for the controller manager of the release in
``KUBE_VERSION``. Contract followed:

* flags: flagsets.py (the release's flags; unknown -> exit 1). Used:
  ``--master``, ``--node-monitor-grace-period`` (the lab's default is 20s, not
  the real 40s: a lab override, so the heal suite sees a dead node in seconds),
  ``--node-monitor-period`` (2s), ``--pod-eviction-timeout`` (5m), ``--port``
  (healthz, 10252), ``--address`` (127.0.0.1).
* replication manager: each ReplicationController keeps ``spec.replicas``
  active pods: it creates pods from the template (``generateName: <rc>-``, the
  template's labels) and deletes the extras (unscheduled, then not ready, then
  newest first); it publishes ``status.replicas`` (1.18 also ``readyReplicas``,
  ``availableReplicas``, ``fullyLabeledReplicas``, ``observedGeneration``).
  1.1 (pkg/controller/replication at 1.1): an RC's pods are the active pods of
  its namespace matching its selector; a created pod carries the annotation
  ``kubernetes.io/created-by``, the JSON of a v1 SerializedReference to the RC
  (pkg/controller/controller_utils.go getReplicaAnnotationSet:
  ``{"kind":"SerializedReference","apiVersion":"v1","reference":{"kind":
  "ReplicationController","namespace":..,"name":..,"uid":..,"apiVersion":"v1",
  "resourceVersion":..}}``). 1.18: pods belong by their controller
  ownerReference (kind ReplicationController, ``controller: true``,
  ``blockOwnerDeletion: true``); no created-by annotation (it was deprecated in
  1.8 and no longer written).
* daemon set controller (1.18, pkg/controller/daemon): one pod per node that
  should run it (the template's nodeSelector matches, every NoSchedule/NoExecute
  taint tolerated), owned by the DaemonSet (apps/v1, ``controller: true``),
  labelled ``controller-revision-hash`` and ``pod-template-generation``, bound
  to its node by a required node affinity on ``metadata.name`` (the default
  scheduler places it, as 1.18 did with ScheduleDaemonSetPods) and given the
  tolerations 1.18 adds to every daemon pod (pkg/controller/daemon/util
  AddOrUpdateDaemonPodTolerations: not-ready and unreachable NoExecute,
  disk-/memory-/pid-pressure and unschedulable NoSchedule, network-unavailable
  for host-network pods): so a cordoned node keeps its daemon pods. Status:
  desired/current/ready/available/misscheduled/updated numbers.
* node lifecycle: a node this controller has not seen give a sign of life
  for longer than the grace period gets Ready=Unknown (reason
  NodeStatusUnknown, which kubectl shows as NotReady) and its pods
  Ready=False; once it has been NotReady for ``--pod-eviction-timeout`` its
  pods are deleted (1.18 does this with NoExecute taints and the 300 s default
  toleration, the same delay). A sign of life is a changed Ready
  ``lastHeartbeatTime`` on 1.1; on 1.18 also a later ``spec.renewTime`` of
  the node's Lease in ``kube-node-lease``, which the kubelet renews every 10 s
  while it re-posts an unchanged node status only every 5 min. The grace runs
  on the controller's own clock from when it last *saw* a sign of life
  (``probeTimestamp``), never from the heartbeat's own timestamp, and a node
  it meets for the first time (as after a restart of the controller manager)
  starts with "now": 1.1 pkg/controller/node/nodecontroller.go
  tryUpdateNodeStatus ("Missing timestamp for Node %s. Assuming now as a
  timestamp."), 1.18 pkg/controller/nodelifecycle/node_lifecycle_controller.go
  tryUpdateNodeHealth (the same, plus ``savedLease.Spec.RenewTime.Before(
  observedLease.Spec.RenewTime)``). So a master restart whose outage is
  shorter than the grace marks no node NotReady, as on a real cluster.
* garbage collection: pods bound to a node that no longer exists are deleted
  (both lines); on 1.18 also pods whose controller owner (RC, DaemonSet) is
  gone (the garbage collector, 1.3+). 1.1 has no garbage collector: the pods
  of a deleted RC stay unless the client scaled it down first, as kubectl 1.1 did.
* disruption controller (1.18): PodDisruptionBudget status (currentHealthy,
  desiredHealthy, expectedPods, disruptionsAllowed).
* ``/healthz`` on 127.0.0.1:10252.

Not covered: deployments, replica sets, jobs, services/endpoints, namespace
deletion, service accounts, leader election, taint-based eviction as such,
adoption of orphans.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from . import kobj, release
from .apisubres import Subresources
from .common import HTTPError, KubeClient, flags_for, kube_client_from_flags, parse_flags, pod_path, serve_healthz, setup_logging, version_requested
from .release import Release

log = logging.getLogger("standin")
Obj = dict[str, Any]

LAB_DEFAULTS = {"node-monitor-grace-period": 20.0}
FLAGS = flags_for("controller-manager", release.current(), LAB_DEFAULTS)
CREATED_BY = "kubernetes.io/created-by"
# pkg/controller/daemon/util/daemonset_util.go AddOrUpdateDaemonPodTolerations (1.18)
DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}


def created_by(rc: Obj) -> str:
    """The 1.1 annotation value: a v1 SerializedReference to the RC (ObjectReference field order)."""
    m = rc["metadata"]
    ref = {"kind": "ReplicationController", "namespace": m.get("namespace", "default"), "name": m["name"],
           "uid": m["uid"], "apiVersion": "v1", "resourceVersion": m.get("resourceVersion", "")}
    return json.dumps({"kind": "SerializedReference", "apiVersion": "v1", "reference": ref}, separators=(",", ":"))


def owner_ref(kind: str, api_version: str, obj: Obj) -> Obj:
    return {"apiVersion": api_version, "kind": kind, "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


def tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def should_run_daemon(ds: Obj, node: Obj) -> bool:
    spec = (ds["spec"].get("template") or {}).get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    if not all(labels.get(k) == v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    tols = list(spec.get("tolerations") or []) + DAEMON_TOLERATIONS
    return all(tolerates(tols, t) for t in (node.get("spec") or {}).get("taints") or []
               if t.get("effect") in ("NoSchedule", "NoExecute"))


@dataclass
class Probe:
    """nodeHealthData: the sign of life last seen and when (the controller's clock)."""

    heartbeat: str | None
    renew: str | None
    at: float


class ControllerManager:
    def __init__(self, kube: KubeClient, grace: float, eviction_timeout: float = 300.0,
                 rel: Release | None = None, clock: Callable[[], float] = time.time) -> None:
        self.kube = kube
        self.grace = grace
        self.eviction_timeout = eviction_timeout
        self.rel = rel or release.current()
        self.clock = clock
        self.probes: dict[str, Probe] = {}

    # replication -------------------------------------------------------------------
    def sync_rcs(self, pods: list[Obj], rcs: list[Obj]) -> None:
        for rc in rcs:
            try:
                self.sync_rc(rc, pods)
            except HTTPError as exc:
                log.warning("sync of rc %s/%s failed: %s", rc["metadata"].get("namespace"), rc["metadata"]["name"], exc)

    def pods_of_rc(self, rc: Obj, pods: list[Obj]) -> list[Obj]:
        meta, spec = rc["metadata"], rc["spec"]
        ns = meta.get("namespace", "default")
        active = [p for p in pods if p["metadata"].get("namespace") == ns and kobj.pod_active(p)]
        if not self.rel.owner_references:
            return [p for p in active if kobj.map_selector_matches(spec.get("selector"), p["metadata"].get("labels"))]
        return [p for p in active if (kobj.controller_ref(p) or {}).get("uid") == meta["uid"]]

    def sync_rc(self, rc: Obj, pods: list[Obj]) -> None:
        meta, spec = rc["metadata"], rc["spec"]
        ns = meta.get("namespace", "default")
        mine = self.pods_of_rc(rc, pods)
        want = int(spec.get("replicas", 0))
        if len(mine) < want:
            for _ in range(want - len(mine)):
                self.create_pod(rc)
        elif len(mine) > want:
            def rank(p: Obj) -> tuple[int, int, float]:
                return (1 if p["spec"].get("nodeName") else 0, 1 if kobj.pod_ready(p) else 0,
                        -(kobj.parse_time(p["metadata"].get("creationTimestamp")) or 0.0))
            ranked = sorted(mine, key=rank)
            for p in ranked[: len(mine) - want]:
                self.kube.request("DELETE", pod_path(p))
                log.info("rc %s/%s: deleted pod %s (too many)", ns, meta["name"], p["metadata"]["name"])
            mine = ranked[len(mine) - want:]
        labelled = sum(1 for p in mine if kobj.map_selector_matches(spec.get("selector"), p["metadata"].get("labels")))
        ready = sum(1 for p in mine if kobj.pod_ready(p))
        status: Obj = {"replicas": want if len(mine) < want else len(mine)}
        if self.rel.modern:
            status.update({"fullyLabeledReplicas": labelled, "readyReplicas": ready, "availableReplicas": ready,
                           "observedGeneration": meta.get("generation", 1)})
        if {k: (rc.get("status") or {}).get(k) for k in status} != status:
            new = copy.deepcopy(rc)
            new["status"] = {**(rc.get("status") or {}), **status}
            self.kube.request("PUT", f"/api/v1/namespaces/{ns}/replicationcontrollers/{meta['name']}/status", new)

    def create_pod(self, rc: Obj) -> None:
        meta, tmpl = rc["metadata"], rc["spec"]["template"]
        annotations = dict((tmpl.get("metadata") or {}).get("annotations") or {})
        pod_meta: Obj = {"generateName": meta["name"] + "-", "namespace": meta.get("namespace", "default"),
                         "labels": dict((tmpl.get("metadata") or {}).get("labels") or {}), "annotations": annotations}
        if self.rel.owner_references:
            pod_meta["ownerReferences"] = [owner_ref("ReplicationController", "v1", rc)]
        else:
            annotations[CREATED_BY] = created_by(rc)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": copy.deepcopy(tmpl.get("spec") or {})}
        created = self.kube.call("POST", f"/api/v1/namespaces/{pod_meta['namespace']}/pods", pod)
        log.info("rc %s/%s: created pod %s", meta.get("namespace"), meta["name"], created["metadata"]["name"])

    # daemon sets (1.18) -----------------------------------------------------------------
    def sync_daemonsets(self, pods: list[Obj], nodes: list[Obj]) -> None:
        for ds in self.kube.list("/apis/apps/v1/daemonsets"):
            try:
                self.sync_daemonset(ds, pods, nodes)
            except HTTPError as exc:
                log.warning("sync of daemonset %s/%s failed: %s", ds["metadata"].get("namespace"),
                            ds["metadata"]["name"], exc)

    def sync_daemonset(self, ds: Obj, pods: list[Obj], nodes: list[Obj]) -> None:
        meta = ds["metadata"]
        ns = meta.get("namespace", "default")
        mine = [p for p in pods if p["metadata"].get("namespace") == ns and kobj.pod_active(p)
                and (kobj.controller_ref(p) or {}).get("uid") == meta["uid"]]
        by_node: dict[str, list[Obj]] = {}
        for p in mine:
            by_node.setdefault(daemon_pod_node(p), []).append(p)
        desired = scheduled = misscheduled = ready = 0
        for node in nodes:
            name = node["metadata"]["name"]
            have = by_node.pop(name, [])
            if should_run_daemon(ds, node):
                desired += 1
                if not have:
                    self.create_daemon_pod(ds, name)
                else:
                    scheduled += 1
                    ready += any(kobj.pod_ready(p) for p in have)
                    for extra in have[1:]:
                        self.kube.request("DELETE", pod_path(extra))
            else:
                misscheduled += bool(have)
                for p in have:
                    self.kube.request("DELETE", pod_path(p))
        status = {"desiredNumberScheduled": desired, "currentNumberScheduled": scheduled,
                  "numberMisscheduled": misscheduled, "numberReady": ready, "numberAvailable": ready,
                  "updatedNumberScheduled": scheduled, "observedGeneration": meta.get("generation", 1)}
        if {k: (ds.get("status") or {}).get(k) for k in status} != status:
            new = copy.deepcopy(ds)
            new["status"] = {**(ds.get("status") or {}), **status}
            self.kube.request("PUT", f"/apis/apps/v1/namespaces/{ns}/daemonsets/{meta['name']}/status", new)

    def create_daemon_pod(self, ds: Obj, node: str) -> None:
        meta, tmpl = ds["metadata"], ds["spec"]["template"]
        spec = copy.deepcopy(tmpl.get("spec") or {})
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}
        tols = list(spec.get("tolerations") or [])
        for t in DAEMON_TOLERATIONS + ([HOST_NETWORK_TOLERATION] if spec.get("hostNetwork") else []):
            if t not in tols:
                tols.append(t)
        spec["tolerations"] = tols
        labels = dict((tmpl.get("metadata") or {}).get("labels") or {})
        labels.update({"controller-revision-hash": kobj.template_hash(tmpl),
                       "pod-template-generation": str(meta.get("generation", 1))})
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"generateName": meta["name"] + "-", "namespace": meta.get("namespace", "default"),
                            "labels": labels, "annotations": dict((tmpl.get("metadata") or {}).get("annotations") or {}),
                            "ownerReferences": [owner_ref("DaemonSet", "apps/v1", ds)]},
               "spec": spec}
        created = self.kube.call("POST", f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods", pod)
        log.info("daemonset %s/%s: created pod %s for node %s", meta.get("namespace"), meta["name"],
                 created["metadata"]["name"], node)

    # garbage collection ------------------------------------------------------------------
    def collect(self, pods: list[Obj], owners: dict[str, set[str]], nodes: list[Obj]) -> None:
        node_names = {n["metadata"]["name"] for n in nodes}
        for p in pods:
            node = p["spec"].get("nodeName")
            ref = kobj.controller_ref(p) if self.rel.owner_references else None
            why = None
            if node and node not in node_names:
                why = f"its node {node} is gone"
            elif ref and ref.get("kind") in owners and ref.get("uid") not in owners[ref["kind"]]:
                why = f"its {ref['kind'].lower()} {ref.get('name')} is gone"
            if why:
                status, _ = self.kube.request("DELETE", pod_path(p))
                if status == 200:
                    log.info("deleted pod %s/%s: %s", p["metadata"].get("namespace"), p["metadata"]["name"], why)

    # node lifecycle ------------------------------------------------------------------------
    def probe(self, node: Obj, leases: dict[str, Obj], now: float) -> float:
        """When this controller last saw the node give a sign of life (tryUpdateNodeStatus/Health)."""
        name = node["metadata"]["name"]
        heartbeat = (kobj.condition(node, "Ready") or {}).get("lastHeartbeatTime")
        renew = ((leases.get(name) or {}).get("spec") or {}).get("renewTime")
        saved = self.probes.get(name)
        if saved is None:
            # Never posted: the startup grace counts from creation; otherwise "assuming now".
            at = now if heartbeat else (kobj.parse_time(node["metadata"].get("creationTimestamp")) or now)
            saved = self.probes[name] = Probe(heartbeat, renew, at)
        if heartbeat != saved.heartbeat:
            saved.heartbeat, saved.at = heartbeat, now
        if renew and (saved.renew is None or saved.renew < renew):
            saved.renew, saved.at = renew, now
        return saved.at

    def monitor_nodes(self, nodes: list[Obj], pods: list[Obj]) -> None:
        now = self.clock()
        leases: dict[str, Obj] = {}
        if self.rel.node_leases:
            leases = {lease["metadata"]["name"]: lease
                      for lease in self.kube.list("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")}
        for gone in set(self.probes) - {n["metadata"]["name"] for n in nodes}:
            del self.probes[gone]
        for n in nodes:
            ready = kobj.condition(n, "Ready")
            seen = self.probe(n, leases, now)
            if (ready or {}).get("status") == "Unknown":
                since = kobj.parse_time((ready or {}).get("lastTransitionTime")) or now
                if now - since > self.eviction_timeout:
                    self.evict_pods_of(n["metadata"]["name"], pods, now - since)
                continue
            if now - seen <= self.grace:
                continue
            self.mark_unknown(n, ready, pods, now - seen)

    def mark_unknown(self, n: Obj, ready: Obj | None, pods: list[Obj], silent_for: float) -> None:
        name = n["metadata"]["name"]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock()))
        new = copy.deepcopy(n)
        kobj.set_condition(new, {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                                 "message": "Kubelet stopped posting node status.",
                                 "lastHeartbeatTime": (ready or {}).get("lastHeartbeatTime"),
                                 "lastTransitionTime": stamp})
        status, _ = self.kube.request("PUT", f"/api/v1/nodes/{name}/status", new)
        if status != 200:
            return
        log.info("node %s: no sign of life for %.0fs (grace %.0fs): Ready=Unknown", name, silent_for, self.grace)
        for p in pods:
            if p["spec"].get("nodeName") == name and kobj.pod_ready(p):
                q = copy.deepcopy(p)
                kobj.set_condition(q, {"type": "Ready", "status": "False", "reason": "NodeNotReady",
                                       "lastProbeTime": None, "lastTransitionTime": stamp})
                self.kube.request("PUT", pod_path(p, "status"), q)

    def evict_pods_of(self, node: str, pods: list[Obj], down_for: float) -> None:
        for p in pods:
            if p["spec"].get("nodeName") == node and not (p["metadata"].get("annotations") or {}).get(
                    "kubernetes.io/config.mirror"):
                status, _ = self.kube.request("DELETE", pod_path(p))
                if status == 200:
                    log.info("deleted pod %s/%s: node %s not ready for %.0fs (pod eviction timeout %.0fs)",
                             p["metadata"].get("namespace"), p["metadata"]["name"], node, down_for, self.eviction_timeout)

    # disruption budgets (1.18) ----------------------------------------------------------------
    def sync_pdbs(self, pods: list[Obj], rcs: list[Obj]) -> None:
        for pdb in self.kube.list("/apis/policy/v1beta1/poddisruptionbudgets"):
            ns = pdb["metadata"].get("namespace", "default")
            st = Subresources.pdb_status(pdb, [p for p in pods if p["metadata"].get("namespace") == ns],
                                         [r for r in rcs if r["metadata"].get("namespace") == ns])
            if {k: (pdb.get("status") or {}).get(k) for k in st} != st:
                new = copy.deepcopy(pdb)
                new["status"] = {**(pdb.get("status") or {}), **st}
                self.kube.request("PUT", f"/apis/policy/v1beta1/namespaces/{ns}/poddisruptionbudgets/"
                                  f"{pdb['metadata']['name']}/status", new)

    def run_once(self, monitor: bool) -> None:
        nodes = self.kube.list("/api/v1/nodes")
        pods = self.kube.list("/api/v1/pods")
        rcs = self.kube.list("/api/v1/replicationcontrollers")
        if monitor:
            self.monitor_nodes(nodes, pods)
        owners = {"ReplicationController": {r["metadata"]["uid"] for r in rcs}}
        if self.rel.daemonsets:
            owners["DaemonSet"] = {d["metadata"]["uid"] for d in self.kube.list("/apis/apps/v1/daemonsets")}
        self.collect(pods, owners, nodes)
        pods = self.kube.list("/api/v1/pods")
        self.sync_rcs(pods, rcs)
        if self.rel.daemonsets:
            self.sync_daemonsets(pods, nodes)
        if self.rel.eviction:
            self.sync_pdbs(pods, rcs)


def daemon_pod_node(pod: Obj) -> str:
    """The node a daemon pod is for: its binding, else its required node affinity's metadata.name."""
    if pod["spec"].get("nodeName"):
        return str(pod["spec"]["nodeName"])
    terms = (((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    for term in terms:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("values"):
                return str(f["values"][0])
    return ""


def main(argv: list[str]) -> None:
    setup_logging("controller-manager")
    rel = release.current()
    opts = parse_flags("controller-manager", argv, flags_for("controller-manager", rel, LAB_DEFAULTS))
    if version_requested(opts, rel):
        return
    kube = kube_client_from_flags(opts, "controller-manager")
    serve_healthz(opts["address"], opts["port"], kube.healthy)
    cm = ControllerManager(kube, float(opts["node-monitor-grace-period"]), float(opts["pod-eviction-timeout"]), rel)
    log.info("%s controller-manager stand-in: master %s, node grace period %.0fs", rel.version,
             kube.master, cm.grace)
    last_monitor = 0.0
    while True:
        try:
            monitor = time.monotonic() - last_monitor >= float(opts["node-monitor-period"])
            cm.run_once(monitor)
            if monitor:
                last_monitor = time.monotonic()
        except (HTTPError, OSError) as exc:
            log.warning("apiserver not usable yet: %s", exc)
        time.sleep(1.0)


if __name__ == "__main__":
    main(sys.argv[1:])
