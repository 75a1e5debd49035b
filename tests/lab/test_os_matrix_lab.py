"""A mixed fleet (issue 14): `piprov up` on one node of each Debian release the lab has.

pi1 (rpi-master) bookworm, the release every other lab test runs; the workers bullseye
(systemd 247, coreutils 8.32, docker 20.10.5) and trixie (systemd 257, coreutils 9.7,
docker 26.1.5). The first boot of a release builds its image (~40 s each, cached after).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
from labkit import LabCluster, wait_for

from piprov_lab.lab import Lab

pytestmark = pytest.mark.lab

RELEASES = {"pi1": ("bookworm", "12."), "pi2": ("bullseye", "11."), "pi3": ("trixie", "13.")}


def test_a_mixed_fleet_comes_up_ready_and_a_second_plan_changes_nothing(
    lab_factory: Callable[..., Lab], tmp_path: Path
) -> None:
    lab = lab_factory("osm", nodes=3, releases=[r for r, _ in RELEASES.values()])
    nodes: list[dict[str, object]] = lab.status()["nodes"]  # type: ignore[assignment]
    assert {n["name"]: n["os"] for n in nodes} == {k: r for k, (r, _) in RELEASES.items()}
    for node, (_, version) in RELEASES.items():
        assert lab.exec(node, "cat /etc/debian_version").stdout.startswith(version)
    inv = tmp_path / "inventory.yaml"
    inv.write_text(lab.inventory_yaml())
    c = LabCluster(lab, inv)
    up = c.piprov("up")
    assert up.returncode == 0, up.stderr[-3000:]

    def ready() -> bool:
        p = c.kubectl("get", "nodes", "-o", "json")
        conds = [{x["type"]: x["status"] for x in n["status"].get("conditions", [])} for n in
                 (json.loads(p.stdout)["items"] if p.returncode == 0 else [])]
        return len(conds) == 3 and all(x.get("Ready") == "True" for x in conds)

    wait_for("every node Ready", ready, 60)
    plan = c.piprov("plan")
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]
    # A node keeps its release through a power cut and a re-flash.
    lab.kill("pi3")
    lab.start("pi3")
    lab.replace("pi2")
    for node in ("pi2", "pi3"):
        assert lab.exec(node, "cat /etc/debian_version").stdout.startswith(RELEASES[node][1])
