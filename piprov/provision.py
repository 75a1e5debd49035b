"""The main job, end to end: facts -> desired state -> plan -> apply along the one graph.

``facts_and_plan`` reads every node in parallel, one SSH command each, and as
soon as a node's facts are in, renders its desired state (``render``) and plans
it with the pure planner (``plan``). ``preflight`` runs the cheap part of
`piprov check` on the nodes with something to change and refuses those that
would certainly fail (their errors in ``Plan.errors``). ``apply_plan`` walks the node x component
DAG (``orchestrate.run_dag``): each vertex does its actions (files, then
reload/enable/(re)start of its units) in ONE round trip, then waits on its
health checks; dependents start only after that. An unchanged vertex costs
nothing: a no-op run is one SSH command per node.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from piprov.check import NodeCheck, check_fleet, load_book
from piprov.errors import CheckRefused, FactsError, PiprovError, PlanError
from piprov.facts import EtcdKeyFacts, NodeFacts, parse_facts
from piprov.fleet import Fleet, FleetResult, naming, parallel
from piprov.graph import ComponentGraph, HealthCheck, NodeDag, Vertex, node_dag
from piprov.health import HttpGet, ProbeResult, http_get, https_getter, wait_healthy
from piprov.inventory.model import Inventory, Node, refuse_documentation_address
from piprov.kube.client import client_tls
from piprov.kube.etcd import etcd_url, read_keys
from piprov.lock import FileLock
from piprov.orchestrate import Event, RunResult, StepResult, run_dag
from piprov.plan import ComponentPlan, DisableUnits, NodePlan, Plan, plan_node
from piprov.plan.move import settle_move
from piprov.render import desired_state, facts_command_for, node_machine
from piprov.shell import script as sh
from piprov.transport import Transport

if TYPE_CHECKING:
    from piprov.pki import ClusterPki

FACTS_TIMEOUT = 60.0
APPLY_TIMEOUT = 600.0  # first start pulls images over the LAN


def run_lock(inventory: Inventory) -> FileLock:
    """The lock that keeps two `piprov up` off one cluster at the same time."""
    path = inventory.path.resolve()
    return FileLock(path.with_name(path.name + ".up.lock"), what=f"piprov up on {inventory.cluster_name}")


# -- facts and plan ---------------------------------------------------------------------------------


def read_facts(inventory: Inventory, graph: ComponentGraph, fleet: Fleet, name: str) -> NodeFacts:
    """One node's facts: one SSH command; the etcd keys its components own, read meanwhile from the controller."""
    keys = graph.etcd_key_names(inventory.node(name).role)
    if keys:
        # The read-ahead goes to the master from the controller, not through this node's
        # transport: etcd_url refuses a documentation address here, not on the thread.
        etcd_url(inventory)
    etcd = _read_keys_ahead(inventory, keys) if keys else None
    res = fleet.transports[name].run(facts_command_for(inventory, graph, name), sudo=True, timeout=FACTS_TIMEOUT)
    if not res.ok:
        raise FactsError(
            f"the facts command failed (exit {res.exit_code}): {res.tail(3) or 'no output'}",
            host=name,
            hint="piprov needs sudo for the SSH user on every node (passwordless, or --ask-sudo-password)",
        )
    facts = parse_facts(name, res.stdout)
    return replace(facts, etcd_keys=etcd()) if etcd is not None else facts


def _read_keys_ahead(inventory: Inventory, keys: list[str]) -> Callable[[], dict[str, EtcdKeyFacts]]:
    """kube.etcd.read_keys begun now on a thread of its own (it overlaps the node's SSH round trip)."""
    box: list[dict[str, EtcdKeyFacts]] = []
    t = threading.Thread(target=lambda: box.append(read_keys(inventory, keys)), name="piprov-etcd", daemon=True)
    t.start()

    def result() -> dict[str, EtcdKeyFacts]:
        t.join()
        return box[0] if box else {k: EtcdKeyFacts(k, "unavailable") for k in keys}

    return result


def gather_facts(inventory: Inventory, graph: ComponentGraph, fleet: Fleet) -> FleetResult[NodeFacts]:
    """Every node's facts, one SSH command each, in parallel."""
    return parallel(fleet.transports, lambda name: read_facts(inventory, graph, fleet, name))


