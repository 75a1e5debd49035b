"""`check --fix` over the fleet: every node's fixes at once (one script each), then the reboots they need,
one node at a time so the cluster keeps running: drain, reboot, back with a new boot id, Ready, uncordon.

A node whose fix or reboot fails is that node's error; after a failed reboot no other node goes down
(the same rule as `up --rolling`: a bad batch stops the rollout).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from piprov.check.model import NodeCheck
from piprov.errors import ClusterError, FixError, PiprovError, TransportError
from piprov.fix.command import fix_script
from piprov.fix.plan import NodeFix, plan_fix
from piprov.fleet import Fleet, parallel
from piprov.inventory.model import Inventory, Node
from piprov.kube.client import KubeApi, api_or_none, k8s_name, wait_ready
from piprov.kube.discovery import current_token, forget, ready_reader
from piprov.kube.drain import drain, uncordon
from piprov.shell.script import run_script

Say = Callable[[str], None]
FIX_TIMEOUT = 120.0
BOOT_TIMEOUT = 300.0  # a Pi 1 with a full card takes a few minutes to boot
DRAIN_TIMEOUT = 300.0
_BOOT_ID = "cat /proc/sys/kernel/random/boot_id"


@dataclass
class FixReport:
    """Per node its fixes; which were made and which nodes rebooted; per node what went wrong."""

    fixes: dict[str, NodeFix]
    applied: list[str] = field(default_factory=list)
    rebooted: list[str] = field(default_factory=list)
    errors: dict[str, PiprovError] = field(default_factory=dict)


def fix_fleet(inventory: Inventory, checks: Sequence[NodeCheck], fleet: Fleet, *, say: Say,
              boot_timeout: float = BOOT_TIMEOUT) -> FixReport:
    """Make the fixes of every checked node, then reboot the ones that need it, workers first, the master last."""
    report = FixReport({c.node: plan_fix(c) for c in checks if c.facts is not None})
    edits = [n for n, f in report.fixes.items() if f.cmdline is not None or f.swap_off or f.iptables_legacy]

    def apply(name: str) -> None:
        out = run_script(fleet.transports[name], fix_script(report.fixes[name]), timeout=FIX_TIMEOUT)
        if not out.ok:
            raise FixError(f"the fixes failed: {out.detail or 'no output'}", host=name,
                           hint="nothing was rebooted; `piprov check` shows what is left")

    for name, result in parallel(edits, apply).items():
        if isinstance(result, PiprovError):
            report.errors[name] = result
        else:
            report.applied.append(name)
    order = sorted((n for n in inventory.nodes if report.fixes.get(n.name, NodeFix(n.name)).reboot
                    and n.name not in report.errors), key=lambda n: n.role == "master")
    api = api_or_none(inventory)
    for node in order:
        try:
            reboot_node(inventory, fleet, node, api, say=say, boot_timeout=boot_timeout)
            report.rebooted.append(node.name)
        except PiprovError as e:
            report.errors[node.name] = e
            for rest in order[order.index(node) + 1:]:
                report.errors[rest.name] = FixError("not rebooted: the reboot of an earlier node failed",
                                                    host=rest.name, hint="run `piprov check --fix` again")
            break
    return report


def reboot_node(inventory: Inventory, fleet: Fleet, node: Node, api: KubeApi | None, *, say: Say,
                boot_timeout: float = BOOT_TIMEOUT) -> None:
    """Drain (where it is in the cluster), reboot, wait for its new boot and Ready, uncordon."""
    kname = k8s_name(node)
    member = api is not None and _has_node(api, kname)
    token = None
    if member and api is not None:
        say(f"{node.name}: draining before its reboot")
        drain(api, kname, timeout=DRAIN_TIMEOUT, keep_cordoned=True, say=say)
        token = current_token(api, kname)
    t = fleet.transports[node.name]
    boot = _boot_id(node, t.run(_BOOT_ID, timeout=30).stdout)
    say(f"{node.name}: rebooting")
    try:  # --no-block: the job is queued and the command returns before sshd goes away
        t.run("systemctl reboot --no-block", sudo=True, timeout=30)
    except TransportError:
        pass  # the connection went first: the reboot is under way all the same
    t.close()
    _wait_new_boot(fleet, node, boot, boot_timeout)
    say(f"{node.name}: booted again")
    if not member or api is None:
        return
    if node.role == "master":
        forget(api.base)  # the apiserver came back: its discovery is read again
    ok, seen = wait_ready(ready_reader(api, kname), boot_timeout, newer_than=token)
    if not ok:
        raise FixError(f"not Ready {boot_timeout:g} s after its reboot: {seen}", host=node.name,
                       hint="it stays cordoned; `piprov status` shows which component is down")
    uncordon(api, kname, only_ours=True)


def _wait_new_boot(fleet: Fleet, node: Node, old: str, timeout: float) -> None:
    """Until the node answers SSH with another boot id (the old one answering: the reboot has not begun)."""
    t = fleet.transports[node.name]
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            now = _boot_id(node, t.run(_BOOT_ID, timeout=10).stdout)
            if now != old:
                return
            last = "still the old boot"
        except (TransportError, FixError) as e:
            last = e.message
            t.close()
        time.sleep(1.0)  # between connection attempts to a node that is down, not a wait standing in for a check
    raise FixError(f"did not come back from its reboot within {timeout:g} s ({last})", host=node.name,
                   hint="look at the node's console or power; `piprov check` once it answers")


def _boot_id(node: Node, out: str) -> str:
    word = out.strip()
    if len(word) != 36 or word.count("-") != 4:
        raise FixError(f"unreadable boot id {word[:40]!r}", host=node.name)
    return word



def _has_node(api: KubeApi, kname: str) -> bool:
    try:
        return api.node(kname) is not None
    except ClusterError:
        return False
