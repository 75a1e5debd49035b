"""Fixtures that boot virtual Pi labs for tests (root only; see piprov_lab.lab.Lab).

Reuse them from any test under tests/lab/:

``lab`` (session scope)
    One shared lab for the whole session: 3 nodes + 2 decoys, booted on first
    use, taken down when the session ends. Treat it as read-only (no kill,
    partition, reboot, replace, hostname changes): every module shares it. Nodes:
    ``lab.nodes`` (pi1 = rpi-master, pi2, pi3); ``lab.inventory_yaml()``
    gives an inventory pointing at them (strict host keys).

``lab_factory`` (session scope)
    ``lab_factory("mine", nodes=2, decoys=0, rtt_ms=0, profile="seed") -> Lab`` boots a lab of
    your own (use it when a test breaks nodes or provisions them). Each lab is
    taken down at session end; call ``lab.down()`` earlier to free memory.
    Names are made unique per pytest process, so parallel sessions (other
    people on this machine, CI) never share or tear down each other's labs.

``lab_inventory`` (function scope)
    Writes ``lab.inventory_yaml()`` of the shared lab to a temp file and
    returns its path.

A lab boots in about a second once the node image is cached (the first build
is ~40 s and happens inside the first fixture that needs it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from piprov_lab.lab import Lab

LabFactory = Callable[..., Lab]


def _unique(name: str) -> str:
    # Short: a lab name is part of netns and hostnames; pid keeps sessions apart.
    return f"t{os.getpid()}-{name}"[:31]


@pytest.fixture(scope="session")
def lab_factory() -> Iterator[LabFactory]:
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (they boot containers and network namespaces)")
    made: list[Lab] = []

    def make(name: str, nodes: int = 3, decoys: int = 0, rtt_ms: float = 0, **kw: Any) -> Lab:
        lab = Lab(_unique(name))
        lab.down()  # whatever an earlier process with the same pid left behind

        made.append(lab)
        lab.up(nodes=nodes, decoys=decoys, rtt_ms=rtt_ms, **kw)
        return lab

    try:
        yield make
    finally:
        for lab in made:
            lab.down()


@pytest.fixture(scope="session")
def lab(lab_factory: LabFactory) -> Lab:
    return lab_factory("shared", nodes=3, decoys=2)


@pytest.fixture
def lab_inventory(lab: Lab, tmp_path: Path) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(lab.inventory_yaml())
    return path