def plan_one(
    inventory: Inventory,
    graph: ComponentGraph,
    node: Node,
    facts: NodeFacts | PiprovError | None,
    *,
    templates_dir: Path | None = None,
    pki: ClusterPki | None = None,
) -> NodePlan | PiprovError:
    """One node's plan from its facts, or the error that leaves it without one (naming the node).

    Rendering errors (a broken template or inventory) are raised: they concern
    every node, not this one.
    """
    if facts is None:
        return naming(PiprovError("no facts were gathered"), node.name)
    if isinstance(facts, PiprovError):
        return naming(facts, node.name)
    try:
        arch, binaries = node_machine(graph, node, facts, inventory)
    except PiprovError as e:
        return naming(e, node.name)
    desired = desired_state(inventory, graph, node, arch, binaries=binaries, templates_dir=templates_dir,
                            docker=facts.versions.get("docker"), systemd=facts.versions.get("systemd"), pki=pki)
    try:
        return plan_node(desired, facts)
    except (FactsError, PlanError) as e:
        return naming(e, node.name)


def _plan_of(inventory: Inventory, planned: Mapping[str, NodePlan | PiprovError]) -> Plan:
    """The nodes' plans and errors, in the inventory's order."""
    nodes: list[NodePlan] = []
    errors: dict[str, PiprovError] = {}
    for node in inventory.nodes:
        p = planned.get(node.name)
        if isinstance(p, NodePlan):
            nodes.append(p)
        elif p is not None:
            errors[node.name] = p
    return Plan(nodes, errors)


def plan_cluster(
    inventory: Inventory,
    graph: ComponentGraph,
    facts: Mapping[str, NodeFacts | PiprovError],
    *,
    templates_dir: Path | None = None,
    pki: ClusterPki | None = None,
) -> Plan:
    """Plan every node of the inventory from its facts (keyed by node name).

    A node whose facts are missing or an error gets an entry in ``Plan.errors``
    and no plan: partial failure is data.
    """
    return _plan_of(inventory, {n.name: plan_one(inventory, graph, n, facts.get(n.name), templates_dir=templates_dir,
                                                 pki=pki)
                                for n in inventory.nodes})


def facts_and_plan(inventory: Inventory, graph: ComponentGraph, fleet: Fleet, *,
                   pki: ClusterPki | None = None, find_move: bool = True) -> tuple[FleetResult[NodeFacts], Plan]:
    """Every node's facts and plan, in parallel: the same as gather_facts + plan_cluster.

    Each node is planned in its own worker as soon as its facts are in, so
    rendering its templates overlaps the other nodes' SSH round trips instead
    of following the slowest one. ``pki``: the cluster's (default: the one
    next to the inventory, its CA made on first use, before any SSH).
    ``find_move``: look for a master move (``plan.move``); False once the
    master's store was put back (`piprov restore`, the move itself), which its
    record cannot say until `up` rewrites it.
    """
    if pki is None:
        from piprov.pki import cluster_pki

        pki = cluster_pki(inventory, graph=graph)
    raised: dict[str, PiprovError] = {}

    def one(name: str) -> tuple[NodeFacts | PiprovError, NodePlan | PiprovError]:
        facts: NodeFacts | PiprovError
        try:
            facts = read_facts(inventory, graph, fleet, name)
        except PiprovError as e:
            facts = naming(e, name)
        try:
            return facts, plan_one(inventory, graph, inventory.node(name), facts, pki=pki)
        except PiprovError as e:
            raised[name] = e
            return facts, e

    done = parallel(fleet.transports, one).succeeded
    for node in inventory.nodes:
        if node.name in raised:
            raise raised[node.name]  # a template or inventory error: every node has it
    order = [n.name for n in inventory.nodes if n.name in done]
    facts = FleetResult({n: done[n][0] for n in order})
    plan = _plan_of(inventory, {n: done[n][1] for n in order})
    found = graph.etcd_backup()
    if found is not None and find_move:
        read = {n.name: facts.succeeded.get(n.name) if n.name not in plan.errors else None for n in inventory.nodes}
        settle_move(plan, inventory.master.name, read, found[0].name)
    return facts, plan


# -- the cheap checks: a node that would certainly fail is refused ----------------------------------------


def refusal(check: NodeCheck) -> PiprovError | None:
    """Why `up` leaves the node alone: its check could not run, or a finding fails; None: it may go ahead."""
    if check.error is not None:
        return naming(check.error, check.node)
    failed = check.failed
    if not failed:
        return None
    said = "; ".join(f"{f.title} ({f.code}): {f.breaks}; fix: {f.fix}" for f in failed)
    words = tuple({"code": f.code, "title": f.title, "severity": f.severity, "breaks": f.breaks, "fix": f.fix}
                  for f in failed)
    return CheckRefused(f"refused by the preflight check: {said}", findings=words, host=check.node,
                        hint=f"fix it and run again (`piprov check {check.node}` shows every finding), "
                        "or pass --skip-checks to go ahead regardless")


