"""`piprov reset` across the fleet: the Kubernetes side through the API, each node in ONE round trip.

Some workers: each is drained (a drain that fails leaves that node alone), reset,
its flannel lease released and its Node object deleted; the rest of the cluster
keeps running. The whole cluster (no names): the workers at once, then every
Node object and lease while the master still answers (unless --wipe-data takes
etcd's store anyway), then the master. The master alone is refused: the
cluster's store is there. Partial failure is data: per node, a NodeReset or
the error that stopped it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from piprov.errors import PiprovError, ResetError
from piprov.fleet import Fleet, FleetResult, naming, parallel
from piprov.graph import ComponentGraph
from piprov.inventory.model import Inventory, Node
from piprov.kube.client import KubeApi, api_or_none, k8s_name
from piprov.kube.drain import drain
from piprov.kube.procedures import delete_node, release_lease
from piprov.kube.pods import DrainOptions
from piprov.plan.hostname import os_default_hostname, plan_hostname
from piprov.provision import read_facts
from piprov.reset.command import reset_script
from piprov.reset.model import NodeReset
from piprov.reset.parse import parse_reset
from piprov.reset.target import reset_target
from piprov.shell import script as sh
from piprov.shell.script import run_script

RESET_TIMEOUT = 300.0
Say = Callable[[str], None]


@dataclass
class ResetReport:
    nodes: FleetResult[NodeReset]
    whole: bool
    cluster: list[str] = field(default_factory=list)  # the API side of a whole-cluster reset

    @property
    def ok(self) -> bool:
        return not self.nodes.failed and all(r.clean for r in self.nodes.succeeded.values())


def chosen(inventory: Inventory, names: Sequence[str]) -> tuple[list[Node], bool]:
    """The nodes to reset and whether that is the whole cluster; the master alone is refused."""
    if not names:
        return list(inventory.nodes), True
    nodes = [inventory.node(n) for n in dict.fromkeys(names)]
    whole = len(nodes) == len(inventory.nodes)
    if not whole and any(n.role == "master" for n in nodes):
        raise ResetError(f"{inventory.master.name} is the master: resetting it takes the whole cluster's store",
                         host=inventory.master.name,
                         hint="`piprov reset` without names resets the whole cluster; "
                         "or reset the workers only")
    return nodes, whole


def reset_cluster(inventory: Inventory, graph: ComponentGraph, fleet: Fleet, names: Sequence[str] = (), *,
                  wipe_data: bool = False, options: DrainOptions = DrainOptions(), timeout: float = 300.0,
                  hostname: bool = False, say: Say = lambda _: None) -> ResetReport:
    nodes, whole = chosen(inventory, names)
    api = api_or_none(inventory)
    report = ResetReport(FleetResult(), whole)

    def one(name: str) -> NodeReset:
        node = inventory.node(name)
        before = [] if whole else _drain(api, node, options, timeout, say)
        done = reset_node(inventory, graph, fleet, node, wipe_data=wipe_data, hostname=hostname, say=say)
        done.cluster = before + ([] if whole else _forget(inventory, graph, api, node))
        return done

    if not whole:
        report.nodes = parallel({n.name: fleet.transports[n.name] for n in nodes}, one)
        return report
    # The workers first, at once; then, while the master's apiserver and etcd still answer, every
    # Node object and lease (a kubelet registers once, at its start: none is left to re-register);
    # the master last.
    workers = parallel({n.name: fleet.transports[n.name] for n in nodes if n.role != "master"}, one)
    if not wipe_data:
        report.cluster = _forget_all(inventory, graph, api, say)
    master = parallel({inventory.master.name: fleet.transports[inventory.master.name]}, one)
    report.nodes = FleetResult({n.name: ({**workers, **master})[n.name] for n in nodes})
    return report


def reset_node(inventory: Inventory, graph: ComponentGraph, fleet: Fleet, node: Node, *, wipe_data: bool,
               say: Say, hostname: bool = False) -> NodeReset:
    """Read the node's record (its facts), reset and audit it in one script; with ``hostname``, then give
    it its OS's default name back (a second script; a node whose OS has none piprov knows is refused
    before anything changes)."""
    facts = read_facts(inventory, graph, fleet, node.name)
    name = os_default_hostname(facts) if hostname else None
    if hostname and name is None:
        raise ResetError(f"--hostname: piprov knows no default hostname of {facts.os_id or 'this OS'} "
                         f"{facts.os_version}".rstrip(), host=node.name,
                         hint="reset without --hostname, then set the name by hand (hostnamectl)")
    target = reset_target(inventory, graph, node, facts, wipe_data=wipe_data)
    say(f"{node.name}: stopping {len(target.units)} units, removing what the stack left")
    out = run_script(fleet.transports[node.name], reset_script(target), timeout=RESET_TIMEOUT)
    if not out.ok:
        raise ResetError(f"the reset script failed (exit {out.result.exit_code}): "
                         f"{out.result.tail(3) or 'no output'}", host=node.name,
                         hint="run `piprov reset` again: every step of it is safe to repeat")
    done = parse_reset(node.name, out.result.stdout)
    change = plan_hostname(name, facts) if name is not None else None
    if change is not None:
        say(f"{node.name}: hostname {change.old} -> {change.new} ({change.method})")
        named = run_script(fleet.transports[node.name], sh.script([*(f.action for f in change.files),
                                                                    *change.actions]), timeout=RESET_TIMEOUT)
        if not named.ok:
            raise ResetError(f"the node was reset, but setting its hostname back failed: {named.detail}",
                             host=node.name, hint="run `piprov reset --hostname` again")
    done.hostname = name
    return done



def _drain(api: KubeApi | None, node: Node, options: DrainOptions, timeout: float, say: Say) -> list[str]:
    """Drain a worker in the cluster first; an error here (a budget that never allows it) stops its reset."""
    kname = k8s_name(node)
    try:
        registered = api is not None and api.node(kname) is not None
    except PiprovError:
        registered = False
    if api is None or not registered:
        return [f"{node.name}: no Node object (or no apiserver answered): nothing to drain"]
    say(f"{node.name}: draining {kname}")
    try:
        return [drain(api, kname, timeout=timeout, options=options, keep_cordoned=True).message]
    except PiprovError as e:
        raise naming(e, node.name) from None


def _forget(inventory: Inventory, graph: ComponentGraph, api: KubeApi | None, node: Node) -> list[str]:
    """The node's flannel lease and Node object; said, not raised: the node itself is clean either way."""
    done: list[str] = []
    try:
        done.append(release_lease(inventory, graph, node))
    except PiprovError as e:
        done.append(f"flannel lease not released: {e.message}")
    if api is not None:
        try:
            done.append(delete_node(api, k8s_name(node)))
        except PiprovError as e:
            done.append(f"Node {k8s_name(node)} not deleted: {e.message}")
    return done


def _forget_all(inventory: Inventory, graph: ComponentGraph, api: KubeApi | None, say: Say) -> list[str]:
    say("deleting every Node object and flannel lease while the apiserver and etcd answer")
    return [line for n in inventory.nodes for line in _forget(inventory, graph, api, n)]
