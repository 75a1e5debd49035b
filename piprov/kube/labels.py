"""Inventory labels on the Kubernetes Nodes: read each Node (the fact), plan, PATCH.

The planning is :func:`piprov.plan.labels.plan_labels` (pure); this module
only reads the Node objects and sends the patches. The patch is a JSON merge
patch (``application/merge-patch+json``, RFC 7386: ``null`` removes a label),
the content type cordon already sends (:meth:`KubeApi.patch_node`). The
apiserver picks the patch kind from the Content-Type (kubernetes
pkg/apiserver/resthandler.go, ``PatchResource``: ``api.PatchType(contentType)``,
then ``getPatchedJS``: JSON patch, merge patch or strategic merge patch); the
lab's 1.1 and 1.18 stand-ins take all three.
"""

from __future__ import annotations

from collections.abc import Mapping

from piprov.errors import ClusterError
from piprov.inventory.model import Inventory
from piprov.kube.client import JSON, KubeApi, k8s_name
from piprov.plan.labels import LabelChange, node_labels, plan_labels

LabelPlan = dict[str, "LabelChange | str"]  # inventory node name -> the change, or why there is none


def plan_node_labels(inventory: Inventory, api: KubeApi) -> LabelPlan:
    """Every node's label change, from one list of the Nodes. The apiserver not answering (a
    cluster not up yet) is no error: nodes with labels get a change to make once it does."""
    try:
        objs: dict[str, JSON] | None = {str((o.get("metadata") or {}).get("name")): o for o in api.nodes()}
    except ClusterError:
        objs = None
    return labels_of_nodes(inventory, objs)


def labels_of_nodes(inventory: Inventory, objs: Mapping[str, JSON] | None) -> LabelPlan:
    """Every node's label change from the Node objects by name, already read (None: the API did not answer)."""
    out: LabelPlan = {}
    for n in inventory.nodes:
        change = plan_labels(k8s_name(n), n.labels, None if objs is None else node_labels(objs.get(k8s_name(n))))
        if objs is None and isinstance(change, LabelChange):
            change = LabelChange(change.node, change.set, (), change.managed,
                                 "the Kubernetes API does not answer yet: labels set by `up` once it does",
                                 registered=False)  # fmt: skip
        out[n.name] = change
    return out


def apply_node_labels(inventory: Inventory, api: KubeApi) -> dict[str, LabelChange | str | ClusterError]:
    """Plan against the Nodes as they are now and PATCH each change; per node, what was done."""
    done: dict[str, LabelChange | str | ClusterError] = {}
    for name, change in plan_node_labels(inventory, api).items():
        if isinstance(change, str) or not change.registered:
            done[name] = change if isinstance(change, str) else "its Node is not registered: labels not set yet"
            continue
        try:
            api.patch_node(change.node, change.patch())
        except ClusterError as e:
            done[name] = e
            continue
        done[name] = change
    return done


def label_changes(plan: LabelPlan) -> dict[str, LabelChange]:
    return {k: v for k, v in plan.items() if isinstance(v, LabelChange)}
