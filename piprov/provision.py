"""The main job, end to end: facts -> plan -> apply along the one graph.

``facts_and_plan`` reads every node in parallel, one SSH command each, and
plans each node with the pure planner as soon as its facts are in. ``apply_plan`` walks the
node x component DAG (``orchestrate.run_dag``): each vertex writes its files,
reloads/enables/(re)starts its units in ONE round trip, then waits on its
health checks; dependents start only after that. An unchanged vertex costs
nothing: a no-op run is one SSH command per node.
"""

from __future__ import annotations

import shlex
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from piprov import apply as sh
from piprov.errors import FactsError, PiprovError
from piprov.facts import NodeFacts, parse_facts
from piprov.graph import ComponentGraph, HealthCheck, NodeDag, Vertex, node_dag
from piprov.health import Probe, ProbeResult, wait_healthy
from piprov.inventory.model import HostKeyPolicy, Inventory
from piprov.lock import FileLock
from piprov.orchestrate import Event, RunResult, StepResult, run_dag
from piprov.plan import ComponentPlan, NodePlan, Plan, plan_one
from piprov.render import facts_command_for
from piprov.transport import SshTransport, Transport

FACTS_TIMEOUT = 60.0
APPLY_TIMEOUT = 600.0  # first start pulls images over the LAN


def run_lock(inventory: Inventory) -> FileLock:
    """The lock that keeps two `piprov up` off one cluster at the same time."""
    path = inventory.path.resolve()
    return FileLock(path.with_name(path.name + ".up.lock"), what=f"piprov up on {inventory.cluster_name}")


@dataclass
class Fleet:
    """Open transports to the inventory's nodes; closed with the fleet."""

    inventory: Inventory
    transports: dict[str, Transport]

    @classmethod
    def connect(
        cls,
        inventory: Inventory,
        names: Iterable[str] | None = None,
        *,
        policy: HostKeyPolicy | None = None,
        password: str | None = None,
    ) -> Fleet:
        wanted = set(names) if names is not None else None
        ts: dict[str, Transport] = {}
        for node in inventory.nodes:
            if wanted is None or node.name in wanted:
                ts[node.name] = SshTransport(node, inventory.known_hosts, policy=policy, password=password)
        return cls(inventory, ts)

    def close(self) -> None:
        for t in self.transports.values():
            t.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def round_trips(self) -> dict[str, int]:
        return {name: t.round_trips for name, t in self.transports.items()}


def parallel(names: Iterable[str], fn: Callable[[str], object], max_workers: int = 32) -> dict[str, object]:
    """Run ``fn(name)`` for every name at once; results or PiprovErrors by name."""
    names = list(names)
    out: dict[str, object] = {}
    if not names:
        return out

    def guarded(n: str) -> object:
        try:
            return fn(n)
        except PiprovError as e:
            e.host = e.host or n
            return e

    with ThreadPoolExecutor(max_workers=min(max_workers, len(names)), thread_name_prefix="piprov-node") as pool:
        for n, r in zip(names, pool.map(guarded, names)):
            out[n] = r
    return out


def read_facts(inventory: Inventory, graph: ComponentGraph, fleet: Fleet, name: str) -> NodeFacts:
    """One node's facts: one SSH command."""
    res = fleet.transports[name].run(facts_command_for(inventory, graph, name), sudo=True, timeout=FACTS_TIMEOUT)
    if not res.ok:
        raise FactsError(
            f"the facts command failed (exit {res.exit_code}): {res.tail(3) or 'no output'}",
            host=name,
            hint="piprov needs passwordless sudo for the SSH user on every node",
        )
    return parse_facts(name, res.stdout)


def gather_facts(
    inventory: Inventory, graph: ComponentGraph, fleet: Fleet
) -> dict[str, NodeFacts | PiprovError]:
    """Every node's facts, one SSH command each, in parallel."""
    results = parallel(fleet.transports, lambda name: read_facts(inventory, graph, fleet, name))
    return {n: r for n, r in results.items() if isinstance(r, (NodeFacts, PiprovError))}


def facts_and_plan(
    inventory: Inventory, graph: ComponentGraph, fleet: Fleet
) -> tuple[dict[str, NodeFacts | PiprovError], Plan]:
    """Every node's facts and plan, in parallel: the same as gather_facts + plan_cluster.

    Each node is planned in its own worker as soon as its facts are in, so
    rendering its templates overlaps the other nodes' SSH round trips instead
    of following the slowest one.
    """

    done: dict[str, tuple[NodeFacts | PiprovError, NodePlan | str | PiprovError]] = {}

    def one(name: str) -> None:
        facts: NodeFacts | PiprovError
        try:
            facts = read_facts(inventory, graph, fleet, name)
        except PiprovError as e:
            e.host = e.host or name
            facts = e
        try:
            done[name] = (facts, plan_one(inventory, graph, inventory.node(name), facts))
        except PiprovError as e:
            done[name] = (facts, e)

    parallel(fleet.transports, one)
    facts: dict[str, NodeFacts | PiprovError] = {}
    nodes: list[NodePlan] = []
    errors: dict[str, str] = {}
    for node in inventory.nodes:
        if node.name not in done:
            continue
        facts[node.name], planned = done[node.name]
        if isinstance(planned, PiprovError):
            raise planned  # a template or inventory error: every node has it
        if isinstance(planned, NodePlan):
            nodes.append(planned)
        else:
            errors[node.name] = planned
    return facts, Plan(nodes, errors)


def to_probe(check: HealthCheck, cap: float | None = None) -> Probe:
    timeout = float(check.timeout) if cap is None else min(float(check.timeout), cap)
    return Probe(check.probe, check.target, timeout)