def preflight(inventory: Inventory, graph: ComponentGraph, plan: Plan, fleet: Fleet, *,
              names: Iterable[str] | None = None) -> tuple[Plan, list[NodeCheck]]:
    """The cheap checks (all but the SD card's fsync measure) on the nodes of ``names`` (default: all) that
    have something to change, at once; a refused node (or one the check could not run on) moves from the
    plan's nodes to its errors, so nothing is applied there and what needs it is skipped.

    A node with nothing to change is not checked: a no-op run stays one SSH command per node.
    """
    only = None if names is None else set(names)
    todo = [np.node for np in plan.nodes if np.changed and (only is None or np.node in only)]
    if not todo:
        return plan, []
    checks = check_fleet(inventory, graph, load_book(), fleet, names=todo, fsync=False)
    refused = {c.node: e for c in checks if (e := refusal(c)) is not None}
    errors = {**plan.errors, **refused}
    return (Plan([np for np in plan.nodes if np.node not in refused],
                 {n.name: errors[n.name] for n in inventory.nodes if n.name in errors}, plan.move), checks)


def running_versions(inventory: Inventory, timeout: float = 3.0) -> dict[str, str | None]:
    """The master's etcd and apiserver versions from their /version, read from the controller.

    Component (as the support matrix names it) -> version, None when nothing
    (or no version) answered. The same addresses the health checks reach.
    """
    from piprov import http
    from piprov.graph.support import running_version

    try:
        refuse_documentation_address(inventory.master)
    except PiprovError:
        return {"etcd": None, "hyperkube": None}  # no packet to an address that only exists in docs
    from piprov.kube.client import apiserver_url

    urls = {"etcd": etcd_url(inventory) + "/version", "hyperkube": apiserver_url(inventory) + "/version"}
    tls = client_tls(inventory)
    out: dict[str, str | None] = {}
    for comp, url in urls.items():
        try:
            res = http.request("GET", url, timeout=timeout, limit=64 * 1024, tls=tls)
        except http.Unreachable:
            out[comp] = None
            continue
        out[comp] = running_version(comp, res.body) if res.status == 200 else None
    return out


# -- apply --------------------------------------------------------------------------------------------


def needs_text(dag: NodeDag, v: Vertex) -> str:
    """What a failed vertex waits on across the network: the first suspect
    when its own probe fails (a worker's flannel and the master's etcd)."""
    remote = [e for e in dag.edges_into(v) if e.required.node != v.node]
    parts = [f"{e.required} ({'; '.join(f'{h.probe} {h.target}' for h in e.gate)})" for e in remote]
    return f"; it needs {', '.join(parts)}" if parts else ""


@dataclass
class _NodeState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    prelude_done: bool = False


@dataclass
class ApplyReport:
    run: RunResult[Vertex]
    dag: NodeDag
    probes: dict[Vertex, list[ProbeResult]]
    round_trips: dict[str, int]

    def critical_path(self) -> tuple[float, list[Vertex]]:
        cost = {v: s.seconds for v, s in self.run.steps.items()}
        return self.dag.critical_path(cost)


