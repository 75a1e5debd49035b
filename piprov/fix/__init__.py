"""`piprov check --fix`: the findings piprov mends by editing files on the node (plan: pure; command: the
one script per node), and the run (apply on every node at once, then the reboots one node at a time,
the rolling way: drain, reboot, the node back with a new boot, Ready, uncordon)."""

from piprov.fix.plan import NodeFix, plan_fix
from piprov.fix.run import FixReport, fix_fleet

__all__ = ["FixReport", "NodeFix", "fix_fleet", "plan_fix"]