def needs_text(dag: NodeDag, v: Vertex) -> str:
    """What a failed vertex waits on across the network: the first suspect
    when its own probe fails (a worker's flannel and the master's etcd)."""
    remote = [e for e in dag.edges_into(v) if e.required.node != v.node]
    parts = [f"{e.required} ({'; '.join(f'{h.probe} {h.target}' for h in e.gate)})" for e in remote]
    return f"; it needs {', '.join(parts)}" if parts else ""


def component_script(cp: ComponentPlan) -> str:
    """Files, then systemd, in one script: the component's whole change."""
    body = "".join(sh.write_file(f) for f in cp.files)
    # When a unit does not start, its journal says why: put it in the error.
    journal = " ".join(f"-u {shlex.quote(u)}" for u in [*cp.restart, *cp.start])
    for cmd in cp.unit_commands():
        on_fail = f"{{ journalctl --no-pager -o cat -n 6 {journal} >&2; fail; }}" if journal else "fail"
        body += f"step {cmd}\n{cmd} || {on_fail}\n"
    return body


def prelude_script(np: NodePlan) -> str:
    """Once per node, before its first component: clean up after interrupted
    runs and set the hostname (files first, so sudo keeps resolving it)."""
    desired = np.desired
    dirs = {p.rsplit("/", 1)[0] or "/" for p in (desired.paths if desired else [])}
    body = sh.remove_stale_temps(dirs)
    hc = np.hostname_change
    if hc is not None:
        body += "".join(sh.write_file(f) for f in hc.files)
        for cmd in hc.commands:
            body += f"step {cmd}\n{cmd} || fail\n"
    return body


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
) -> ApplyReport:
    """Apply ``plan`` along the node x component DAG; failures come back as data."""
    dag = node_dag(graph, inventory)
    plans = {np.node: np for np in plan.nodes}
    scope = set(only_nodes) if only_nodes is not None else None
    states = {n.name: _NodeState() for n in inventory.nodes}
    probes: dict[Vertex, list[ProbeResult]] = {}

    def work(v: Vertex) -> StepResult:
        if v.node in plan.errors:
            return StepResult(v.node, v.component, "failed", detail=plan.errors[v.node])
        np = plans.get(v.node)
        if np is None or (scope is not None and v.node not in scope):
            return StepResult(v.node, v.component, "unchanged", detail="not in this run")
        cp = np.component(v.component)
        transport = fleet.transports[v.node]
        state = states[v.node]
        t0 = time.monotonic()
        with state.lock:
            script = ""
            if not state.prelude_done:
                state.prelude_done = True
                if np.changed:
                    script += prelude_script(np)
            if cp.changed:
                script += component_script(cp)
            if script:
                out = sh.run_script(transport, sh.wrap(script), timeout=APPLY_TIMEOUT)
                if not out.ok:
                    return StepResult(v.node, v.component, "failed", time.monotonic() - t0,
                                      detail=f"apply failed: {out.detail}", started=t0, finished=time.monotonic())
        applied = time.monotonic()
        if not cp.changed:
            return StepResult(v.node, v.component, "unchanged", applied - t0,
                              detail="no change: files, units and keys as desired", started=t0, finished=applied)
        results: list[ProbeResult] = []
        for check in dag.health.get(v, ()):
            r = wait_healthy(to_probe(check, health_timeout), transport, cancel=cancel)
            results.append(r)
            if not r.ok:
                probes[v] = results
                return StepResult(
                    v.node, v.component, "failed", applied - t0, time.monotonic() - applied,
                    detail=f"not healthy after {r.probe.timeout:g} s: {r.probe.describe()}: {r.detail}"
                    + needs_text(dag, v),
                    started=t0, finished=time.monotonic(),
                )
        probes[v] = results
        waited = time.monotonic() - applied
        if cp.etcd_keys:
            body = "".join(f"step {c}\n{c} || fail\n" for c in cp.etcd_commands())
            out = sh.run_script(transport, sh.wrap(body), timeout=60)
            if not out.ok:
                return StepResult(v.node, v.component, "failed", time.monotonic() - t0 - waited, waited,
                                  detail=f"writing etcd keys failed: {out.detail}", started=t0,
                                  finished=time.monotonic())
        done = time.monotonic()
        what = ", ".join(cp.reasons[:2]) + (" ..." if len(cp.reasons) > 2 else "")
        return StepResult(v.node, v.component, "changed", done - t0 - waited, waited, detail=what,
                          started=t0, finished=done)

    run = run_dag(
        dag.topological(),
        dag.predecessors,
        work,
        lambda v: (v.node, v.component),
        max_workers=max(4, 2 * len(inventory.nodes)),
        on_event=on_event,
        cancel=cancel,
    )
    return ApplyReport(run, dag, probes, fleet.round_trips())


def inventory_dir(inventory: Inventory) -> Path:
    return inventory.path.resolve().parent


def stop_units(fleet: Fleet, node: str, units: Iterable[str], *, timeout: float = 120) -> sh.ApplyOutcome:
    """Stop and disable ``units`` on ``node`` in one round trip (for `node remove`).

    Units that do not exist are not an error: a half-provisioned node is
    removed as well as a complete one. All units go in ONE systemctl call, so
    systemd stops them as one transaction (a socket cannot re-activate the
    service stopped next to it).
    """
    names = " ".join(shlex.quote(u) for u in units)
    body = (
        "present=''\n"
        f"for u in {names}; do systemctl cat \"$u\" >/dev/null 2>&1 && present=\"$present $u\"; done\n"
        "step systemctl disable --now$present\n"
        'if [ -n "$present" ]; then systemctl disable --quiet --now $present || fail; fi\n'
        "echo \"stopped:$present\"\n"
    )
    return sh.run_script(fleet.transports[node], sh.wrap(body), timeout=timeout)
