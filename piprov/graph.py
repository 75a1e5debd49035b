"""The component graph: the seed stack as data, and the one source of ordering.

``playbooks/*.yaml`` describe components (docker-bootstrap, etcd, flannel, ...):
the roles they run on, what they require (on the same node, or on the master),
the files and units they own, their health checks and which file changes
restart which unit. From that one graph come both the units' ``After=`` /
``Requires=`` lines and the order in which the orchestrator walks the fleet
(:meth:`ComponentGraph.node_dag`), each edge gated by the health of the vertex
it leaves.

Errors name the playbook file and line, and the cycle or dangling reference.
"""

from __future__ import annotations

import functools
import heapq
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Literal, Mapping, NamedTuple, Sequence, TypeVar, cast, get_args

import jinja2
import yaml

from piprov.errors import GraphError, Location, RenderError
from piprov.inventory.model import Inventory, Node, Role

ProbeKind = Literal["unit", "docker_socket", "file", "http", "node_ready"]
PROBE_KINDS: tuple[str, ...] = get_args(ProbeKind)
ROLES: tuple[str, ...] = get_args(Role)
Placement = Literal["same", "master"]

SYSTEMD_DIR = "/etc/systemd/system/"
_UNIT_RE = re.compile(r"^[A-Za-z0-9@_.:-]+\.(service|socket|path|timer|target|mount)$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._/@+-]+$")
_OWNER_RE = re.compile(r"^[a-z_][a-z0-9_-]*$")


@dataclass(frozen=True)
class HealthCheck:
    """One probe: ``probe`` kind, ``target`` and ``timeout`` in seconds.

    In a :class:`Component` the target is a jinja expression over the
    inventory ("http://{{ master.address }}:{{ network.etcd_port }}/health");
    in a :class:`NodeDag` it is rendered for the vertex's node.

    Kinds: ``unit`` (target: a unit, active on the node), ``docker_socket``
    (target: a docker host URL answering ``docker -H TARGET version`` on the
    node), ``file`` (target: a path, non-empty on the node), ``http`` (target:
    a URL fetched from the controller, 200 expected), ``node_ready`` (target:
    the apiserver URL of the Node, ``.../api/v1/nodes/NAME``, whose Ready
    condition must be True).
    """

    probe: ProbeKind
    target: str
    timeout: float

    def render(self, context: Mapping[str, object]) -> HealthCheck:
        return HealthCheck(self.probe, render_expression(self.target, context), self.timeout)

    def __str__(self) -> str:
        return f"{self.probe} {self.target} (timeout {self.timeout:g}s)"


@dataclass(frozen=True)
class Requirement:
    """``component`` must be healthy first: on the ``same`` node, or on the ``master``."""

    component: str
    on: Placement = "same"

    def __str__(self) -> str:
        return self.component if self.on == "same" else f"{self.component} on {self.on}"


@dataclass(frozen=True)
class ManagedFile:
    """A file the component owns, rendered from ``template`` to ``path``."""

    template: str
    path: str
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    # Units to restart when this file's content changes (besides the unit
    # whose own unit file this is, which always restarts).
    restarts: tuple[str, ...] = ()

    @property
    def unit(self) -> str | None:
        """The systemd unit this file defines, if it is a unit file."""
        if self.path.startswith(SYSTEMD_DIR) and "/" not in self.path[len(SYSTEMD_DIR):]:
            return self.path[len(SYSTEMD_DIR):]
        return None


@dataclass(frozen=True)
class EtcdKeys:
    """Desired etcd v2 keys a component owns, written after it is healthy.

    ``etcdctl`` is the command prefix (jinja) that reaches etcd on its node;
    ``keys`` maps each key to the template rendering its value.
    """

    etcdctl: str
    keys: Mapping[str, str]


