"""`node add` and `node remove` as procedures of the product, not of the CLI.

`node remove` is a list of named :class:`Step` s (the k0sctl phase model:
each step has a title and a run); progress such as "2/5 stopping units" comes
from the list, and the CLI only renders the :class:`StepEvent` s. `node add`
is :class:`NodeAddition`: plan the whole fleet, apply the new node's plan
only, wait until Kubernetes calls it Ready.

Safety: `remove` reaches the node before changing anything (a dead node fails
there, not after its drain), and never deletes a node whose drain failed
(kubespray #7137). `add` applies nothing to other nodes: their pending
changes are reported, not applied.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from piprov.errors import PiprovError, TransportError
from piprov.fleet import Fleet, reach
from piprov.graph import ComponentGraph
from piprov.inventory import Inventory, check_images, load
from piprov.inventory.edit import NewNode, add_nodes, free_name, remove_node
from piprov.inventory.model import HostKeyPolicy, Node
from piprov.kube.client import KubeApi, api_for, k8s_name, wait_ready
from piprov.kube.discovery import ready_reader
from piprov.kube.drain import Say, drain, quiet
from piprov.kube.pods import DrainOptions
from piprov.kube.etcd import release_flannel_lease
from piprov.kube.rollout import ApplyFn
from piprov.plan import NodePlan, Plan
from piprov.orchestrate import StepResult
from piprov.provision import ApplyReport, apply_plan, facts_and_plan, stop_units

# -- steps ----------------------------------------------------------------------------------------------

Announce = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    """One named step of a procedure.

    ``run(announce)`` does it and returns one line saying what it did; a step
    that takes long calls ``announce(text)`` first. ``skip`` is why the step
    will not run, when that is known before the procedure starts.
    """

    title: str
    run: Callable[[Announce], str]
    skip: str | None = None


@dataclass(frozen=True)
class StepEvent:
    index: int  # 1-based
    total: int
    step: Step
    kind: str  # "announce" (a long step began), "done", "skipped"
    text: str
    announced: bool = False  # "done" of a step that announced itself first


def run_steps(steps: Sequence[Step], on_event: Callable[[StepEvent], None]) -> None:
    """Run ``steps`` in order; the first that raises stops the procedure (nothing after it runs)."""
    total = len(steps)
    for i, step in enumerate(steps, 1):
        if step.skip is not None:
            on_event(StepEvent(i, total, step, "skipped", step.skip))
            continue
        announced: list[str] = []

        def announce(text: str, i: int = i, step: Step = step, announced: list[str] = announced) -> None:
            announced.append(text)
            on_event(StepEvent(i, total, step, "announce", text))

        done = step.run(announce)
        on_event(StepEvent(i, total, step, "done", done, announced=bool(announced)))


# -- node remove ----------------------------------------------------------------------------------------

UNREACHABLE_HINT = "if the node is gone for good (powered off, dead card), run again with --unreachable"


def refuse_removing_master(node: Node) -> None:
    if node.role == "master":
        raise PiprovError(
            f"{node.name} is the master: it runs etcd and the apiserver the whole cluster needs, so it cannot be removed",
            hint="to replace the master, rebuild the cluster: edit the inventory and run `piprov up`")


def units_to_stop(graph: ComponentGraph, role: str) -> list[str]:
    """Every unit piprov manages on a node of ``role``, dependents first."""
    units: list[str] = []
    for c in reversed(list(graph.for_role(role))):
        for u in c.units:
            if u not in units:
                units.append(u)
    return units


@dataclass
class NodeRemoval:
    """Take a worker out of the cluster for good: drain, stop, release its lease, delete, forget."""

    inventory: Inventory
    graph: ComponentGraph
    node: Node
    api: KubeApi
    timeout: float = 300.0
    options: DrainOptions = DrainOptions()
    unreachable: bool = False
    say: Say = quiet
    policy: HostKeyPolicy | None = None  # the run's host-key policy, for the other members
    # The node's own clean-up, given by the caller (the CLI passes `piprov reset`'s, which this room may not
    # import: reset drains through kube); None: stop and disable its units only.
    clean: Callable[[Fleet], str] | None = None

    def reach(self, fleet: Fleet) -> None:
        """Run one command on the node before anything changes (skipped with ``unreachable``)."""
        if self.unreachable:
            return
        try:
            reach(fleet.transports[self.node.name], timeout=30)
        except PiprovError as e:
            raise self._unreachable("it does not answer over SSH") from e

    def _unreachable(self, what: str) -> TransportError:
        # Raised `from` the SSH error: the CLI says both, each with its own hint (e.g. forget a changed key).
        return TransportError(what, host=self.node.name, hint=UNREACHABLE_HINT)

    def steps(self, fleet: Fleet) -> list[Step]:
        n, kname = self.node, k8s_name(self.node)
        return [
            Step("draining", self._drain),
            Step("resetting it" if self.clean else "stopping units", lambda _: self._stop_units(fleet),
                 skip="--unreachable (the node is not contacted)" if self.unreachable else None),
            Step("releasing the flannel lease", lambda _: self._release_lease()),
            Step("deleting the Node", lambda _: self._delete_node(kname)),
            Step("removing from the inventory", lambda _: self._forget(n.name)),
            Step("updating the other members' fleet-wide components", lambda _: self._update_others()),
        ]

    def _drain(self, announce: Announce) -> str:
        kname = k8s_name(self.node)
        if self.api.node(kname) is None:
            return f"{self.node.name} has no Node object: nothing to drain"
        announce(f"draining {self.node.name} ({kname})")
        res = drain(self.api, kname, timeout=self.timeout, options=self.options, keep_cordoned=False,
                    unreachable=self.unreachable, say=self.say)
        return res.message

    def _stop_units(self, fleet: Fleet) -> str:
        units = units_to_stop(self.graph, self.node.role)
        if self.clean is not None:
            try:
                return self.clean(fleet)
            except TransportError as e:
                raise self._unreachable("it could not be reset") from e
        try:
            outcome = stop_units(fleet, self.node.name, units)
        except PiprovError as e:
            raise self._unreachable("its units could not be stopped") from e
        if not outcome.ok:
            raise PiprovError(f"stopping its units failed: {outcome.detail}", host=self.node.name,
                              hint=UNREACHABLE_HINT)
        return f"stopped and disabled: {' '.join(units)}"

    def _release_lease(self) -> str:
        return release_lease(self.inventory, self.graph, self.node)

    def _delete_node(self, kname: str) -> str:
        return delete_node(self.api, kname)

    def _forget(self, name: str) -> str:
        remove_node(self.inventory.path, name)
        return f"{name} removed from {self.inventory.path}"

    def _update_others(self) -> str:
        """The remaining members re-apply their fleet-wide components (the firewall stops letting the
        removed address in); nothing else of theirs. A member that fails is said, not raised: the
        node is gone either way, and `piprov up` finishes the job."""
        comps = self.graph.fleet_wide_components()
        rest = load(self.inventory.path)
        if not comps:
            return "no fleet-wide component"
        with Fleet.connect(rest, policy=self.policy) as fleet:
            plan = facts_and_plan(rest, self.graph, fleet)[1]
            report = apply_plan(rest, self.graph, plan, fleet, only_nodes=[],
                                also=[(m.name, c) for m in rest.nodes for c in comps])
        left = sorted({s.node for s in report.run.failed} | set(plan.errors))
        done = ", ".join(comps)
        if left:
            return f"{done} NOT updated on {', '.join(left)}: run `piprov up`"
        return f"{done} updated on {', '.join(m.name for m in rest.nodes)}"


# -- node add -------------------------------------------------------------------------------------------


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def next_worker_name(inventory: Inventory) -> str:
    return free_name("rpi-node-{n}", [n.name for n in inventory.nodes])


@dataclass(frozen=True)
class AddTarget:
    name: str
    address: str | None = None  # set when the node was added to the inventory just now


def resolve_add_target(path: Path, inv: Inventory, target: str, address: str | None, new_name: str | None,
                       role: str) -> AddTarget:
    """The inventory node `node add TARGET` means, appending it to the inventory if it is not there."""
    for n in inv.nodes:
        if target in (n.name, n.address):
            if address and address != n.address:
                raise PiprovError(f"{n.name} is already in {path} with address {n.address}, not {address}",
                                  hint=f"`piprov inventory set nodes.{n.name}.address {address}` to change it")
            return AddTarget(n.name)
    if is_address(target):
        if address and address != target:
            raise PiprovError(f"two addresses given: {target} and --address {address}")
        address, name = target, new_name
    else:
        if not address:
            raise PiprovError(f"{target} is not in {path}; give its address",
                              hint=f"piprov node add {target} --address 192.168.1.x")
        name = new_name or target
    chosen: list[str] = []

    def plan(current: Inventory) -> list[NewNode]:
        nm = name or next_worker_name(current)
        chosen.append(nm)
        return [NewNode(nm, str(address), role)]

    add_nodes(path, plan, what=f"add node {name or address}")
    return AddTarget(chosen[-1], str(address))


def other_changes(plan: Plan, node: str, applied: Sequence[str] = ()) -> dict[str, list[str]]:
    """Changes the plan has on nodes other than ``node`` that node add leaves alone (all but the
    ``applied`` components: the fleet-wide ones)."""
    out = {}
    for np in plan.nodes:
        if np.node == node or not np.changed:
            continue
        left = [r for c in np.components if c.changed and c.component not in applied for r in c.reasons]
        if left or np.hostname_change is not None or np.owned is not None:
            out[np.node] = left or np.reasons
    return out


@dataclass
class NodeAddition:
    """Join one node to the running cluster; its steps: plan the fleet, apply this node, wait Ready."""

    inventory: Inventory
    graph: ComponentGraph
    name: str
    plan: Plan = field(default_factory=lambda: Plan([]))
    others: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, inventory_path: Path, graph: ComponentGraph, name: str) -> NodeAddition:
        inventory = load(inventory_path)
        check_images(inventory, graph.image_names())
        if inventory.node(name).role == "master":
            raise PiprovError(f"{name} is the master: it is built by `piprov up`, not joined with `node add`")
        return cls(inventory, graph, name)

    @property
    def node(self) -> Node:
        return self.inventory.node(self.name)

    @property
    def mine(self) -> NodePlan:
        return self.plan.node(self.name)

    def plan_fleet(self, fleet: Fleet) -> Plan:
        """Facts and plan of every node; the new node must be plannable, the others may not be."""
        self.plan = facts_and_plan(self.inventory, self.graph, fleet)[1]
        if self.name in self.plan.errors:
            raise PiprovError(
                "it cannot be planned, so it cannot join", host=self.name,
                hint="fix the node's SSH access (see `piprov keys`) and run `piprov node add` again",
            ) from self.plan.errors[self.name]
        self.others = other_changes(self.plan, self.name, self.graph.fleet_wide_components())
        return self.plan

    def admit(self, checked: Plan) -> None:
        """Take the plan after the new node's preflight check (provision.preflight): refused, it does not join."""
        why = checked.errors.get(self.name)
        if why is not None:
            raise PiprovError("the preflight check refuses it, so it cannot join", host=self.name,
                              hint="fix what it names and run `piprov node add` again") from why
        self.plan = checked

    def apply(self, fleet: Fleet, *, health_timeout: float | None, on_event: Callable[[Any], None] | None,
              cancel: threading.Event | None) -> ApplyReport:
        """Apply the new node's plan, and on the others only their fleet-wide components (the firewall
        lets the new node in): the master is used, not restarted."""
        also = [(n.name, c) for n in self.inventory.nodes if n.name != self.name
                for c in self.graph.fleet_wide_components()]
        return apply_plan(self.inventory, self.graph, self.plan, fleet, only_nodes=[self.name],
                          health_timeout=health_timeout, on_event=on_event, cancel=cancel, also=also)

    def wait_ready(self, timeout: float) -> bool:
        # The new kubelet's first report is fresh by definition: any Ready counts (no baseline).
        return wait_ready(ready_reader(api_for(self.inventory), k8s_name(self.node)), timeout)[0]


