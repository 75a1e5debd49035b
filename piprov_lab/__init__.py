"""The virtual Pi lab: Pi-like nodes on this machine for piprov's tests and demo.

Test infrastructure, not product: it may import :mod:`piprov`, never the
reverse. Nodes are systemd-nspawn containers booted from a cached Debian root
(bookworm, or bullseye or trixie: ``lab up --os``) that carries the HypriotOS
traits piprov relies on (user ``pirate``, ``/boot/occidentalis.txt``, avahi,
docker, Raspberry Pi MACs), each in its own network namespace on a per-lab
bridge. See :class:`piprov_lab.lab.Lab`.
"""

from piprov_lab.errors import LabError
from piprov_lab.lab import Lab, NodeInfo

__all__ = ["Lab", "LabError", "NodeInfo"]