@dataclass(frozen=True)
class Component:
    name: str
    description: str
    roles: tuple[Role, ...]
    requires: tuple[Requirement, ...]
    units: tuple[str, ...]
    files: tuple[ManagedFile, ...]
    health: tuple[HealthCheck, ...]
    etcd_keys: EtcdKeys | None = None
    # Non-graph systemd dependencies (e.g. network-online.target).
    systemd_after: tuple[str, ...] = ()
    systemd_wants: tuple[str, ...] = ()
    location: Location | None = None
    # Restarting its units takes pods or the kubelet away: a rollout drains first.
    disruptive: bool = False
    # Image names (inventory ``images.<name>``) its templates run.
    images: tuple[str, ...] = ()
    # Programs its units run on the node; default paths in ComponentGraph.binary_paths.
    binaries: tuple[str, ...] = ()
    # The etcd prefix of the pod network this component holds (flannel's leases).
    pod_network_prefix: str | None = None

    def runs_on(self, role: str) -> bool:
        return role in self.roles

    @property
    def restart_triggers(self) -> dict[str, tuple[str, ...]]:
        """Target path -> units restarted when that file's content changes."""
        triggers: dict[str, tuple[str, ...]] = {}
        for f in self.files:
            units = list(f.restarts)
            own = f.unit
            if own is not None and own in self.units and own not in units:
                units.insert(0, own)
            triggers[f.path] = tuple(units)
        return triggers


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

    def edges_from(self, v: Vertex) -> list[Edge]:
        return list(self._succs[v])

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

    def to_text(self) -> str:
        lines: list[str] = []
        for v in self.vertices:
            preds = self.predecessors(v)
            after = ", ".join(str(p) for p in preds) if preds else "(start)"
            checks = "; ".join(str(h) for h in self.health[v])
            lines.append(f"{v}  <- {after}")
            lines.append(f"    health: {checks}")
        return "\n".join(lines) + "\n"

    def to_dot(self) -> str:
        def q(s: str) -> str:
            return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

        lines = ["digraph piprov {", "  rankdir=LR;", "  node [shape=box];"]
        by_node: dict[str, list[Vertex]] = {}
        for v in self.vertices:
            by_node.setdefault(v.node, []).append(v)
        for i, (node, vs) in enumerate(by_node.items()):
            lines.append(f"  subgraph cluster_{i} {{")
            lines.append(f"    label={q(node)};")
            for v in vs:
                lines.append(f"    {q(str(v))} [label={q(v.component)}];")
            lines.append("  }")
        for e in self.edges:
            label = ", ".join(h.probe for h in e.gate)
            lines.append(f"  {q(str(e.required))} -> {q(str(e.dependent))} [label={q(label)}];")
        lines.append("}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ComponentGraph:
    """Components in topological order (ties kept in playbook order)."""

    components: tuple[Component, ...]
    vars: Mapping[str, object] = field(default_factory=dict)
    sources: tuple[Path, ...] = ()
    # Program name -> where it lives when the node's facts do not say.
    binary_paths: Mapping[str, str] = field(default_factory=dict)

    def component(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise GraphError(f"no component named {name!r} in the playbooks")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.components]

    def for_role(self, role: str) -> list[Component]:
        return [c for c in self.components if c.runs_on(role)]

    def unit_dependencies(
        self, component: str | Component, *, role: str | None = None, unit: str | None = None
    ) -> tuple[list[str], list[str]]:
        """``(after, requires)`` unit lists for the units of ``component``.

        Same-node requirements give ``After=`` and ``Requires=``; a requirement
        on the master gives ``After=`` only, and only when ``role`` is "master". For a
        ``X.service`` whose ``X.socket`` the component also owns, the socket is
        added: the service is socket-activated. System dependencies from the
        playbook (``systemd: after/wants``) go to ``after`` only; see
        :meth:`unit_wants`.
        """
        comp = component if isinstance(component, Component) else self.component(component)
        after: list[str] = list(comp.systemd_after)
        requires: list[str] = []
        if unit is not None and unit.endswith(".socket"):
            # A listening socket needs nothing; its service carries the ordering.
            return [], []
        if unit is not None and unit.endswith(".service"):
            sock = unit[: -len(".service")] + ".socket"
            if sock in comp.units:
                after.append(sock)
                requires.append(sock)
        for req in comp.requires:
            if req.on != "same" and role != req.on:
                continue
            dep = self.component(req.component)
            for u in dep.units:
                if u not in after:
                    after.append(u)
                # A requirement on "the master's X" is a network dependency: on
                # the master itself it orders the start but, as on workers, a
                # restart of X must not restart this unit (Requires= would).
                if req.on == "same" and u not in requires and not u.endswith(".socket"):
                    requires.append(u)
        return after, requires

    def unit_wants(self, component: str | Component) -> list[str]:
        comp = component if isinstance(component, Component) else self.component(component)
        return list(comp.systemd_wants)

    def disruptive_units(self) -> frozenset[str]:
        """Units whose restart takes pods or the kubelet away (of ``disruptive`` components)."""
        return frozenset(u for c in self.components if c.disruptive for u in c.units)

    @property
    def pod_network_prefix(self) -> str | None:
        """The etcd prefix under which the pod network (flannel) keeps its config and leases."""
        return next((c.pod_network_prefix for c in self.components if c.pod_network_prefix), None)

    def image_names(self) -> tuple[str, ...]:
        """Every image the components run, in graph order: the inventory's ``images.<name>`` keys."""
        return tuple(dict.fromkeys(i for c in self.components for i in c.images))

    def binaries(self, role: str | None = None) -> dict[str, str]:
        """Program name -> default path, for the components of ``role`` (all when None)."""
        comps = self.components if role is None else self.for_role(role)
        return {b: self.binary_paths[b] for c in comps for b in c.binaries}

    def managed_paths(self, role: str) -> list[str]:
        return [f.path for c in self.for_role(role) for f in c.files]

    def managed_units(self, role: str) -> list[str]:
        return [u for c in self.for_role(role) for u in c.units]

    def to_text(self) -> str:
        """The component graph alone (no inventory): what runs where, after what."""
        lines: list[str] = []
        for c in self.components:
            reqs = ", ".join(str(r) for r in c.requires) or "(nothing)"
            lines.append(f"{c.name} [{', '.join(c.roles)}] requires {reqs}")
            lines.append(f"    units: {' '.join(c.units) or '-'}")
            lines.append(f"    health: {'; '.join(str(h) for h in c.health)}")
        return "\n".join(lines) + "\n"

    def to_dot(self) -> str:
        lines = ["digraph components {", "  rankdir=LR;", "  node [shape=box];"]
        for c in self.components:
            lines.append(f'  "{c.name}" [label="{c.name}\\n({", ".join(c.roles)})"];')
        for c in self.components:
            for r in c.requires:
                style = "" if r.on == "same" else f' [style=dashed, label="on {r.on}"]'
                lines.append(f'  "{r.component}" -> "{c.name}"{style};')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def node_dag(self, inventory: Inventory) -> NodeDag:
        """(node x component) vertices, edges from each requirement, gated by its health."""
        master = inventory.master
        order = {c.name: i for i, c in enumerate(self.components)}
        node_index = {n.name: i for i, n in enumerate(inventory.nodes)}
        vertices: list[Vertex] = []
        health: dict[Vertex, tuple[HealthCheck, ...]] = {}
        for node in inventory.nodes:
            ctx = probe_context(inventory, node)
            for c in self.for_role(node.role):
                v = Vertex(node.name, c.name)
                vertices.append(v)
                try:
                    health[v] = tuple(h.render(ctx) for h in c.health)
                except RenderError as e:
                    raise GraphError(
                        f"health check of {c.name} on {node.name}: {e.message}", location=c.location
                    ) from None
        present = set(vertices)
        edges: list[Edge] = []
        for v in vertices:
            for req in self.component(v.component).requires:
                on = v.node if req.on == "same" else master.name
                r = Vertex(on, req.component)
                if r not in present:
                    raise GraphError(
                        f"{v.component} on {v.node} requires {req}, which does not run on {on}",
                        location=self.component(v.component).location,
                    )
                edges.append(Edge(r, v, health[r]))
        # Kahn's algorithm with a priority on (component order, node order): the
        # fleet advances layer by layer, which is also a stable, readable order.
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
        return NodeDag(topo, edges, health)


# --------------------------------------------------------------------------
# Small jinja expressions (probe targets, etcdctl prefixes)

_EXPR_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


def probe_context(inventory: Inventory, node: Node) -> dict[str, object]:
    """What probe targets and other one-line expressions may refer to."""
    return {
        "node": node,
        "master": inventory.master,
        "network": inventory.network,
        "cluster_name": inventory.cluster_name,
        "inventory": inventory,
    }


def render_expression(text: str, context: Mapping[str, object]) -> str:
    try:
        return _EXPR_ENV.from_string(text).render(context)
    except jinja2.TemplateError as e:
        raise RenderError(f"cannot render {text!r}: {e}") from None


# --------------------------------------------------------------------------
# Loading

class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers where each mapping and its keys were.

    Booleans follow YAML 1.2 (only true/false): in YAML 1.1 the key ``on`` of
    ``{component: etcd, on: master}`` would read as True.
    """


_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _YDict(dict[str, Any]):
    line: int = 0
    key_lines: dict[str, int]


class _YList(list[Any]):
    line: int = 0


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _YDict:
    loader.flatten_mapping(node)
    d = _YDict()
    d.line = node.start_mark.line + 1
    d.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key)
        if key in d:
            raise GraphError(
                f"duplicate key {key!r}",
                location=Location(str(getattr(loader, "name", "?")), key_node.start_mark.line + 1),
            )
        d[key] = loader.construct_object(value_node, deep=True)
        d.key_lines[key] = key_node.start_mark.line + 1
    return d


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> _YList:
    lst = _YList(loader.construct_object(n, deep=True) for n in node.value)
    lst.line = node.start_mark.line + 1
    return lst


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


class _Reader:
    """Typed access to one YAML mapping with file:line errors."""

    def __init__(self, path: Path, data: object, where: str, line: int) -> None:
        self.path = path
        self.where = where
        if not isinstance(data, _YDict):
            raise GraphError(f"{where} must be a mapping", location=Location(str(path), line))
        self.data = data

    def loc(self, key: str | None = None) -> Location:
        line = self.data.key_lines.get(key, self.data.line) if key else self.data.line
        return Location(str(self.path), line)

    def err(self, key: str | None, message: str) -> GraphError:
        return GraphError(f"{self.where}: {message}", location=self.loc(key))

    def check_keys(self, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for k in self.data:
            if k not in allowed:
                raise self.err(k, f"unknown key {k!r} (expected one of: {', '.join(sorted(allowed))})")

    def text(self, key: str, default: str | None = None, pattern: re.Pattern[str] | None = None) -> str:
        if key not in self.data:
            if default is None:
                raise self.err(None, f"missing {key!r}")
            return default
        v = self.data[key]
        if not isinstance(v, str) or not v:
            raise self.err(key, f"{key!r} must be a non-empty string")
        if pattern is not None and not pattern.match(v):
            raise self.err(key, f"{key!r}: {v!r} is not valid")
        return v

    def items(self, key: str) -> list[Any]:
        v = self.data.get(key, [])
        if v is None:
            return []
        if not isinstance(v, list):
            raise self.err(key, f"{key!r} must be a list")
        return v

    def str_list(self, key: str, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
        out: list[str] = []
        for item in self.items(key):
            if not isinstance(item, str) or (pattern is not None and not pattern.match(item)):
                raise self.err(key, f"{key!r}: {item!r} is not valid")
            if item in out:
                raise self.err(key, f"{key!r}: {item!r} listed twice")
            out.append(item)
        return tuple(out)

    def sub(self, key: str, value: object, where: str) -> _Reader:
        line = value.line if isinstance(value, (_YDict, _YList)) else self.loc(key).line or 0
        return _Reader(self.path, value, where, line)


def _parse_mode(r: _Reader, key: str) -> int:
    v = r.data.get(key, "0644")
    # YAML 1.1 reads an unquoted 0644 as the integer 420 and 644 as 644: both
    # are easy to get wrong, so only a quoted octal string is accepted.
    if not isinstance(v, str) or not re.fullmatch(r"0?[0-7]{3,4}", v):
        raise r.err(key, f"mode {v!r} must be a quoted octal string like \"0644\"")
    return int(v, 8)


def _parse_component(path: Path, raw: object, index: int, templates: Path | None) -> Component:
    line = raw.line if isinstance(raw, _YDict) else 0
    r = _Reader(path, raw, f"component #{index + 1}", line)
    name = r.text("name", pattern=_NAME_RE)
    r.where = f"component {name}"
    r.check_keys(
        ["name", "description", "roles", "requires", "units", "templates", "health", "etcd_keys", "systemd",
         "disruptive", "images", "binaries", "pod_network"]
    )
    roles = r.str_list("roles")
    if not roles:
        raise r.err("roles", "needs at least one role")
    for role in roles:
        if role not in ROLES:
            raise r.err("roles", f"unknown role {role!r} (roles are: {', '.join(ROLES)})")
    units = r.str_list("units", pattern=_UNIT_RE)

    requires: list[Requirement] = []
    for item in r.items("requires"):
        if isinstance(item, str):
            requires.append(Requirement(item))
            continue
        rr = r.sub("requires", item, f"component {name}: requirement")
        rr.check_keys(["component", "on"])
        on = rr.text("on", default="same")
        if on not in ("same", "master"):
            raise rr.err("on", f"'on' must be 'same' or 'master', not {on!r}")
        requires.append(Requirement(rr.text("component"), cast(Placement, on)))

    files: list[ManagedFile] = []
    for item in r.items("templates"):
        fr = r.sub("templates", item, f"component {name}: template")
        fr.check_keys(["template", "path", "mode", "owner", "restarts"])
        template = fr.text("template")
        if templates is not None and not (templates / template).is_file():
            raise fr.err("template", f"template {template!r} not found in {templates}")
        target = fr.text("path", pattern=_PATH_RE)
        owner_s = fr.text("owner", default="root:root")
        owner, _, group = owner_s.partition(":")
        if not _OWNER_RE.match(owner) or not _OWNER_RE.match(group or owner):
            raise fr.err("owner", f"owner {owner_s!r} must be USER:GROUP")
        restarts = fr.str_list("restarts", pattern=_UNIT_RE)
        for u in restarts:
            if u not in units:
                raise fr.err("restarts", f"restarts {u!r}, which is not one of {name}'s units")
        files.append(ManagedFile(template, target, _parse_mode(fr, "mode"), owner, group or owner, restarts))

    health: list[HealthCheck] = []
    for item in r.items("health"):
        hr = r.sub("health", item, f"component {name}: health check")
        hr.check_keys(["probe", "target", "timeout"])
        probe = hr.text("probe")
        if probe not in PROBE_KINDS:
            raise hr.err("probe", f"unknown probe {probe!r} (probes are: {', '.join(PROBE_KINDS)})")
        timeout = hr.data.get("timeout", 60)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise hr.err("timeout", "timeout must be a positive number of seconds")
        target = hr.text("target")
        _check_expression(hr, "target", target)
        health.append(HealthCheck(cast(ProbeKind, probe), target, float(timeout)))
    if not health:
        raise r.err("health", "needs at least one health check: the graph gates on it")

    etcd_keys: EtcdKeys | None = None
    if "etcd_keys" in r.data:
        er = r.sub("etcd_keys", r.data["etcd_keys"], f"component {name}: etcd_keys")
        er.check_keys(["etcdctl", "keys"])
        etcdctl = er.text("etcdctl")
        _check_expression(er, "etcdctl", etcdctl)
        kr = er.sub("keys", er.data.get("keys"), f"component {name}: etcd_keys.keys")
        keys: dict[str, str] = {}
        for k in kr.data:
            if not re.fullmatch(r"(/[A-Za-z0-9._-]+)+", k):
                raise kr.err(k, f"etcd key {k!r} must look like /a/b/c")
            tpl = kr.text(k)
            if templates is not None and not (templates / tpl).is_file():
                raise kr.err(k, f"template {tpl!r} not found in {templates}")
            keys[k] = tpl
        etcd_keys = EtcdKeys(etcdctl, keys)

    after: tuple[str, ...] = ()
    wants: tuple[str, ...] = ()
    if "systemd" in r.data:
        sr = r.sub("systemd", r.data["systemd"], f"component {name}: systemd")
        sr.check_keys(["after", "wants"])
        after = sr.str_list("after", pattern=_UNIT_RE)
        wants = sr.str_list("wants", pattern=_UNIT_RE)

    disruptive = r.data.get("disruptive", False)
    if not isinstance(disruptive, bool):
        raise r.err("disruptive", "'disruptive' must be true or false")
    prefix: str | None = None
    if "pod_network" in r.data:
        pr = r.sub("pod_network", r.data["pod_network"], f"component {name}: pod_network")
        pr.check_keys(["etcd_prefix"])
        prefix = pr.text("etcd_prefix", pattern=re.compile(r"^(/[A-Za-z0-9._-]+)+$"))

    return Component(
        name=name,
        description=r.text("description", default=name),
        roles=cast(tuple[Role, ...], roles),
        requires=tuple(requires),
        units=units,
        files=tuple(files),
        health=tuple(health),
        etcd_keys=etcd_keys,
        systemd_after=after,
        systemd_wants=wants,
        location=r.loc(),
        disruptive=disruptive,
        images=r.str_list("images", pattern=_NAME_RE),
        binaries=r.str_list("binaries", pattern=_NAME_RE),
        pod_network_prefix=prefix,
    )


def _check_expression(r: _Reader, key: str, text: str) -> None:
    try:
        _EXPR_ENV.parse(text)
    except jinja2.TemplateSyntaxError as e:
        raise r.err(key, f"{key!r} is not a valid jinja expression: {e.message}") from None


def _validate(components: list[Component]) -> list[Component]:
    """Dangling references, role mismatches, duplicate ownership; then a topological sort."""
    by_name: dict[str, Component] = {}
    for c in components:
        if c.name in by_name:
            raise GraphError(
                f"component {c.name!r} is defined twice (first at {by_name[c.name].location})",
                location=c.location,
            )
        by_name[c.name] = c

    for c in components:
        for req in c.requires:
            dep = by_name.get(req.component)
            if dep is None:
                raise GraphError(
                    f"component {c.name} requires {req.component!r}, which no playbook defines "
                    f"(components: {', '.join(by_name)})",
                    location=c.location,
                )
            if dep is c:
                raise GraphError(f"component {c.name} requires itself", location=c.location)
            if req.on == "same":
                missing = [r for r in c.roles if r not in dep.roles]
                if missing:
                    raise GraphError(
                        f"component {c.name} requires {dep.name} on the same node, but {dep.name} "
                        f"does not run on role {missing[0]!r}",
                        location=c.location,
                        hint=f"add the role to {dep.name}, or require it `on: master`",
                    )
            elif req.on not in dep.roles:
                raise GraphError(
                    f"component {c.name} requires {dep.name} on the {req.on}, but {dep.name} "
                    f"does not run on role {req.on!r}",
                    location=c.location,
                )

    # Two components on the same node must not own the same unit or file.
    for i, a in enumerate(components):
        for b in components[i + 1 :]:
            if not set(a.roles) & set(b.roles):
                continue
            for u in set(a.units) & set(b.units):
                raise GraphError(
                    f"unit {u} is owned by both {a.name} and {b.name}", location=b.location
                )
            for p in {f.path for f in a.files} & {f.path for f in b.files}:
                raise GraphError(
                    f"file {p} is owned by both {a.name} and {b.name}", location=b.location
                )

    # Depth-first search for a cycle, naming it; then a stable topological order.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for req in by_name[name].requires:
            s = state.get(req.component, 0)
            if s == 1:
                cycle = stack[stack.index(req.component) :] + [req.component]
                raise GraphError(
                    "the component graph has a cycle: " + " -> ".join(cycle),
                    location=by_name[name].location,
                )
            if s == 0:
                visit(req.component)
        stack.pop()
        state[name] = 2

    for c in components:
        if state.get(c.name, 0) == 0:
            visit(c.name)

    ordered: list[Component] = []
    placed: set[str] = set()
    pending = list(components)
    while pending:
        for c in pending:
            if all(r.component in placed for r in c.requires):
                ordered.append(c)
                placed.add(c.name)
                pending.remove(c)
                break
    return ordered


@functools.lru_cache(maxsize=1)
def default_image_names() -> tuple[str, ...]:
    """The image names of the default playbooks (what an inventory's ``images:`` may set)."""
    return load_graph().image_names()


def load_graph(playbooks_dir: Path | None = None, *, templates_dir: Path | None = None) -> ComponentGraph:
    """Read every ``*.yaml`` in ``playbooks_dir`` into one validated graph.

    ``templates_dir`` (default: the data directory's templates/) is used to
    check that every referenced template exists.
    """
    from piprov import resources

    if playbooks_dir is None:
        playbooks_dir = resources.playbooks_dir()
    if templates_dir is None:
        sibling = playbooks_dir.parent / "templates"
        templates_dir = sibling if sibling.is_dir() else resources.templates_dir()
    files = sorted(playbooks_dir.glob("*.yaml")) + sorted(playbooks_dir.glob("*.yml"))
    if not files:
        raise GraphError(f"no playbooks (*.yaml) in {playbooks_dir}")
    components: list[Component] = []
    gvars: dict[str, object] = {}
    binary_paths: dict[str, str] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise GraphError(f"cannot read playbook: {e.strerror}", location=Location(str(path))) from None
        loader = _LineLoader(text)
        loader.name = str(path)
        try:
            doc = loader.get_single_data()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark
            context = ""
            if e.context and e.context_mark is not None and (mark is None or e.context_mark.line != mark.line):
                context = f" ({e.context} started at line {e.context_mark.line + 1})"
            raise GraphError(
                f"invalid YAML: {e.problem}{context}",
                location=Location(str(path), mark.line + 1 if mark else None, mark.column + 1 if mark else None),
            ) from None
        finally:
            loader.dispose()
        top = _Reader(path, doc, "playbook", 1)
        top.check_keys(["version", "vars", "binaries", "components"])
        if top.data.get("version", 1) != 1:
            raise top.err("version", "unsupported playbook version (this piprov reads version 1)")
        if "vars" in top.data:
            vr = top.sub("vars", top.data["vars"], "vars")
            for k, v in vr.data.items():
                if k in gvars:
                    raise vr.err(k, f"variable {k!r} is defined in two playbooks")
                gvars[k] = v
        if "binaries" in top.data:
            br = top.sub("binaries", top.data["binaries"], "binaries")
            for k in br.data:
                if k in binary_paths:
                    raise br.err(k, f"binary {k!r} is defined in two playbooks")
                binary_paths[k] = br.text(k, pattern=_PATH_RE)
        for i, raw in enumerate(top.items("components")):
            components.append(_parse_component(path, raw, i, templates_dir))
    _check_stack_fields(components, binary_paths)
    return ComponentGraph(tuple(_validate(components)), gvars, tuple(files), binary_paths)


def _check_stack_fields(components: list[Component], binary_paths: Mapping[str, str]) -> None:
    """Every binary has a default path; at most one component holds the pod network."""
    for c in components:
        for b in c.binaries:
            if b not in binary_paths:
                raise GraphError(
                    f"component {c.name} runs binary {b!r}, which no playbook's 'binaries' gives a path",
                    location=c.location,
                )
    holders = [c for c in components if c.pod_network_prefix is not None]
    for extra in holders[1:]:
        raise GraphError(
            f"component {extra.name} holds the pod network, but {holders[0].name} already does",
            location=extra.location,
        )
