"""The master moved in the inventory: etcd's store follows it before `piprov up` applies its plan (issue 17).

``plan.move`` (``plan.move``: the inventory's master holds no etcd, exactly one
other node's record does) is made by the restore path, with the old master
still running as it was:

1. ``backup``: `piprov backup`'s script on the old master (an inventory in which
   it is still the master renders it), the file kept in ``<inventory>.backups/``
   like any backup: the way back if anything after it fails;
2. ``bootstrap`` and ``etcd``: `piprov restore`'s steps on the new master.

The caller then plans again without looking for a move and applies: the new
master's etcd starts on the restored store, the workers (the old master among
them) are rewired to it, and the old master's prune stops and removes its
master components (``plan.owned``: "role changed"). Writes to the old etcd
after the backup (flannel lease renewals, Node heartbeats) are lost, as in any
restore. A move cut short leaves the new master's record without etcd, so the
next `up` plans the move again from the old master, which still runs.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

from piprov.backup.run import take_backup
from piprov.fleet import Fleet
from piprov.graph import ComponentGraph
from piprov.graph.versions import load_matrix
from piprov.inventory.model import Inventory, Role
from piprov.plan import MasterMove
from piprov.restore import RestoreStep, bootstrap_components, bootstrap_master, check_backup, restore_etcd, \
    target_for


def as_before(inventory: Inventory, move: MasterMove) -> Inventory:
    """The inventory as it was before the move: ``move.old`` the master, ``move.new`` a worker."""
    role: dict[str, Role] = {move.old: "master", move.new: "worker"}
    return dataclasses.replace(inventory, nodes=tuple(
        dataclasses.replace(n, role=role[n.name]) if n.name in role else n for n in inventory.nodes))


def move_store(inventory: Inventory, graph: ComponentGraph, fleet: Fleet, move: MasterMove,
               say: Callable[[str], None] = lambda s: None) -> list[RestoreStep]:
    """Steps 1-2 above over ``fleet`` (both masters connected); RestoreError or BackupError naming the host."""
    steps: list[RestoreStep] = []
    t0 = time.monotonic()
    say(f"master move {move.old} -> {move.new}: backing up etcd on {move.old}")
    taken = take_backup(as_before(inventory, move), fleet=fleet)
    data = taken.path.read_bytes()
    check_backup(inventory, graph, load_matrix(), data, str(taken.path))
    steps.append(RestoreStep("backup", f"etcd on {move.old} into {taken.path} ({taken.size} bytes)",
                             time.monotonic() - t0))
    components = bootstrap_components(graph, inventory)
    t1 = time.monotonic()
    say(f"bringing up {', '.join(components)} on {move.new}")
    arch, _ = bootstrap_master(inventory, graph, fleet, components)
    steps.append(RestoreStep("bootstrap", f"{', '.join(components)} on {move.new}", time.monotonic() - t1))
    t2 = time.monotonic()
    say(f"restoring etcd's store on {move.new}")
    restored = restore_etcd(fleet, move.new, target_for(inventory, graph, arch), data)
    steps.append(RestoreStep("etcd", f"restored {restored['restored']} on {move.new}", time.monotonic() - t2))
    return steps
