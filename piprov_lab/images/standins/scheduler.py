"""kube-scheduler STAND-IN (``/hyperkube scheduler`` on 1.1, ``/hyperkube kube-scheduler`` on 1.18).

Not Kubernetes; the lab's stand-in for the scheduler of the release in
``KUBE_VERSION``. Contract followed: flags of that release (flagsets.py;
unknown -> exit 1), of which ``--master``, ``--port`` (healthz, 10251) and
``--address`` (127.0.0.1 on 1.1, 0.0.0.0 on 1.18) are used. It binds pending
pods (empty ``spec.nodeName``, ``schedulerName`` default-scheduler or unset)
through the ``pods/binding`` subresource to a node that is Ready and matches the
pod's ``nodeSelector``; among those it picks the node running the fewest active
pods (spreading), ties by name. A node with ``spec.unschedulable`` is skipped:
always on 1.1 (its node lister left such nodes out); on 1.18 unless the pod
tolerates the ``node.kubernetes.io/unschedulable:NoSchedule`` taint, as daemon
pods do (NodeUnschedulable filter plugin). On 1.18 also a required node
affinity on ``metadata.name`` (how daemon pods are pinned since
ScheduleDaemonSetPods) and NoSchedule/NoExecute taints are honoured.

Not covered: resource requests and capacity, other affinity terms, host ports,
volume zones, priorities and preemption, extenders, leader election.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from . import kobj, release
from .common import HTTPError, KubeClient, flags_for, kube_client_from_flags, parse_flags, pod_path, serve_healthz, setup_logging, version_requested
from .controller_manager import daemon_pod_node, tolerates
from .release import Release

log = logging.getLogger("standin")
Obj = dict[str, Any]

FLAGS = flags_for("scheduler", release.current())
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


def fits(pod: Obj, node: Obj, rel: Release) -> bool:
    spec = pod.get("spec") or {}
    nspec = node.get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    if not kobj.node_ready(node) or not all(labels.get(k) == v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    if not rel.modern:
        return not nspec.get("unschedulable")
    tols = spec.get("tolerations") or []
    if nspec.get("unschedulable") and not tolerates(tols, UNSCHEDULABLE_TAINT):
        return False
    if any(t.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tols, t) for t in nspec.get("taints") or []):
        return False
    pinned = daemon_pod_node(pod)
    return not pinned or pinned == node["metadata"]["name"]


def pick_node(pod: Obj, nodes: list[Obj], load: dict[str, int], rel: Release | None = None) -> str | None:
    rel = rel or release.current()
    fits_ = [n["metadata"]["name"] for n in nodes if fits(pod, n, rel)]
    if not fits_:
        return None
    return min(fits_, key=lambda name: (load.get(name, 0), name))


def schedule_once(kube: KubeClient, rel: Release | None = None) -> int:
    pending = [p for p in kube.list("/api/v1/pods", fieldSelector="spec.nodeName=")
               if kobj.pod_active(p) and p["spec"].get("schedulerName", "default-scheduler") == "default-scheduler"]
    if not pending:
        return 0
    nodes = kube.list("/api/v1/nodes")
    load: dict[str, int] = {}
    for p in kube.list("/api/v1/pods"):
        if p["spec"].get("nodeName") and kobj.pod_active(p):
            load[p["spec"]["nodeName"]] = load.get(p["spec"]["nodeName"], 0) + 1
    bound = 0
    for pod in sorted(pending, key=lambda p: p["metadata"].get("creationTimestamp", "")):
        node = pick_node(pod, nodes, load, rel)
        name = f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
        if node is None:
            log.info("pod %s: no node fits (0/%d nodes are ready, schedulable and match)", name, len(nodes))
            continue
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod["metadata"]["name"]},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        status, body = kube.request("POST", pod_path(pod, "binding"), binding)
        if status in (200, 201):
            load[node] = load.get(node, 0) + 1
            bound += 1
            log.info("bound pod %s to %s", name, node)
        else:
            log.info("binding pod %s to %s failed: %s", name, node, (body or {}).get("message"))
    return bound


def main(argv: list[str]) -> None:
    setup_logging("scheduler")
    rel = release.current()
    opts = parse_flags("scheduler", argv, flags_for("scheduler", rel))
    if version_requested(opts, rel):
        return
    kube = kube_client_from_flags(opts, "scheduler")
    serve_healthz(opts["address"], opts["port"], kube.healthy)
    log.info("%s scheduler stand-in: master %s", rel.version, kube.master)
    while True:
        try:
            schedule_once(kube, rel)
        except (HTTPError, OSError) as exc:
            log.warning("apiserver not usable yet: %s", exc)
        time.sleep(1.0)


if __name__ == "__main__":
    main(sys.argv[1:])
