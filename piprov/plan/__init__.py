"""The plan: desired state + facts -> ordered changes per node, each with a reason.

Pure functions, no I/O: this package reads no file and talks to no node
(``piprov.provision`` renders the desired state and reads the facts first). For
every component on a node, in graph order, the plan lists the files to write
(with unified diffs), whether systemd must reload, the units to enable, restart
(a trigger file changed, or the unit failed) and start (inactive), and the etcd
keys to write once the component is healthy. When there is nothing to do it
says so, and why. What the node must do about it comes as typed actions
(:mod:`piprov.plan.actions`); :mod:`piprov.shell.script` turns them into shell.

Rooms: ``desired`` (the input), ``model`` (the plan), ``actions``, ``files``,
``hostname``, ``owned`` (what piprov wrote on a node and no longer needs:
its record and the prune) and ``node`` (the planner).
"""

from piprov.plan.actions import (
    Action,
    DisableUnits,
    EtcdSet,
    RemoveFile,
    RemoveStaleTemps,
    SetHostname,
    Systemctl,
    WriteFile,
)
from piprov.plan.desired import DesiredFile, DesiredNode
from piprov.plan.files import MAX_DIFF_LINES, plan_file, unified_diff
from piprov.plan.hostname import plan_hostname
from piprov.plan.model import (
    RECORD,
    ComponentPlan,
    EtcdKeyChange,
    FileChange,
    HostnameChange,
    MasterMove,
    NodePlan,
    OwnedChange,
    Plan,
    Removal,
)
from piprov.plan.node import plan_node

__all__ = [
    "Action", "DisableUnits", "EtcdSet", "RemoveFile", "RemoveStaleTemps", "SetHostname", "Systemctl", "WriteFile",
    "DesiredFile", "DesiredNode", "MAX_DIFF_LINES", "plan_file", "unified_diff", "plan_hostname",
    "ComponentPlan", "EtcdKeyChange", "FileChange", "HostnameChange", "NodePlan", "Plan", "plan_node",
    "RECORD", "OwnedChange", "Removal", "MasterMove",
]
