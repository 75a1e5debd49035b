"""`piprov node ...`: work on one node of a running cluster."""

from __future__ import annotations

import click


@click.group("node")
def node() -> None:
    """Add, drain, remove or re-key one node without taking the cluster down.

    \b
      piprov node add rpi-node-3 --address 192.168.1.103   join a new Pi
      piprov node drain rpi-node-1                          move its pods away
      piprov node uncordon rpi-node-1                       let pods come back
      piprov node remove rpi-node-1                         drain, stop, forget
      piprov node forget-key rpi-node-1                     after re-flashing its card
    """
