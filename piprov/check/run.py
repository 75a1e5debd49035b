"""The check over the fleet: one script per node, in parallel; a node that cannot be checked is data.

:func:`check_node` runs the check script (:mod:`piprov.check.command`) with
one SSH round trip, parses it and judges it; :func:`check_fleet` does so on
every node at once and returns one :class:`NodeCheck` per node in the
inventory's order, the error of a node that could not be reached included.
"""

from __future__ import annotations

import time
from typing import Iterable

from piprov.check.book import Book
from piprov.check.command import check_command
from piprov.check.judge import NodeContext, judge
from piprov.check.model import CheckFacts, NodeCheck
from piprov.check.parse import parse_check
from piprov.errors import CheckError, PiprovError
from piprov.fleet import Fleet, parallel
from piprov.graph import ComponentGraph
from piprov.graph.support import arch_selection, matrix_for, node_problem
from piprov.inventory.model import Inventory, Node
from piprov.render import node_image_arch, to_image_arch

CHECK_TIMEOUT = 60.0
# The controller's clock the node's is compared with (a test sets its own).
now = time.time


def read_check(fleet: Fleet, book: Book, name: str, *, fsync: bool = True) -> CheckFacts:
    """One node's check facts: one SSH command, with sudo (the fsync dir is root's); ``fsync=False``: the
    cheap part alone (no write to the card)."""
    asked = now()
    res = fleet.transports[name].run(check_command(book.probe, fsync=fsync), sudo=True, timeout=CHECK_TIMEOUT)
    answered = now()
    if not res.ok:
        raise CheckError(
            f"the check command failed (exit {res.exit_code}): {res.tail(3) or 'no output'}", host=name,
            hint="piprov needs sudo for the SSH user on every node (passwordless, or --ask-sudo-password)")
    return parse_check(name, res.stdout, asked=asked, answered=answered)


def node_context(inventory: Inventory, graph: ComponentGraph, book: Book, node: Node, facts: CheckFacts) -> NodeContext:
    """What the inventory and the playbooks say of ``node``: etcd there, a pinned arch, the support matrix."""
    runs_etcd = any(c.name == book.etcd.component for c in graph.for_role(node.role))
    problem: PiprovError | None
    try:
        arch = node_image_arch(node, facts.node.machine)
        matrix = matrix_for(graph.sources)
        profile = arch_selection(inventory, graph.image_specs, matrix, arch).profile
        problem = node_problem(matrix, profile, node.name, facts.node.versions)
    except PiprovError as e:  # an arch piprov has no images for says so itself
        problem = e
    pinned = None
    if node.arch:
        try:
            pinned = to_image_arch(node.arch)
        except PiprovError:
            pinned = node.arch
    return NodeContext(runs_etcd=runs_etcd, arch=pinned, version_problem=problem)


def check_node(inventory: Inventory, graph: ComponentGraph, book: Book, fleet: Fleet, name: str, *,
               fsync: bool = True) -> NodeCheck:
    facts = read_check(fleet, book, name, fsync=fsync)
    node = next(n for n in inventory.nodes if n.name == name)
    return NodeCheck(name, facts, judge(facts, book, node_context(inventory, graph, book, node, facts)))


def check_fleet(inventory: Inventory, graph: ComponentGraph, book: Book, fleet: Fleet, *,
                names: Iterable[str] | None = None, fsync: bool = True) -> list[NodeCheck]:
    """Every node of ``fleet`` (or of ``names``) checked at once, in the inventory's order; an unreachable node
    carries its error. ``fsync=False``: the cheap checks alone, the SD card's measure left out."""
    todo = fleet.transports if names is None else [n for n in names if n in fleet.transports]
    results = parallel(todo, lambda name: check_node(inventory, graph, book, fleet, name, fsync=fsync))
    out = []
    for node in inventory.nodes:
        if node.name in results:
            r = results[node.name]
            out.append(r if isinstance(r, NodeCheck) else NodeCheck(node.name, error=r))
    return out
