"""`piprov restore FILE`: the master's etcd back from a backup, then the rest of the stack (issue 17).

Its own room: it strings ``backup`` (the file verified, the one node script) and ``provision``
(facts -> plan -> apply) together, which the backup room may not (tests/unit/test_layering.py).

1. ``verify``: the file against its manifest (``backup.archive.verify_backup``), then refused when
   it is of another cluster or of an etcd line the inventory's master does not run; a 3.x backup is
   refused for now (its objects are in the v3 store: ``etcdctl snapshot restore`` makes a data dir
   of its own without the v2 store the 2.x path restores, and joining the two is not built).
2. ``bootstrap``: what etcd needs on the master (the node DAG's ancestors of the master's etcd
   vertex: in the seed's playbooks the bootstrap docker daemon alone), applied by ``provision.apply_plan`` limited
   to those vertices, so the bootstrap daemon answers on a freshly flashed card.
3. ``etcd``: ONE script on the master (``backup.command.restore_script``, sudo, through
   ``shell.script.run_script``): the v2 store unpacked beside the data dir, etcd started once on it
   with ``--force-new-cluster`` until healthy (etcd-io/etcd v2.1.1 Documentation/admin_guide.md:158-182,
   "Restoring a backup"), then renamed into place, the old data dir moved aside.
4. ``up``: the normal `piprov up` path (the caller's): etcd's unit starts on the restored store,
   the rest of the master follows, the workers' flannel finds its leases there and their kubelets
   their Node objects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from piprov.backup.archive import Manifest, verify_backup
from piprov.backup.command import RestoreTarget, parse_restore, restore_script, restore_target
from piprov.backup.run import etcd_line, rendered_backup
from piprov.errors import PiprovError, RestoreError
from piprov.fleet import Fleet
from piprov.graph import ComponentGraph, NodeDag, Vertex, load_graph, node_dag
from piprov.graph.versions import Matrix, load_matrix
from piprov.inventory.model import HostKeyPolicy, Inventory
from piprov.provision import ApplyReport, apply_plan, facts_and_plan, run_lock
from piprov.shell.script import run_script

# The script carries the backup (a few hundred kB of base64 for a 64 MB preallocated WAL) and
# waits for the one-shot etcd (backup.command.RESTORE_WAIT) and maybe an image pull over the LAN.
TIMEOUT = 600.0


@dataclass(frozen=True)
class RestoreStep:
    name: str
    detail: str
    seconds: float


@dataclass
class RestoreReport:
    path: Path
    manifest: Manifest
    steps: list[RestoreStep] = field(default_factory=list)
    bootstrap: ApplyReport | None = None


def check_backup(inventory: Inventory, graph: ComponentGraph, matrix: Matrix, data: bytes,
                 where: str) -> Manifest:
    """The backup's manifest once it verifies and fits the inventory, or RestoreError saying why not."""
    m = verify_backup(data, where)
    cluster = m.data.get("cluster")
    if cluster != inventory.cluster_name:
        raise RestoreError(f"{where} is a backup of cluster {cluster!r}, not of {inventory.cluster_name!r}",
                           hint="restore a backup of this inventory's cluster (its manifest.json names it)")
    raw = m.data.get("etcd")
    etcd: dict[str, Any] = raw if isinstance(raw, dict) else {}
    line = etcd_line(inventory, graph, matrix)
    if etcd.get("line") != line.name:
        raise RestoreError(f"{where} holds etcd {etcd.get('version')!r} of line {etcd.get('line')!r}; the inventory "
                           f"runs etcd line {line.name}", hint="images.etcd in the inventory names the line "
                           "(`piprov versions`): restore into the line that wrote the backup")
    stores = list(etcd.get("stores") or [])
    if stores != ["v2"]:
        raise RestoreError(f"{where} holds the stores {stores} of etcd {line.name}: piprov restores the v2 store "
                           "of etcd 2.x only so far (a 3.x store's objects are in its v3 snapshot)",
                           hint="by hand: `ETCDCTL_API=3 etcdctl snapshot restore etcd/v3.db` (manifest.json `restore`)")
    return m