# -- applying a plan to some nodes (the rollout's ApplyFn) --------------------------------------------------


def apply_nodes(
    inventory: Inventory,
    graph: ComponentGraph,
    plan: Plan,
    fleet: Fleet,
    *,
    health_timeout: float | None = None,
    on_event: Callable[[Any], None] | None = None,
    cancel: threading.Event | None = None,
) -> ApplyFn:
    """An ApplyFn that applies ``plan`` to some nodes through provision.apply_plan."""

    def apply(nodes: Sequence[str]) -> list[StepResult]:
        report = apply_plan(inventory, graph, plan, fleet, only_nodes=nodes, health_timeout=health_timeout,
                            on_event=on_event, cancel=cancel)
        return report.run.failed + [s for s in report.run.skipped if s.node in nodes]

    return apply


def release_lease(inventory: Inventory, graph: ComponentGraph, node: Node) -> str:
    """Release the flannel lease(s) that ``node``'s address holds; what was done, in words."""
    prefix = graph.pod_network_prefix
    gone = release_flannel_lease(inventory, node.address, prefix) if prefix else []
    return f"flannel lease released: {', '.join(gone) if gone else 'none held'}"


def delete_node(api: KubeApi, kname: str) -> str:
    """Delete the Node object ``kname``; what was done, in words."""
    api.delete_node(kname)
    return f"Node {kname} deleted"
