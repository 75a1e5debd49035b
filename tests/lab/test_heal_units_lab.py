"""The units wait and retry instead of failing for good (issue 18), on a 2-node lab.

The reproduction from the issue, on a worker: flannel and what runs on it
stopped, flannel's next start made to fail once (its /run/flannel directory
replaced by a file for 4 s), then the kubelet and the proxy started. With
``Requires=`` edges systemd failed the queued start jobs of docker and the
kubelet with result "dependency" and never retried them: docker.service stayed
inactive and k8s-worker.service failed until the next `piprov up`. Now every
unit comes back by itself and the Node is Ready again, with no piprov run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from labkit import LabCluster, wait_for

from piprov_lab.lab import Lab

pytestmark = pytest.mark.lab

WORKER_UNITS = ("docker-bootstrap.service", "k8s-flannel.service", "docker.service",
                "k8s-worker.service", "k8s-proxy.service")


class Cluster(LabCluster):
    def ready(self) -> dict[str, bool]:
        p = self.kubectl("get", "nodes", "-o", "json")
        if p.returncode != 0:
            return {}
        out: dict[str, bool] = {}
        for n in json.loads(p.stdout)["items"]:
            conds = {c["type"]: c["status"] for c in n["status"].get("conditions", [])}
            out[n["metadata"]["name"]] = conds.get("Ready") == "True"
        return out

    def states(self, node: str) -> dict[str, str]:
        p = self.lab.exec(node, ["systemctl", "is-active", *WORKER_UNITS], check=False)
        return dict(zip(WORKER_UNITS, p.stdout.split()))


@pytest.fixture(scope="module")
def cluster(lab_factory: Callable[..., Lab], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    lab = lab_factory("heal", nodes=2)
    inv = tmp_path_factory.mktemp("heal") / "inventory.yaml"
    inv.write_text(lab.inventory_yaml())
    c = Cluster(lab, inv)
    p = c.piprov("up")
    assert p.returncode == 0, p.stderr[-3000:]
    yield c
    lab.down()


def _heal_report(cluster: Cluster, node: str) -> str:
    p = cluster.lab.exec(node, "systemctl list-jobs --no-legend; journalctl -b --no-pager -o cat -n 30 "
                         "-u k8s-flannel -u docker -u k8s-worker -u k8s-proxy", check=False)
    return f"{cluster.states(node)}\n{p.stdout[-4000:]}"


def test_a_failed_flannel_start_does_not_leave_docker_and_the_kubelet_down(cluster: Cluster) -> None:
    worker = cluster.lab.nodes[1]
    lab = cluster.lab
    # What `systemctl stop k8s-flannel.service` stopped with the Requires= units.
    lab.exec(worker.name, "systemctl stop k8s-worker.service k8s-proxy.service docker.service k8s-flannel.service")
    # flannel's next start fails: its ExecStartPre cannot make /run/flannel.
    lab.exec(worker.name, "rm -rf /run/flannel && touch /run/flannel")
    lab.exec(worker.name, "systemctl start --no-block k8s-worker.service k8s-proxy.service")
    time.sleep(4)  # the cause lasts 4 s, as in the issue
    lab.exec(worker.name, "rm -f /run/flannel")
    cause_removed = time.monotonic()
    try:
        wait_for("every unit on the worker active",
                 lambda: set(cluster.states(worker.name).values()) == {"active"}, 180, 2)
        wait_for("the worker Ready", lambda: cluster.ready().get(worker.ip), 180, 2)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{_heal_report(cluster, worker.name)}") from None
    print(f"healed {time.monotonic() - cause_removed:.1f} s after the cause was removed")
    # Nothing left for piprov to do.
    p = cluster.piprov("plan")
    assert p.returncode == 0, p.stdout[-3000:]


def test_a_second_up_changes_nothing(cluster: Cluster, tmp_path: Path) -> None:
    p = cluster.piprov("up", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(p.stdout)
    assert report["changed"] is False, report
