"""`piprov backup`: the master's etcd, copied to the controller with a manifest; `--verify FILE` checks one."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from piprov.cli.app import inventory_option, out, trust_option
from piprov.inventory.model import HostKeyPolicy


@click.command("backup")
@inventory_option
@trust_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write the backup here (default: INVENTORY.backups/<cluster>-<UTC time>.tar.gz).")
@click.option("--verify", "verify", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE",
              help="Do not back up: check FILE against its manifest (every file's sha256 and the checksum).")
@click.option("--fetch", is_flag=True,
              help="Do not back up now: copy the newest backup the master's timer kept (inventory `backup:`).")
@click.option("--json", "as_json", is_flag=True, help="The file and its manifest as JSON on stdout.")
def backup_cmd(inventory_path: Path, policy: HostKeyPolicy | None, output: Path | None, verify: Path | None,
               fetch: bool, as_json: bool) -> None:
    """Back up the master's etcd (the whole cluster: flannel's network and leases, every API object)
    into one file on the controller.

    \b
    What it holds depends on the inventory's etcd line (playbooks/versions.yaml,
    `backup_stores`; `piprov versions` shows the line):
      etcd 2.x      the v2 store: `etcdctl backup`, a data dir (etcd/v2/)
      etcd 3.3-3.5  the v2 store the same way (ETCDCTL_API=2: flannel's keys, and
                    the 1.1 apiserver's) and the v3 store by `etcdctl snapshot save`
                    (etcd/v3.db: the 1.18 apiserver's objects). A v3 snapshot alone
                    would miss every v2 key.
    Both run on the live etcd, one command on the master (sudo): etcd's own
    etcdctl in its container writes into a temp dir under etcd's data dir,
    removed however the command ends.

    \b
    The file is a tar.gz, mode 0600 (etcd holds the cluster's secrets), written
    atomically: manifest.json (cluster, master, time, etcd version and line,
    the commands run, each file's sha256, the checksum) and etcd/. Check one
    with `piprov backup --verify FILE`, or by hand:
      tar -xzf FILE && jq -r '.files | to_entries[] | "\\(.value.sha256)  \\(.key)"' manifest.json | sha256sum -c
    A restore starts etcd on etcd/v2 with --force-new-cluster (and restores
    etcd/v3.db with `etcdctl snapshot restore`): the manifest's `restore` says so.

    \b
    With `backup: {every: 6h, keep: 7}` in the inventory, `piprov up` installs a
    timer on the master that takes the same backup and keeps the newest N in
    /var/lib/piprov/backups/<UTC time>/ there; `--fetch` copies the newest one
    (one command; checked against the checksum the node recorded, refused when
    cut short or altered) into the same kind of file.

    Exit 0 when written (or verified), 1 on an error, naming the master.
    """
    from piprov.backup import take_backup, verify_backup
    from piprov.inventory import load

    if verify is not None:
        manifest = verify_backup(verify.read_bytes(), str(verify))
        if as_json:
            out.print_doc({"file": str(verify), "verified": True, "manifest": dict(manifest.data)})
        else:
            out.print(f"{escape(str(verify))}: {len(manifest.files)} files match the manifest "
                      f"({escape(manifest.checksum)})")
        return
    if fetch:
        from piprov.backup.fetch import fetch_backup

        res = fetch_backup(load(inventory_path), output, policy=policy)
    else:
        res = take_backup(load(inventory_path), output, policy=policy)
    m = res.manifest.data
    if as_json:
        out.print_doc({"file": str(res.path), "size": res.size, "manifest": dict(m)})
        return
    out.print(f"{'fetched the backup the timer kept of' if fetch else 'backed up'} etcd {escape(m['etcd']['version'])} of cluster {escape(m['cluster'])} "
              f"({', '.join(m['etcd']['stores'])} store{'s' if len(m['etcd']['stores']) > 1 else ''}) "
              f"from {escape(m['master']['name'])} to {escape(str(res.path))} ({res.size} bytes, 0600)")
    out.print(f"  checksum {escape(res.manifest.checksum)}")
