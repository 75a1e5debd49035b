"""Node labels in `plan` and `up`: the label plan read from the apiserver, shown, applied."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Callable

from rich.markup import escape

from piprov.cli.app import err
from piprov.errors import ClusterError, PiprovError
from piprov.inventory import Inventory
from piprov.kube.client import JSON, KubeApi, api_for
from piprov.kube.labels import LabelPlan, apply_node_labels, label_changes, labels_of_nodes, plan_node_labels
from piprov.plan.labels import LabelChange


def _api(inventory: Inventory) -> KubeApi:
    return api_for(inventory, timeout=5.0)  # refuses a documentation address before any packet


def label_plan(inventory: Inventory, kube_nodes: Mapping[str, JSON] | None = None) -> LabelPlan:
    """Every node's label change (the apiserver not answering yet is not an error); from ``kube_nodes``
    when the caller has already read the Node objects."""
    if kube_nodes is not None:
        return labels_of_nodes(inventory, kube_nodes)
    try:
        return plan_node_labels(inventory, _api(inventory))
    except PiprovError as e:
        return {n.name: f"labels not planned: {e.message}" for n in inventory.nodes}


def label_plan_ahead(inventory: Inventory) -> Callable[[], LabelPlan]:
    """``label_plan(inventory)`` begun now on a thread of its own; call the result to wait for it.

    `up` reads the Nodes while the SSH connections and facts are under way: on a
    no-op run that read (a TLS handshake and a list of the Nodes) is otherwise
    the last serial step after the slowest node's facts. A daemon thread: a run
    that never asks for it does not wait for it at exit.
    """
    box: list[LabelPlan] = []
    t = threading.Thread(target=lambda: box.append(label_plan(inventory)), name="piprov-labels", daemon=True)
    t.start()

    def result() -> LabelPlan:
        t.join()
        return box[0] if box else label_plan(inventory)  # it raised on the thread: again here, to be seen

    return result


def label_plan_json(lp: LabelPlan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, c in lp.items():
        if isinstance(c, LabelChange):
            out[name] = {"set": dict(c.set), "remove": list(c.remove), "managed": list(c.managed),
                         "reason": c.reason, "node_registered": c.registered}  # fmt: skip
        else:
            out[name] = {"no_change": c}
    return out


def print_label_plan(lp: LabelPlan) -> None:
    for name, c in label_changes(lp).items():
        err.print(f"[bold]{escape(name)}[/] labels: [yellow]~[/] {escape(c.describe())} [dim]({escape(c.reason)})[/]")


def apply_labels(inventory: Inventory) -> bool:
    """PATCH every node's labels as the inventory says; print what was done. False if a patch failed."""
    try:
        done = apply_node_labels(inventory, _api(inventory))
    except PiprovError as e:
        err.print(f"[yellow]labels not applied[/]: {escape(e.message)}")
        return False
    ok = True
    for name, r in done.items():
        if isinstance(r, LabelChange):
            err.print(f"[green]✓[/] {escape(name)} labels: {escape(r.describe())}")
        elif isinstance(r, ClusterError):
            ok = False
            err.print(f"[bold red]✗[/] {escape(name)} labels: {escape(r.message)}")
        elif r.startswith("its Node is not registered"):
            err.print(f"[yellow]–[/] {escape(name)} labels: {escape(r)}")
    return ok