class _Steps:
    """The work of one vertex: its actions in one round trip, its health gates, then its etcd keys."""

    def __init__(self, plan: Plan, fleet: Fleet, dag: NodeDag, nodes: Iterable[str], *,
                 scope: set[str] | None, cancel: threading.Event | None, health_timeout: float | None,
                 http_get: HttpGet = http_get, also: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.plan, self.fleet, self.dag, self.scope, self.also = plan, fleet, dag, scope, also
        self.cancel, self.health_timeout, self.http_get = cancel, health_timeout, http_get
        self.plans = {np.node: np for np in plan.nodes}
        self.states = {n: _NodeState() for n in nodes}
        self.probes: dict[Vertex, list[ProbeResult]] = {}

    def work(self, v: Vertex) -> StepResult:
        if not self._in_run(v):
            return StepResult(v.node, v.component, "unchanged", detail="not in this run")
        error = self.plan.errors.get(v.node)
        if error is not None:
            raise error
        np = self.plans.get(v.node)
        if np is None:
            return StepResult(v.node, v.component, "unchanged", detail="not in this run")
        cp = np.component(v.component)
        transport = self.fleet.transports[v.node]
        t0 = time.monotonic()
        failed = self._apply(v, np, transport)
        if failed:
            return StepResult(v.node, v.component, "failed", time.monotonic() - t0,
                              detail=f"apply failed: {failed}", started=t0, finished=time.monotonic())
        applied = time.monotonic()
        if not cp.changed:
            return StepResult(v.node, v.component, "unchanged", applied - t0,
                              detail="no change: files, units and keys as desired", started=t0, finished=applied)
        unhealthy = self._gate(v, transport)
        if unhealthy:
            return StepResult(v.node, v.component, "failed", applied - t0, time.monotonic() - applied,
                              detail=unhealthy, started=t0, finished=time.monotonic())
        waited = time.monotonic() - applied
        if cp.etcd_keys:
            out = sh.run_actions(transport, cp.etcd_actions(), timeout=60)
            if not out.ok:
                return StepResult(v.node, v.component, "failed", time.monotonic() - t0 - waited, waited,
                                  detail=f"writing etcd keys failed: {out.detail}", started=t0,
                                  finished=time.monotonic())
        done = time.monotonic()
        what = ", ".join(cp.reasons[:2]) + (" ..." if len(cp.reasons) > 2 else "")
        return StepResult(v.node, v.component, "changed", done - t0 - waited, waited, detail=what,
                          started=t0, finished=done)

    def _in_run(self, v: Vertex) -> bool:
        return self.scope is None or v.node in self.scope or (v.node, v.component) in self.also

    def _apply(self, v: Vertex, np: NodePlan, transport: Transport) -> str:
        """The component's change in ONE script, the node's prelude ahead of its first; why it failed.

        The prelude (stale temps removed, the hostname) must be done before any other
        step of the node writes: the node's first script holds the node's lock while it
        runs; later steps run at once, side by side on their own channels (the DAG
        orders those that depend on each other).
        """
        cp = np.component(v.component)
        state = self.states[v.node]
        with state.lock:
            if not state.prelude_done:
                state.prelude_done = True
                body = ""
                if np.changed:
                    # A node outside the run's nodes gets only its ``also`` components: not its hostname.
                    whole = self.scope is None or v.node in self.scope
                    body += sh.script(np.prelude_actions if whole else np.prelude_actions[:1])
                return self._run(transport, body + self._body(cp))
        return self._run(transport, self._body(cp))

    @staticmethod
    def _body(cp: ComponentPlan) -> str:
        # When a unit does not start, its journal says why: put it in the error.
        return sh.script(cp.actions, journal=[*cp.restart, *cp.start]) if cp.changed else ""

    @staticmethod
    def _run(transport: Transport, body: str) -> str:
        if not body:
            return ""
        out = sh.run_script(transport, sh.wrap(body), timeout=APPLY_TIMEOUT)
        return "" if out.ok else out.detail

    def _gate(self, v: Vertex, transport: Transport) -> str:
        """Wait on the vertex's health checks in order; why the first failing one failed."""
        results: list[ProbeResult] = []
        self.probes[v] = results
        for check in self.dag.health.get(v, ()):
            r = wait_healthy(check.capped(self.health_timeout), transport, cancel=self.cancel, get=self.http_get)
            results.append(r)
            if not r.ok:
                return (f"not healthy after {r.check.timeout:g} s: {r.check.describe()}: {r.detail}"
                        + needs_text(self.dag, v))
        return ""


def apply_plan(
    inventory: Inventory,
    graph: ComponentGraph,
    plan: Plan,
    fleet: Fleet,
    *,
    on_event: Callable[[Event], None] | None = None,
    cancel: threading.Event | None = None,
    only_nodes: Iterable[str] | None = None,
    health_timeout: float | None = None,
    also: Iterable[tuple[str, str]] = (),
) -> ApplyReport:
    """Apply ``plan`` along the node x component DAG; failures come back as data.

    ``only_nodes`` limits the run to those nodes, plus the (node, component)
    vertices of ``also`` (a node add re-applies the fleet-wide components of
    every member: their files list the new node). A plan with a master move is
    refused: etcd's store must be moved first (``restore.MasterMover``), or
    the new master would start an empty cluster.
    """
    if plan.move is not None:
        raise PlanError(f"the master moved from {plan.move.old} to {plan.move.new}: its store must follow first",
                        host=plan.move.new, hint="`piprov up` (without --rolling) moves it, then applies the plan")
    dag = node_dag(graph, inventory)
    steps = _Steps(plan, fleet, dag, [n.name for n in inventory.nodes],
                   scope=set(only_nodes) if only_nodes is not None else None, cancel=cancel,
                   health_timeout=health_timeout, http_get=https_getter(lambda: client_tls(inventory)),
                   also=frozenset(also))
    run = run_dag(
        dag.topological(),
        dag.predecessors,
        steps.work,
        lambda v: (v.node, v.component),
        max_workers=max(4, 2 * len(inventory.nodes)),
        on_event=on_event,
        cancel=cancel,
    )
    return ApplyReport(run, dag, steps.probes, fleet.round_trips())


def stop_units(fleet: Fleet, node: str, units: Iterable[str], *, timeout: float = 120) -> sh.ApplyOutcome:
    """Stop and disable ``units`` on ``node`` in one round trip (for `node remove`).

    Units that do not exist are not an error: a half-provisioned node is
    removed as well as a complete one.
    """
    return sh.run_actions(fleet.transports[node], [DisableUnits(tuple(units))], timeout=timeout)
