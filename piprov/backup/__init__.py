"""`piprov backup`: a consistent copy of the master's etcd, on the controller, with a manifest.

The commands per etcd line (which stores, which etcdctl) come from
``versions.etcd.backup_stores`` (playbooks/versions.yaml, cited); how to reach
etcd's data from the playbook's ``backup`` of the etcd component. ``command``
builds the one node script and reads its framed output (pure), ``archive``
packs and verifies the file (pure), ``run`` takes a backup over the master's
transport and writes it with ``localfs.atomic_write``, mode 0600.
"""

from piprov.backup.archive import FORMAT, Manifest, verify_backup
from piprov.backup.command import BackupPlan, backup_plan, parse_output
from piprov.backup.run import BackupResult, default_output, take_backup

__all__ = ["FORMAT", "BackupPlan", "BackupResult", "Manifest", "backup_plan", "default_output", "parse_output",
           "take_backup", "verify_backup"]
