"""The component graph: the seed stack as data, and the one source of ordering.

``playbooks/*.yaml`` describe components (docker-bootstrap, etcd, flannel, ...):
the roles they run on, what they require (on the same node, or on the master),
the files and units they own, their health checks, which file changes
restart which unit, and the stack knowledge the rest of piprov asks the graph
for (disruptive components, the pod network's etcd prefix, images, binaries).
From that one graph come both the units' ``After=`` / ``Wants=`` / ``Requires=`` lines and
the order in which the orchestrator walks the fleet (:func:`node_dag`), each
edge gated by the health of the vertex it leaves.

Rooms: :mod:`.model` (plain values; the planner imports only this),
:mod:`.playbook` (loading and validation), :mod:`.dag` (the node DAG),
:mod:`.text` (its text and DOT views), :mod:`.expr` (the small jinja
expressions of probe targets).
"""

from piprov.graph.dag import Edge, NodeDag, Vertex, critical_path, node_dag
from piprov.graph.expr import probe_context, render_check, render_expression
from piprov.graph.model import (
    EDGE_KINDS,
    PROBE_KINDS,
    ROLES,
    SYSTEMD_DIR,
    Component,
    ComponentGraph,
    EdgeKind,
    EtcdKeys,
    HealthCheck,
    ManagedFile,
    Placement,
    ProbeKind,
    Requirement,
    UnitDependencies,
)
from piprov.graph.playbook import load_graph
from piprov.graph.text import components_dot, components_text, dag_dot, dag_text

__all__ = [
    "EDGE_KINDS",
    "PROBE_KINDS",
    "ROLES",
    "SYSTEMD_DIR",
    "Component",
    "ComponentGraph",
    "Edge",
    "EdgeKind",
    "EtcdKeys",
    "HealthCheck",
    "ManagedFile",
    "NodeDag",
    "Placement",
    "ProbeKind",
    "Requirement",
    "UnitDependencies",
    "Vertex",
    "components_dot",
    "components_text",
    "critical_path",
    "dag_dot",
    "dag_text",
    "load_graph",
    "node_dag",
    "probe_context",
    "render_check",
    "render_expression",
]
