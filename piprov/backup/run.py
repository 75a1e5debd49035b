"""Take a backup: one command on the master (sudo), the file written on the controller, 0600.

The default file is ``<inventory>.backups/<cluster>-<UTC time>.tar.gz`` next
to the inventory (as its PKI is ``<inventory>.pki/``): the directory 0700,
the file 0600, since etcd holds the cluster's secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from piprov import localfs
from piprov.backup.archive import Manifest, manifest_for, pack, payload_files
from piprov.backup.command import BackupPlan, backup_plan, parse_output
from piprov.errors import BackupError, GraphError
from piprov.localfs import LocalWriteError
from piprov.fleet import Fleet
from piprov.graph import ComponentGraph, load_graph
from piprov.graph.expr import probe_context, render_expression
from piprov.graph.model import Component, EtcdBackup
from piprov.graph.support import arch_selection, inventory_selection
from piprov.graph.versions import Matrix, VersionLine, load_matrix
from piprov.inventory.model import HostKeyPolicy, Inventory
from piprov.transport import CommandResult
from piprov.version import parse_version

# A Pi's card writes a few MB/s: the copy, the tar and gzip of a 64 MB preallocated WAL.
TIMEOUT = 600.0


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    manifest: Manifest
    round_trips: int


def default_output(inventory: Inventory, now: datetime) -> Path:
    p = inventory.path.expanduser().absolute()
    return p.with_name(p.name + ".backups") / f"{inventory.cluster_name}-{now:%Y%m%dT%H%M%SZ}.tar.gz"


def etcd_line(inventory: Inventory, graph: ComponentGraph, matrix: Matrix) -> VersionLine:
    """The etcd line the inventory's master runs (its arch's images where the inventory sets one)."""
    arch = inventory.master.arch
    sel = (arch_selection(inventory, graph.image_specs, matrix, arch) if arch
           else inventory_selection(inventory, graph.image_specs, matrix))
    pick = sel.picks.get("etcd")
    if pick is None:
        raise BackupError("the inventory names no etcd image", hint="images.etcd in the inventory")
    return pick.line


def rendered_backup(inventory: Inventory, graph: ComponentGraph) -> tuple[Component, EtcdBackup]:
    """The component holding etcd's data and its playbook ``backup``, rendered for the inventory's master."""
    found = graph.etcd_backup()
    if found is None:
        raise GraphError("no component of the playbooks has a `backup` section: nothing says where etcd's data is")
    comp, raw = found
    ctx = probe_context(inventory, inventory.master)
    return comp, EtcdBackup(render_expression(raw.exec, ctx).strip(), render_expression(raw.version, ctx).strip(),
                            raw.data_dir, raw.host_data_dir, " ".join(render_expression(raw.v3_client, ctx).split()))


def plan_backup(inventory: Inventory, graph: ComponentGraph, matrix: Matrix) -> BackupPlan:
    """The master's backup script for the inventory's etcd line (pure but for the playbooks read)."""
    _, b = rendered_backup(inventory, graph)
    return backup_plan(inventory.master.name, b, etcd_line(inventory, graph, matrix))


def _check_version(plan: BackupPlan, matrix: Matrix, version: str) -> None:
    v = parse_version(version)
    line = matrix.component("etcd").line_of(v) if v else None
    if line is None or line.name != plan.line:
        raise BackupError(f"the master runs etcd {version}, not of the inventory's line {plan.line}: "
                          "the backup commands are that line's", host=plan.host,
                          hint="`piprov up` brings etcd to the inventory's version; then back up")


def write_backup(path: Path, data: bytes) -> None:
    """``data`` at ``path`` atomically, mode 0600; a new parent directory is made 0700."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise LocalWriteError(f"cannot make {path.parent}: {e.strerror or e}") from None
    localfs.atomic_write(path, data, mode=0o600)


def take_backup(inventory: Inventory, output: Path | None = None, *, policy: HostKeyPolicy | None = None,
                now: datetime | None = None, fleet: Fleet | None = None) -> BackupResult:
    """Back up the master's etcd into ``output`` (default: :func:`default_output`)."""
    graph, matrix = load_graph(), load_matrix()
    plan = plan_backup(inventory, graph, matrix)
    res, trips = run_on_master(inventory, plan.host, plan.script, policy=policy, fleet=fleet)
    if not res.ok:
        raise BackupError(f"the backup failed on the master (exit {res.exit_code}): {res.tail() or 'no output'}",
                          host=plan.host, hint="`piprov status` shows whether etcd is running")
    when = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    return save_backup(inventory, plan, matrix, res.stdout, when, output, trips)


def run_on_master(inventory: Inventory, host: str, script: str, *, policy: HostKeyPolicy | None,
                  fleet: Fleet | None) -> tuple[CommandResult, int]:
    """``script`` with sudo on the master, in one round trip, over ``fleet`` or a connection of its own;
    the result and the round trips counted."""
    own = fleet is None
    fleet = fleet or Fleet.connect(inventory, [host], policy=policy)
    try:
        t = fleet.transports[host]
        return t.run(script, sudo=True, timeout=TIMEOUT), t.round_trips
    finally:
        if own:
            fleet.close()


def save_backup(inventory: Inventory, plan: BackupPlan, matrix: Matrix, framed: str, when: datetime,
                output: Path | None, trips: int) -> BackupResult:
    """A backup script's framed output (taken now, or kept by the timer) checked and written as the file."""
    node = parse_output(plan.host, framed)
    _check_version(plan, matrix, node.version)
    files = payload_files(plan.host, node.payload, plan.stores)
    manifest = manifest_for(plan, node, files, cluster=inventory.cluster_name,
                            address=inventory.master.address, created=when)
    data = pack(manifest, files, when)
    path = output or default_output(inventory, when)
    write_backup(path, data)
    return BackupResult(path, len(data), manifest, trips)
