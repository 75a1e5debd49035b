"""`piprov reset`: a node back to what a freshly flashed one has, then an audit of what is left.

Rooms: ``target`` (pure: the playbooks' components, their ``leaves`` and the
node's record -> what to stop, remove and look for, ``ResetTarget``),
``command`` (the ONE script that resets and then audits a node), ``parse``
(its output -> ``NodeReset``, strict), ``run`` (the procedure across the
fleet: drain and Node objects through the API, the nodes in parallel).
"""

from piprov.reset.model import KINDS, Leftover, NodeReset, ResetTarget, Stage
from piprov.reset.run import ResetReport, reset_cluster

__all__ = ["KINDS", "Leftover", "NodeReset", "ResetTarget", "Stage", "ResetReport", "reset_cluster"]
