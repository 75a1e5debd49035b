"""The fleet's work graph: one vertex per (node, component), edges gated by health.

Built from the component graph and the inventory (:func:`node_dag`); the
orchestrator walks it, and ``piprov graph`` prints it (:mod:`piprov.graph.text`).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable, Mapping, NamedTuple, Sequence, TypeVar

from piprov.errors import GraphError, RenderError
from piprov.graph.expr import probe_context, render_check
from piprov.graph.model import ComponentGraph, HealthCheck
from piprov.inventory.model import Inventory


_V = TypeVar("_V", bound=Hashable)


def critical_path(
    vertices: Sequence[_V], predecessors: Callable[[_V], Iterable[_V]], cost: Mapping[_V, float]
) -> tuple[float, list[_V]]:
    """The longest chain of dependent vertices by ``cost`` (vertices topologically ordered)."""
    best: dict[_V, tuple[float, _V | None]] = {}
    for v in vertices:
        preds = [p for p in predecessors(v) if p in best]
        base, via = max(((best[p][0], p) for p in preds), default=(0.0, None), key=lambda t: t[0])
        best[v] = (base + cost.get(v, 0.0), via)
    if not best:
        return 0.0, []
    end = max(best, key=lambda v: best[v][0])
    total = best[end][0]
    chain: list[_V] = []
    cur: _V | None = end
    while cur is not None:
        chain.append(cur)
        cur = best[cur][1]
    chain.reverse()
    return total, chain


class Vertex(NamedTuple):
    """One component on one node: the unit of work of the orchestrator."""

    node: str
    component: str

    def __str__(self) -> str:
        return f"{self.node}/{self.component}"


@dataclass(frozen=True)
class Edge:
    """``dependent`` may start once ``required`` passes every check in ``gate``."""

    required: Vertex
    dependent: Vertex
    gate: tuple[HealthCheck, ...]


@dataclass
class NodeDag:
    """The fleet's work graph: vertices (node, component), edges gated by health."""

    vertices: list[Vertex]  # topological order
    edges: list[Edge]
    health: dict[Vertex, tuple[HealthCheck, ...]]  # rendered checks per vertex
    _preds: dict[Vertex, list[Edge]] = field(default_factory=dict, repr=False)
    _succs: dict[Vertex, list[Edge]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for v in self.vertices:
            self._preds.setdefault(v, [])
            self._succs.setdefault(v, [])
        for e in self.edges:
            self._preds[e.dependent].append(e)
            self._succs[e.required].append(e)

    def topological(self) -> list[Vertex]:
        return list(self.vertices)

    def predecessors(self, v: Vertex) -> list[Vertex]:
        return [e.required for e in self._preds[v]]

    def successors(self, v: Vertex) -> list[Vertex]:
        return [e.dependent for e in self._succs[v]]

    def edges_into(self, v: Vertex) -> list[Edge]:
        return list(self._preds[v])

    def descendants(self, v: Vertex) -> set[Vertex]:
        """Everything that (transitively) waits on ``v``: what a failure of ``v`` stops."""
        seen: set[Vertex] = set()
        stack = [v]
        while stack:
            for s in self.successors(stack.pop()):
                if s not in seen:
                    seen.add(s)
                    stack.append(s)
        return seen

    def critical_path(self, durations: Mapping[Vertex, float]) -> tuple[float, list[Vertex]]:
        """The longest chain by ``durations`` (e.g. measured apply + readiness waits).

        Vertices without a duration count as 0. This is the floor any schedule
        of the DAG can reach.
        """
        return critical_path(self.vertices, self.predecessors, durations)


def node_dag(graph: ComponentGraph, inventory: Inventory) -> NodeDag:
    """(node x component) vertices, edges from each requirement, gated by its health."""
    graph = graph.for_inventory(inventory)
    health = _vertex_health(graph, inventory)
    vertices = list(health)
    edges = _edges(graph, inventory, health)
    return NodeDag(_layered_order(graph, inventory, vertices, edges), edges, health)


def _vertex_health(graph: ComponentGraph, inventory: Inventory) -> dict[Vertex, tuple[HealthCheck, ...]]:
    """Every vertex (inventory order, then graph order) with its checks rendered for its node."""
    health: dict[Vertex, tuple[HealthCheck, ...]] = {}
    for node in inventory.nodes:
        ctx = probe_context(inventory, node)
        for c in graph.for_role(node.role):
            try:
                health[Vertex(node.name, c.name)] = tuple(render_check(h, ctx) for h in c.health)
            except RenderError as e:
                raise GraphError(
                    f"health check of {c.name} on {node.name}: {e.message}", location=c.location
                ) from None
    return health


def _edges(
    graph: ComponentGraph, inventory: Inventory, health: Mapping[Vertex, tuple[HealthCheck, ...]]
) -> list[Edge]:
    master = inventory.master
    edges: list[Edge] = []
    for v in health:
        for req in graph.component(v.component).requires:
            on = v.node if req.on == "same" else master.name
            r = Vertex(on, req.component)
            if r not in health:
                raise GraphError(
                    f"{v.component} on {v.node} requires {req}, which does not run on {on}",
                    location=graph.component(v.component).location,
                )
            edges.append(Edge(r, v, health[r]))
    return edges


def _layered_order(
    graph: ComponentGraph, inventory: Inventory, vertices: list[Vertex], edges: list[Edge]
) -> list[Vertex]:
    """Kahn's algorithm with a priority on (component order, node order): the
    fleet advances layer by layer, which is also a stable, readable order."""
    order = {c.name: i for i, c in enumerate(graph.components)}
    node_index = {n.name: i for i, n in enumerate(inventory.nodes)}
    indeg = {v: 0 for v in vertices}
    succ: dict[Vertex, list[Vertex]] = {v: [] for v in vertices}
    for edge in edges:
        indeg[edge.dependent] += 1
        succ[edge.required].append(edge.dependent)

    def key(v: Vertex) -> tuple[int, int]:
        return (order[v.component], node_index[v.node])

    heap = [(key(v), v) for v in vertices if indeg[v] == 0]
    heapq.heapify(heap)
    topo: list[Vertex] = []
    while heap:
        _, v = heapq.heappop(heap)
        topo.append(v)
        for s in succ[v]:
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(heap, (key(s), s))
    if len(topo) != len(vertices):  # pragma: no cover - the component graph is acyclic
        raise GraphError("the node graph has a cycle")
    return topo