def bootstrap_components(graph: ComponentGraph, inventory: Inventory, dag: NodeDag | None = None) -> list[str]:
    """What the master's etcd needs on the master, in graph order: the DAG's ancestors of its vertex there."""
    found = graph.etcd_backup()
    if found is None:
        raise RestoreError("no component of the playbooks has a `backup` section: nothing says where etcd's data is")
    dag = dag or node_dag(graph, inventory)
    master = inventory.master.name
    seen: set[str] = set()
    todo = [Vertex(master, found[0].name)]
    while todo:
        for p in dag.predecessors(todo.pop()):
            if p.node == master and p.component not in seen:
                seen.add(p.component)
                todo.append(p)
    return [c.name for c in graph.components if c.name in seen]


def bootstrap_master(inventory: Inventory, graph: ComponentGraph, fleet: Fleet,
                     components: list[str]) -> tuple[str, ApplyReport]:
    """The master's plan, applied only for ``components``; the master's image arch."""
    master = inventory.master.name
    _, plan = facts_and_plan(inventory, graph, fleet, find_move=False)
    if master in plan.errors:
        raise plan.errors[master]
    np = next((p for p in plan.nodes if p.node == master), None)
    if np is None or np.desired is None:
        raise RestoreError("the master could not be planned", host=master)
    report = apply_plan(inventory, graph, plan, fleet, only_nodes=[], also=[(master, c) for c in components])
    if not report.run.ok:
        why = "; ".join(f"{s.component}: {s.detail}" for s in report.run.failed) or "a step was skipped"
        raise RestoreError(f"the master's {', '.join(components)} did not come up: {why}", host=master,
                           hint="`piprov status` shows the master's units")
    return np.desired.arch, report


def target_for(inventory: Inventory, graph: ComponentGraph, arch: str) -> RestoreTarget:
    comp, b = rendered_backup(inventory, graph)
    image = inventory.images.ref(comp.images[0], arch, graph.image_defaults())
    return restore_target(b, comp.units, image)


def restore_etcd(fleet: Fleet, host: str, target: RestoreTarget, data: bytes) -> dict[str, str]:
    """The one restore script on ``host`` (root); its steps, or RestoreError with the script's last words."""
    out = run_script(fleet.transports[host], restore_script(target, data), timeout=TIMEOUT)
    if not out.ok:
        raise RestoreError(f"restoring etcd failed on the master: {out.detail or 'no output'}", host=host,
                           hint="the old data dir, if any, is kept as <data dir>.before-restore.<time>")
    try:
        return parse_restore(host, out.result.stdout)
    except PiprovError as e:
        raise RestoreError(e.message, host=host) from None


def restore(inventory: Inventory, path: Path, *, policy: HostKeyPolicy | None = None,
            say: Callable[[str], None] = lambda s: None) -> RestoreReport:
    """Steps 1-3 (verify, bootstrap, etcd); the caller runs `piprov up` after it."""
    graph, matrix = load_graph(), load_matrix()
    t0 = time.monotonic()
    data = path.read_bytes()
    report = RestoreReport(path, check_backup(inventory, graph, matrix, data, str(path)))
    m = report.manifest.data
    report.steps.append(RestoreStep("verify", f"cluster {m['cluster']}, etcd {m['etcd']['version']}, taken "
                                    f"{m['created']} on {m['master']['name']}", time.monotonic() - t0))
    say(f"verified {path}: {report.steps[-1].detail}")
    master = inventory.master.name
    components = bootstrap_components(graph, inventory)
    with run_lock(inventory), Fleet.connect(inventory, [master], policy=policy) as fleet:
        t1 = time.monotonic()
        say(f"bringing up {', '.join(components)} on {master}")
        arch, report.bootstrap = bootstrap_master(inventory, graph, fleet, components)
        changed = [s.component for s in report.bootstrap.run.changed]
        report.steps.append(RestoreStep("bootstrap", f"{', '.join(components)} on {master}: "
                                        f"{'changed ' + ', '.join(changed) if changed else 'already as desired'}",
                                        time.monotonic() - t1))
        t2 = time.monotonic()
        say(f"restoring etcd's store on {master} (one script: --force-new-cluster once, then in place)")
        steps = restore_etcd(fleet, master, target_for(inventory, graph, arch), data)
    aside = steps.get("moved-aside")
    report.steps.append(RestoreStep("etcd", f"restored {steps['restored']}"
                                    + (f"; the old data dir kept at {aside}" if aside else ""), time.monotonic() - t2))
    return report
