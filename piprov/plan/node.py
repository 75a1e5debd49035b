"""Planning one node: for every component in graph order, its files, units and etcd keys."""

from __future__ import annotations

from piprov.facts.model import NodeFacts
from piprov.plan.daemonconfig import check_daemon_configs
from piprov.plan.desired import DesiredNode
from piprov.plan.dropins import plan_dropins
from piprov.plan.files import plan_file
from piprov.plan.hostname import plan_hostname
from piprov.plan.model import RECORD, ComponentPlan, EtcdKeyChange, NodePlan
from piprov.plan.owned import plan_owned


def plan_node(desired: DesiredNode, facts: NodeFacts) -> NodePlan:
    """The changes that make the node as ``desired``; pure."""
    check_daemon_configs(desired, facts)
    plans: list[ComponentPlan] = []
    restarting: dict[str, str] = {}  # every unit (re)started so far, in graph order -> "restarts"/"starts"
    for comp, units in desired.units.items():
        cp = _plan_component(desired, facts, comp, units, restarting)
        restarting.update(dict.fromkeys(cp.restart, "restarts"))
        restarting.update({u: "starts" for u in cp.start if u not in restarting})
        plans.append(cp)
    return NodePlan(
        node=desired.name,
        address=desired.node.address,
        hostname_change=plan_hostname(desired.hostname, facts),
        components=plans,
        desired=desired,
        owned=plan_owned(desired, facts.file(RECORD)),
    )


def _plan_component(
    desired: DesiredNode, facts: NodeFacts, component: str, units: list[str], restarting: dict[str, str]
) -> ComponentPlan:
    cp = ComponentPlan(component)
    triggered = _plan_files(cp, desired, facts)
    _plan_dropins(cp, desired, facts, units, triggered)
    _plan_units(cp, desired, facts, units, triggered)
    _plan_cascades(cp, desired, restarting)
    _plan_etcd(cp, desired, facts)
    if not cp.changed:
        cp.reasons = ["no change: files, units and keys as desired"]
    return cp


def _plan_files(cp: ComponentPlan, desired: DesiredNode, facts: NodeFacts) -> list[str]:
    """The component's file changes; returns the units whose trigger files changed."""
    triggered: list[str] = []
    for df in desired.files_for(cp.component):
        change = plan_file(df, facts.file(df.path))
        if change is None:
            continue
        cp.files.append(change)
        cp.reasons.append(f"{df.path}: {change.reason}")
        if change.content_changed:
            triggered.extend(u for u in df.restarts if u not in triggered)
            if df.is_unit_file:
                cp.daemon_reload = True
    return triggered


def _plan_dropins(cp: ComponentPlan, desired: DesiredNode, facts: NodeFacts, units: list[str],
                  triggered: list[str]) -> None:
    """Drop-ins overriding the component's units: removed, and the units restart without them."""
    for u in units:
        unit_file = next((f for f in desired.files if f.path == f"/etc/systemd/system/{u}"), None)
        if unit_file is None or not facts.dropins.get(u):
            continue
        removals = plan_dropins(u, unit_file.content.decode(), facts.dropins[u], facts.files, desired.name)
        for r in removals:
            cp.remove.append(r)
            cp.reasons.append(f"{r.path}: {r.reason}")
            cp.daemon_reload = True
            if u not in triggered:
                triggered.append(u)


def _plan_units(cp: ComponentPlan, desired: DesiredNode, facts: NodeFacts, units: list[str],
                triggered: list[str]) -> None:
    for u in units:
        uf = facts.unit(u)
        if uf.enabled in ("masked", "masked-runtime"):
            cp.unmask.append(u)
            cp.reasons.append(f"{u} is masked: unmask it (piprov manages it)")
        if not uf.is_enabled:
            cp.enable.append(u)
            state = "not installed" if uf.enabled == "not-found" else uf.enabled
            cp.reasons.append(f"{u} is {state}: enable it so that it returns after a reboot")
        if uf.is_failed:
            cp.restart.append(u)
            cp.reasons.append(f"{u} has failed: restart it")
        elif u in triggered:
            changed_files = [f for f in cp.files if u in _restarts_of(desired, f.path)]
            removed = [r.path for r in cp.remove if r.unit == u]
            # An inactive unit whose file *changed* (not appeared) may be
            # about to start with the old file (a start job queued at boot):
            # restart, which starts it if it is down and replaces it if not.
            if uf.is_active or uf.is_transient or removed or any(f.old_sha256 is not None for f in changed_files):
                cp.restart.append(u)
                changed = [f.path for f in changed_files] + removed
                cp.reasons.append(f"{u}: restart, {', '.join(changed)} changed")
            else:
                cp.start.append(u)
                cp.reasons.append(f"{u} is {uf.active}: start it")
        elif not uf.is_active and not uf.is_transient:
            cp.start.append(u)
            cp.reasons.append(f"{u} is {uf.active}: start it")


def _plan_cascades(cp: ComponentPlan, desired: DesiredNode, restarting: dict[str, str]) -> None:
    """Restart the component's units whose requirement piprov restarts or starts (the playbook's ``cascade``).

    systemd propagates no restart along ``Wants=``: the plan does, each with
    its reason. Graph order makes it transitive (flannel -> docker -> kubelet).
    A unit being started anyway needs no restart: it starts on the new state.
    A requirement piprov *starts* (it was inactive) cascades as one it
    restarts (it had failed) does: either way it comes up anew, and the
    state at the instant of the facts says nothing about what it comes up
    with. E.g. flanneld v0.5.5 reuses its lease only while etcd still holds
    it (flannel v0.5.5 subnet/etcd.go tryAcquireLease, subnetTTL 24 h): a
    flannel stopped long enough gets another subnet, and a docker still
    running on the old one must restart in both cases.
    """
    for cascade in (c for c in desired.cascades if c.component == cp.component):
        causes = [u for u in cascade.on if u in restarting]
        if not causes:
            continue
        for u in cascade.units:
            if u in cp.restart or u in cp.start:
                continue
            cp.restart.append(u)
            why = ", ".join(f"{c} {restarting[c]}" for c in causes)
            cp.reasons.append(f"{u}: restart, {why} ({cascade.reason})")


def _plan_etcd(cp: ComponentPlan, desired: DesiredNode, facts: NodeFacts) -> None:
    if not desired.etcdctl:
        return
    for key in (k for k, owner in desired.etcd_owners.items() if owner == cp.component):
        value = desired.etcd_keys[key]
        current = facts.etcd_keys.get(key)
        if current is not None and current.state == "ok" and (current.value or "").strip() == value.strip():
            continue
        if current is None or current.state == "unavailable":
            why = "etcd did not answer when facts were read: written once etcd is healthy"
            old = None
        elif current.state == "missing":
            why = "key missing"
            old = None
        else:
            why = "value differs"
            old = current.value
        cp.etcd_keys.append(EtcdKeyChange(key=key, value=value, old_value=old, reason=why, etcdctl=desired.etcdctl))
        cp.reasons.append(f"etcd key {key}: {why}")


def _restarts_of(desired: DesiredNode, path: str) -> tuple[str, ...]:
    return next((f.restarts for f in desired.files if f.path == path), ())
