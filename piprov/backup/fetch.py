"""`piprov backup --fetch`: the newest backup the master's timer kept, copied to the controller.

The timer (playbooks' etcd-backup component) keeps, per run, the framed output
of the very script `piprov backup` runs (:mod:`piprov.backup.command`) in
``KEPT_DIR/<UTC time>/backup``, written into a temp dir and renamed whole.
Fetching is one command: the newest such dir's name, then that output. It is
read by the same parser (:func:`~piprov.backup.command.parse_output`: the end
marker, the payload's sha256 as the node recorded it) and packed into the same
file as `piprov backup`, so a cut-short or tampered backup is refused.
"""

from __future__ import annotations

import re
import shlex
from datetime import datetime, timezone
from pathlib import Path

from piprov.backup.run import BackupResult, plan_backup, run_on_master, save_backup
from piprov.errors import BackupError
from piprov.fleet import Fleet
from piprov.graph import load_graph
from piprov.graph.versions import load_matrix
from piprov.inventory.model import HostKeyPolicy, Inventory

KEPT_DIR = "/var/lib/piprov/backups"
HEAD = "PIPROV-FETCH"
NAME_RE = re.compile(r"^(\d{8}T\d{6}Z)$")
NO_BACKUP = 3  # the fetch script's exit code when the master keeps none


def fetch_script(top: str = KEPT_DIR) -> str:
    """The newest kept backup's dir name (``HEAD NAME``), then its framed output."""
    q = shlex.quote(top)
    return "\n".join([
        f"n=$(ls {q} 2>/dev/null | grep -E '^[0-9]{{8}}T[0-9]{{6}}Z$' | sort | tail -n 1)",
        f'[ -n "$n" ] || {{ echo "no backup kept in {top}" >&2; exit {NO_BACKUP}; }}',
        f'echo "{HEAD} $n"',
        f'cat {q}/"$n"/backup',
    ]) + "\n"


def split_output(host: str, stdout: str) -> tuple[datetime, str]:
    """(the kept backup's UTC time, its framed output), or BackupError naming ``host``."""
    first, _, rest = stdout.partition("\n")
    word, _, name = first.partition(" ")
    m = NAME_RE.match(name)
    if word != HEAD or m is None:
        raise BackupError(f"unexpected output from the fetch script: {first[:80]!r}", host=host)
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc), rest


def fetch_backup(inventory: Inventory, output: Path | None = None, *, policy: HostKeyPolicy | None = None,
                 fleet: Fleet | None = None) -> BackupResult:
    """Copy the newest backup the master's timer kept into ``output`` (default: :func:`default_output`)."""
    graph, matrix = load_graph(), load_matrix()
    plan = plan_backup(inventory, graph, matrix)
    res, trips = run_on_master(inventory, plan.host, fetch_script(), policy=policy, fleet=fleet)
    if res.exit_code == NO_BACKUP:
        raise BackupError(f"the master keeps no backup in {KEPT_DIR}", host=plan.host,
                          hint="set `backup: {every: ..., keep: ...}` in the inventory and `piprov up`; "
                          "or take one now with `piprov backup`")
    if not res.ok:
        raise BackupError(f"the fetch failed on the master (exit {res.exit_code}): {res.tail() or 'no output'}",
                          host=plan.host)
    when, framed = split_output(plan.host, res.stdout)
    return save_backup(inventory, plan, matrix, framed, when, output, trips)
