"""Latency and loss for lab nodes (this kernel has no tc netem)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from piprov_lab.errors import LabError
from piprov_lab.state import LabState, NodeState

if TYPE_CHECKING:
    from piprov_lab.lab import Lab


def apply(lab: Lab, s: LabState, n: NodeState, rtt_ms: float, loss_pct: float) -> None:
    if rtt_ms or loss_pct:
        raise LabError("lab netem is not implemented yet", host=n.name)
