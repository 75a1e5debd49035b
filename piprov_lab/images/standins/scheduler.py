"""kube-scheduler STAND-IN (``/hyperkube scheduler``).

Not Kubernetes; the lab's stand-in for the scheduler of Kubernetes 1.1.
Contract followed: flags ``--master``, ``--port`` (healthz, default 10251),
``--address`` (default 127.0.0.1); other flags are accepted and logged. It binds
pending pods (empty ``spec.nodeName``, ``schedulerName`` default-scheduler or
unset) through the ``pods/binding`` subresource to a node that is Ready, not
``spec.unschedulable`` and matches the pod's ``nodeSelector``; among those it
picks the node running the fewest active pods (spreading), ties by name.

Not covered: resource requests and capacity, affinity, taints/tolerations, host
ports, volume zones, priorities and preemption, extenders, leader election.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from . import kobj
from .common import Flag, HTTPError, KubeClient, parse_flags, pod_path, serve_healthz, setup_logging

log = logging.getLogger("standin")
Obj = dict[str, Any]

FLAGS = [Flag("master", "http://127.0.0.1:8080"), Flag("port", 10251, int), Flag("address", "127.0.0.1")]


def pick_node(pod: Obj, nodes: list[Obj], load: dict[str, int]) -> str | None:
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    fits = [n["metadata"]["name"] for n in nodes
            if kobj.node_ready(n) and not (n.get("spec") or {}).get("unschedulable")
            and all((n["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())]
    if not fits:
        return None
    return min(fits, key=lambda name: (load.get(name, 0), name))


def schedule_once(kube: KubeClient) -> int:
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
        node = pick_node(pod, nodes, load)
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
    opts = parse_flags("scheduler", argv, FLAGS)
    kube = KubeClient(opts["master"])
    serve_healthz(opts["address"], opts["port"], kube.healthy)
    log.info("scheduler stand-in: master %s", opts["master"])
    while True:
        try:
            schedule_once(kube)
        except (HTTPError, OSError) as exc:
            log.warning("apiserver not usable yet: %s", exc)
        time.sleep(1.0)


if __name__ == "__main__":
    main(sys.argv[1:])
