"""kube-controller-manager STAND-IN (``/hyperkube controller-manager``).

Not Kubernetes; the lab's stand-in for the controller manager of Kubernetes 1.1.
Contract followed:

* flags: ``--master`` (apiserver URL), ``--node-monitor-grace-period`` (default
  20s here; 40s in Kubernetes), ``--node-monitor-period`` (default 2s),
  ``--port`` (healthz, default 10252), ``--address`` (default 127.0.0.1); other
  flags are accepted and logged.
* replication manager: each ReplicationController keeps ``spec.replicas`` active
  pods: it creates pods from the template (``generateName: <rc>-``, labels of the
  template, a controller ownerReference to the RC) and deletes the extras
  (unscheduled, then not ready, then newest first); it publishes
  ``status.replicas``, ``readyReplicas``, ``availableReplicas``,
  ``fullyLabeledReplicas``, ``observedGeneration``.
* node lifecycle: a node whose Ready condition's ``lastHeartbeatTime`` is older
  than the grace period gets Ready=Unknown (reason NodeStatusUnknown, which
  kubectl shows as NotReady) and its pods get Ready=False; once it has been
  NotReady for ``--pod-eviction-timeout`` (default 5m, as Kubernetes) its pods
  are deleted, so their controllers recreate them elsewhere.
* pod garbage collection: pods bound to a node that no longer exists, and pods
  whose controller (an RC) no longer exists, are deleted.
* disruption controller: PodDisruptionBudget status (currentHealthy,
  desiredHealthy, expectedPods, disruptionsAllowed).
* ``/healthz`` on 127.0.0.1:10252.

Not covered: deployments, replica sets, daemon sets, jobs, services/endpoints,
namespace deletion, service accounts, pod eviction from unreachable nodes after
leader election, taints.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from typing import Any

from . import kobj
from .apiserver import API
from .common import Flag, HTTPError, KubeClient, parse_flags, pod_path, serve_healthz, setup_logging

log = logging.getLogger("standin")
Obj = dict[str, Any]

FLAGS = [
    Flag("master", "http://127.0.0.1:8080"),
    Flag("node-monitor-grace-period", 20.0, float),
    Flag("node-monitor-period", 2.0, float),
    Flag("pod-eviction-timeout", 300.0, float),
    Flag("port", 10252, int),
    Flag("address", "127.0.0.1"),
]


class ControllerManager:
    def __init__(self, kube: KubeClient, grace: float, eviction_timeout: float = 300.0) -> None:
        self.kube = kube
        self.grace = grace
        self.eviction_timeout = eviction_timeout

    # replication -------------------------------------------------------------------
    def sync_rcs(self, pods: list[Obj], rcs: list[Obj]) -> None:
        for rc in rcs:
            try:
                self.sync_rc(rc, pods)
            except HTTPError as exc:
                log.warning("sync of rc %s/%s failed: %s", rc["metadata"].get("namespace"), rc["metadata"]["name"], exc)

    def sync_rc(self, rc: Obj, pods: list[Obj]) -> None:
        meta, spec = rc["metadata"], rc["spec"]
        ns, uid = meta.get("namespace", "default"), meta["uid"]
        mine = [p for p in pods if p["metadata"].get("namespace") == ns and kobj.pod_active(p)
                and (kobj.controller_ref(p) or {}).get("uid") == uid]
        want = int(spec.get("replicas", 0))
        if len(mine) < want:
            for _ in range(want - len(mine)):
                self.create_pod(rc)
        elif len(mine) > want:
            def rank(p: Obj) -> tuple[int, int, float]:
                return (1 if p["spec"].get("nodeName") else 0, 1 if kobj.pod_ready(p) else 0,
                        -(kobj.parse_time(p["metadata"].get("creationTimestamp")) or 0.0))
            for p in sorted(mine, key=rank)[: len(mine) - want]:
                self.kube.request("DELETE", pod_path(p))
                log.info("rc %s/%s: deleted pod %s (too many)", ns, meta["name"], p["metadata"]["name"])
            mine = [p for p in mine if p in sorted(mine, key=rank)[len(mine) - want:]]
        labelled = sum(1 for p in mine if kobj.map_selector_matches(spec.get("selector"), p["metadata"].get("labels")))
        ready = sum(1 for p in mine if kobj.pod_ready(p))
        status = {"replicas": want if len(mine) < want else len(mine), "fullyLabeledReplicas": labelled,
                  "readyReplicas": ready, "availableReplicas": ready, "observedGeneration": meta.get("generation", 1)}
        if {k: (rc.get("status") or {}).get(k) for k in status} != status:
            new = copy.deepcopy(rc)
            new["status"] = {**(rc.get("status") or {}), **status}
            self.kube.request("PUT", f"/api/v1/namespaces/{ns}/replicationcontrollers/{meta['name']}/status", new)

    def create_pod(self, rc: Obj) -> None:
        meta, tmpl = rc["metadata"], rc["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"generateName": meta["name"] + "-", "namespace": meta.get("namespace", "default"),
                            "labels": dict((tmpl.get("metadata") or {}).get("labels") or {}),
                            "annotations": dict((tmpl.get("metadata") or {}).get("annotations") or {}),
                            "ownerReferences": [{"apiVersion": "v1", "kind": "ReplicationController",
                                                 "name": meta["name"], "uid": meta["uid"], "controller": True,
                                                 "blockOwnerDeletion": True}]},
               "spec": copy.deepcopy(tmpl.get("spec") or {})}
        created = self.kube.call("POST", f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods", pod)
        log.info("rc %s/%s: created pod %s", meta.get("namespace"), meta["name"], created["metadata"]["name"])

    # garbage collection ------------------------------------------------------------------
    def collect(self, pods: list[Obj], rcs: list[Obj], nodes: list[Obj]) -> None:
        node_names = {n["metadata"]["name"] for n in nodes}
        rc_uids = {r["metadata"]["uid"] for r in rcs}
        for p in pods:
            node = p["spec"].get("nodeName")
            ref = kobj.controller_ref(p)
            why = None
            if node and node not in node_names:
                why = f"its node {node} is gone"
            elif ref and ref.get("kind") == "ReplicationController" and ref.get("uid") not in rc_uids:
                why = f"its replicationcontroller {ref.get('name')} is gone"
            if why:
                status, _ = self.kube.request("DELETE", pod_path(p))
                if status == 200:
                    log.info("deleted pod %s/%s: %s", p["metadata"].get("namespace"), p["metadata"]["name"], why)

    # node lifecycle ------------------------------------------------------------------------
    def monitor_nodes(self, nodes: list[Obj], pods: list[Obj]) -> None:
        now = time.time()
        for n in nodes:
            ready = kobj.condition(n, "Ready")
            beat = kobj.parse_time((ready or {}).get("lastHeartbeatTime")) or kobj.parse_time(
                n["metadata"].get("creationTimestamp")) or now
            if (ready or {}).get("status") == "Unknown":
                since = kobj.parse_time((ready or {}).get("lastTransitionTime")) or now
                if now - since > self.eviction_timeout:
                    self.evict_pods_of(n["metadata"]["name"], pods, now - since)
                continue
            if now - beat <= self.grace:
                continue
            name = n["metadata"]["name"]
            stamp = kobj.now_rfc3339()
            new = copy.deepcopy(n)
            kobj.set_condition(new, {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                                     "message": "Kubelet stopped posting node status.",
                                     "lastHeartbeatTime": (ready or {}).get("lastHeartbeatTime"),
                                     "lastTransitionTime": stamp})
            status, _ = self.kube.request("PUT", f"/api/v1/nodes/{name}/status", new)
            if status == 200:
                log.info("node %s: no heartbeat for %.0fs (grace %.0fs): Ready=Unknown", name, now - beat, self.grace)
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

    # disruption budgets -------------------------------------------------------------------------
    def sync_pdbs(self, pods: list[Obj], rcs: list[Obj]) -> None:
        for pdb in self.kube.list("/apis/policy/v1beta1/poddisruptionbudgets"):
            ns = pdb["metadata"].get("namespace", "default")
            st = API.pdb_status(pdb, [p for p in pods if p["metadata"].get("namespace") == ns],
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
        self.collect(pods, rcs, nodes)
        pods = self.kube.list("/api/v1/pods")
        self.sync_rcs(pods, rcs)
        self.sync_pdbs(pods, rcs)


def main(argv: list[str]) -> None:
    setup_logging("controller-manager")
    opts = parse_flags("controller-manager", argv, FLAGS)
    kube = KubeClient(opts["master"])
    serve_healthz(opts["address"], opts["port"], kube.healthy)
    cm = ControllerManager(kube, float(opts["node-monitor-grace-period"]), float(opts["pod-eviction-timeout"]))
    log.info("controller-manager stand-in: master %s, node grace period %.0fs", opts["master"], cm.grace)
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
