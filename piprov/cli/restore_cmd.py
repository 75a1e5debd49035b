"""`piprov restore FILE`: the master's etcd back from a `piprov backup` file, then `piprov up`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from piprov.cli.app import EXIT_ERROR, EXIT_USAGE, ExitWith, err, inventory_option, out, trust_option
from piprov.inventory.model import HostKeyPolicy

if TYPE_CHECKING:
    from piprov.restore import RestoreReport


@click.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE")
@inventory_option
@trust_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option("--json", "as_json", is_flag=True, help="The steps, the manifest and the up run as JSON on stdout.")
def restore_cmd(file: Path, inventory_path: Path, policy: HostKeyPolicy | None, yes: bool, as_json: bool) -> None:
    """Put the cluster's etcd back on the inventory's master from a `piprov backup` FILE, then
    bring up the rest of the stack: the way back when the master's SD card died.

    \b
    A re-flashed master has a new host key, which piprov refuses. First:
      piprov node forget-key MASTER
      piprov restore FILE --trust-new-hosts      (pins the new key, as ssh's tofu)

    \b
    Steps, each reported:
      1 verify     FILE against its manifest (every file's sha256, the checksum);
                   refused: a backup of another cluster, of an etcd line the
                   inventory does not run, or of etcd 3.x (its objects are in the v3
                   snapshot; not restored yet: `etcdctl snapshot restore` by hand)
      2 bootstrap  what etcd needs on the master by the playbooks (the bootstrap
                   docker daemon), applied as `piprov up` would, nothing else
      3 etcd       ONE script on the master (sudo): k8s-etcd stopped, the backup's
                   v2 store unpacked beside the data dir, etcd started once on it
                   with --force-new-cluster on 127.0.0.1 only until healthy (etcd's
                   admin guide, "Restoring a backup"), then renamed into place; the
                   old data dir is moved aside (DIR.before-restore.TIME), never deleted
      4 up         `piprov up`: etcd on the restored store, the rest of the master;
                   workers keep their flannel subnets (their leases are in etcd) and
                   their Node objects; every object (replication controllers, pods)
                   is back, and the controllers start the pods again

    \b
    Writes made after the backup was taken are lost. Exit 0 when every step
    succeeded, 1 on an error (naming the step and the master), 64 without --yes
    and no terminal to ask on.
    """
    from piprov.cli.cluster import _load, run_up
    from piprov.restore import restore

    inventory, graph = _load(inventory_path)
    master = inventory.master.name
    if not yes:
        if not sys.stdin.isatty():
            err.print(f"[red]error:[/] restore replaces etcd's store on {escape(master)} with {escape(str(file))}; "
                      "pass --yes to confirm without a terminal")
            raise ExitWith(EXIT_USAGE)
        click.confirm(f"Replace etcd's store on {master} with {file} (writes since the backup are lost)?",
                      abort=True, err=True)
    t0 = time.monotonic()
    report = restore(inventory, file, policy=policy, say=lambda s: err.print(f"[dim]{escape(s)}[/]"))
    for i, s in enumerate(report.steps, 1):
        err.print(f"[green]✓[/] {i} {s.name:<9} {escape(s.detail)} [dim]({s.seconds:.1f} s)[/]")
    t4 = time.monotonic()
    err.print("[dim]4 up: the rest of the stack, as `piprov up`[/]")
    ok, up_doc = run_up(inventory, graph, policy, as_json=as_json, show_plan=False, health_timeout=None,
                        skip_checks=False, restored=True)
    up_s = time.monotonic() - t4
    err.print(f"{'[green]✓[/]' if ok else '[red]✗[/]'} 4 up        {'done' if ok else 'failed'} [dim]({up_s:.1f} s; "
              f"restore in all {time.monotonic() - t0:.1f} s)[/]")
    if as_json:
        out.print_doc(_json(file, report, ok, up_s, up_doc))
    if not ok:
        raise ExitWith(EXIT_ERROR)


def _json(file: Path, report: RestoreReport, ok: bool, up_s: float, up_doc: dict[str, Any]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"step": s.name, "ok": True, "detail": s.detail, "seconds": round(s.seconds, 1)}
                                   for s in report.steps]
    steps.append({"step": "up", "ok": ok, "seconds": round(up_s, 1), "up": up_doc})
    return {"file": str(file), "ok": ok, "manifest": dict(report.manifest.data), "steps": steps}
