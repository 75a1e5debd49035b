"""The plan: desired state + facts -> ordered changes per node, each with a reason.

Pure functions, no I/O. For every component on a node, in graph order, the
plan lists the files to write (with unified diffs), whether systemd must
reload, the units to enable, restart (a trigger file changed, or the unit
failed) and start (inactive), and the etcd keys to write once the component is
healthy. When there is nothing to do it says so, and why.
"""

from __future__ import annotations

import difflib
import hashlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from piprov.errors import FactsError, PiprovError
from piprov.facts import BINARIES, OCCIDENTALIS, FileFacts, NodeFacts
from piprov.graph import ComponentGraph
from piprov.inventory.model import Inventory, Node
from piprov.render import DesiredFile, DesiredNode, desired_state, node_image_arch

MAX_DIFF_LINES = 400


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@dataclass(frozen=True)
class FileChange:
    path: str
    content: bytes
    mode: int
    owner: str
    group: str
    old_sha256: str | None  # None: the file does not exist
    new_sha256: str
    diff: str  # unified diff, or a one-line note when no diff can be shown
    reason: str
    component: str = ""

    @property
    def content_changed(self) -> bool:
        return self.old_sha256 != self.new_sha256

    @property
    def secret(self) -> bool:
        """Not world-readable: its content and diff stay out of plans and logs."""
        return not self.mode & 0o004

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "mode": f"{self.mode:04o}",
            "owner": f"{self.owner}:{self.group}",
            "old_sha256": self.old_sha256,
            "new_sha256": self.new_sha256,
            "reason": self.reason,
            "diff": None if self.secret else self.diff,
        }


@dataclass(frozen=True)
class EtcdKeyChange:
    key: str
    value: str
    old_value: str | None
    reason: str
    command: str  # run on the node (sudo) once the owning component is healthy

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "old_value": self.old_value, "reason": self.reason}


@dataclass(frozen=True)
class HostnameChange:
    """Set the hostname at once, no reboot.

    Apply ``files`` first (``/etc/hosts`` keeps ``127.0.1.1 NAME`` so that sudo
    does not stall on the new name), then run ``commands`` in order.
    """

    old: str
    new: str
    method: Literal["occidentalis", "hostnamectl"]
    files: list[FileChange]
    commands: list[str]
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "method": self.method,
            "reason": self.reason,
            "files": [f.to_json() for f in self.files],
            "commands": list(self.commands),
        }


@dataclass
class ComponentPlan:
    component: str
    files: list[FileChange] = field(default_factory=list)
    daemon_reload: bool = False
    unmask: list[str] = field(default_factory=list)
    enable: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)
    start: list[str] = field(default_factory=list)
    etcd_keys: list[EtcdKeyChange] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.files or self.daemon_reload or self.unmask or self.enable or self.restart or self.start or self.etcd_keys
        )

    def unit_commands(self, *, no_block: bool = True) -> list[str]:
        """systemctl commands to run after the files are in place, in order.

        Restarts go in ONE systemctl call: restarting a socket and its service
        must be one transaction. With ``no_block`` (the default) start and
        restart only queue the jobs: the component's health checks are the
        wait, with their timeouts and diagnostics. A blocking start of
        k8s-flannel.service would last until flannel has a lease, i.e. for
        ever when etcd is unreachable.
        """
        nb = " --no-block" if no_block else ""
        cmds: list[str] = []
        if self.unmask:
            cmds.append("systemctl unmask --quiet " + " ".join(self.unmask))
        if self.daemon_reload or self.unmask:
            cmds.append("systemctl daemon-reload")
        if self.enable:
            cmds.append("systemctl enable --quiet " + " ".join(self.enable))
        if self.restart:
            cmds.append(f"systemctl restart{nb} " + " ".join(self.restart))
        if self.start:
            cmds.append(f"systemctl start{nb} " + " ".join(self.start))
        return cmds

    def etcd_commands(self) -> list[str]:
        """Commands writing the component's etcd keys: run once it is healthy."""
        return [k.command for k in self.etcd_keys]

    def to_json(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "changed": self.changed,
            "reasons": list(self.reasons),
            "files": [f.to_json() for f in self.files],
            "daemon_reload": self.daemon_reload,
            "unmask": list(self.unmask),
            "enable": list(self.enable),
            "restart": list(self.restart),
            "start": list(self.start),
            "etcd_keys": [k.to_json() for k in self.etcd_keys],
        }


@dataclass
class NodePlan:
    node: str
    address: str
    hostname_change: HostnameChange | None
    components: list[ComponentPlan]
    desired: DesiredNode | None = field(default=None, repr=False, compare=False)

    @property
    def changed(self) -> bool:
        return self.hostname_change is not None or any(c.changed for c in self.components)

    def component(self, name: str) -> ComponentPlan:
        for c in self.components:
            if c.component == name:
                return c
        raise KeyError(name)

    @property
    def all_files(self) -> list[FileChange]:
        """Every file this node's plan writes: hostname files first, then by component."""
        head = self.hostname_change.files if self.hostname_change else []
        return [*head, *(f for c in self.components for f in c.files)]

    @property
    def reasons(self) -> list[str]:
        if not self.changed:
            return ["no change: every file, unit and key is as desired"]
        out: list[str] = []
        if self.hostname_change is not None:
            out.append(self.hostname_change.reason)
        for c in self.components:
            out.extend(f"{c.component}: {r}" for r in c.reasons if c.changed)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "address": self.address,
            "changed": self.changed,
            "hostname": self.hostname_change.to_json() if self.hostname_change else None,
            "components": [c.to_json() for c in self.components],
        }


@dataclass
class Plan:
    nodes: list[NodePlan]
    # node name -> why no plan could be made for it (unreachable, garbage facts)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(n.changed for n in self.nodes)

    def node(self, name: str) -> NodePlan:
        for n in self.nodes:
            if n.node == name:
                return n
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "nodes": [n.to_json() for n in self.nodes],
            "errors": dict(self.errors),
        }


# --------------------------------------------------------------------------
# Files


def unified_diff(path: str, old: bytes | None, new: bytes, old_size: int | None = None) -> str:
    """A unified diff of a file, or a one-line note when it cannot be shown."""
    if old is None and old_size is not None:
        return f"(old content of {path} not read: {old_size} bytes, larger than the facts limit)\n"
    try:
        old_text = "" if old is None else old.decode("utf-8")
        new_text = new.decode("utf-8")
    except UnicodeDecodeError:
        return f"(binary content of {path} differs)\n"
    lines = list(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile="/dev/null" if old is None else f"a{path}",
            tofile=f"b{path}",
        )
    )
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... ({len(lines) - MAX_DIFF_LINES} more diff lines)\n"]
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def plan_file(desired: DesiredFile, current: FileFacts) -> FileChange | None:
    """What to do about one managed file, or None when it is as desired."""
    if not current.exists:
        reason = "new file"
    elif not current.is_regular:
        reason = "exists but is not a regular file"
    elif current.sha256 != desired.sha256:
        reason = "content differs"
    else:
        drift = []
        if current.mode != desired.mode:
            drift.append(f"mode {current.mode or 0:04o} -> {desired.mode:04o}")
        if (current.owner, current.group) != (desired.owner, desired.group):
            drift.append(f"owner {current.owner}:{current.group} -> {desired.owner}:{desired.group}")
        if not drift:
            return None
        reason = ", ".join(drift)
    old_sha = current.sha256 if current.exists and current.is_regular else None
    content_differs = old_sha != desired.sha256
    if content_differs:
        diff = unified_diff(desired.path, current.content if old_sha else None, desired.content, current.size if old_sha else None)
    else:
        diff = ""
    return FileChange(
        path=desired.path,
        content=desired.content,
        mode=desired.mode,
        owner=desired.owner,
        group=desired.group,
        old_sha256=old_sha,
        new_sha256=desired.sha256,
        diff=diff,
        reason=reason,
        component=desired.component,
    )


# --------------------------------------------------------------------------
# Hostname


def _set_hosts_line(text: str, name: str) -> str:
    """/etc/hosts with ``127.0.1.1 name`` (the Debian convention), other lines kept."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        fields = line.split("#", 1)[0].split()
        if fields and fields[0] == "127.0.1.1":
            if name in fields[1:]:
                return text
            lines[i] = f"127.0.1.1\t{name}"
            return "\n".join(lines) + "\n"
    return text + ("" if text.endswith("\n") or not text else "\n") + f"127.0.1.1\t{name}\n"


def _set_occidentalis_hostname(text: str, name: str) -> str:
    """occidentalis.txt with ``hostname=name``, its other lines kept."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        key, sep, value = line.partition("=")
        if sep and key.strip() == "hostname":
            if value.strip() == name:
                return text
            lines[i] = f"hostname={name}"
            return "\n".join(lines) + "\n"
    return text + ("" if text.endswith("\n") or not text else "\n") + f"hostname={name}\n"


def _edit(facts: NodeFacts, path: str, new_text: str, *, default_mode: int = 0o644) -> FileChange | None:
    current = facts.file(path)
    new = new_text.encode("utf-8")
    if current.exists and current.sha256 == _sha(new):
        return None
    # Keep the file's own mode and owner: /boot is FAT on a Pi, where chmod fails.
    mode = current.mode if current.exists and current.mode is not None else default_mode
    owner = current.owner if current.exists and current.owner else "root"
    group = current.group if current.exists and current.group else "root"
    return FileChange(
        path=path,
        content=new,
        mode=mode,
        owner=owner,
        group=group,
        old_sha256=current.sha256 if current.exists else None,
        new_sha256=_sha(new),
        diff=unified_diff(path, current.content if current.exists else None, new, current.size),
        reason="new file" if not current.exists else "content differs",
        component="hostname",
    )


def _text_of(facts: NodeFacts, path: str) -> str:
    f = facts.file(path)
    if not f.exists:
        return ""
    if f.text is None:
        raise FactsError(
            f"cannot edit {path}: it is larger than the facts limit or not UTF-8 text", host=facts.host
        )
    return f.text


def plan_hostname(name: str, facts: NodeFacts) -> HostnameChange | None:
    """Hostname ``name`` on the node now and after reboot; None when already so."""
    hypriot = facts.is_hypriot
    files: list[FileChange] = []
    # /etc/hosts first: once the name changes, sudo resolves it on every call.
    for change in (
        _edit(facts, "/etc/hosts", _set_hosts_line(_text_of(facts, "/etc/hosts"), name)),
        _edit(facts, "/etc/hostname", name + "\n"),
        _edit(facts, OCCIDENTALIS, _set_occidentalis_hostname(_text_of(facts, OCCIDENTALIS), name))
        if hypriot
        else None,
    ):
        if change is not None:
            files.append(change)
    running_differs = facts.hostname != name
    if not files and not running_differs:
        return None
    q = shlex.quote(name)
    commands: list[str] = []
    if running_differs:
        commands.append(f"hostname {q}" if hypriot else f"hostnamectl set-hostname {q}")
        # avahi announces the name it started with; a restart re-announces (mDNS follows).
        commands.append("systemctl try-restart avahi-daemon.service 2>/dev/null || true")
    where = OCCIDENTALIS if hypriot else "hostnamectl"
    if running_differs:
        reason = f"hostname {facts.hostname} -> {name} (via {where})"
    else:
        reason = "hostname files out of date: " + ", ".join(f.path for f in files)
    return HostnameChange(
        old=facts.hostname,
        new=name,
        method="occidentalis" if hypriot else "hostnamectl",
        files=files,
        commands=commands,
        reason=reason,
    )


# --------------------------------------------------------------------------
# Components and nodes


def plan_node(desired: DesiredNode, facts: NodeFacts, graph: ComponentGraph) -> NodePlan:
    """The changes that make the node as ``desired``; pure."""
    role = desired.node.role
    plans: list[ComponentPlan] = []
    # Units that systemd restarts along with a given unit (they have Requires= on it).
    requirers: dict[str, list[str]] = {}
    for comp_name, units in desired.units.items():
        comp = graph.component(comp_name)
        for u in units:
            _, requires = graph.unit_dependencies(comp, role=role, unit=u)
            for r in requires:
                requirers.setdefault(r, []).append(u)

    for comp_name, units in desired.units.items():
        comp = graph.component(comp_name)
        cp = ComponentPlan(comp_name)
        triggered: list[str] = []
        for df in desired.files_for(comp_name):
            change = plan_file(df, facts.file(df.path))
            if change is None:
                continue
            cp.files.append(change)
            cp.reasons.append(f"{df.path}: {change.reason}")
            if change.content_changed:
                triggered.extend(u for u in df.restarts if u not in triggered)
                if df.is_unit_file:
                    cp.daemon_reload = True

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
                # An inactive unit whose file *changed* (not appeared) may be
                # about to start with the old file (a start job queued at boot):
                # restart, which starts it if it is down and replaces it if not.
                if uf.is_active or uf.is_transient or any(f.old_sha256 is not None for f in changed_files):
                    cp.restart.append(u)
                    changed = [f.path for f in changed_files]
                    cp.reasons.append(f"{u}: restart, {', '.join(changed)} changed")
                else:
                    cp.start.append(u)
                    cp.reasons.append(f"{u} is {uf.active}: start it")
            elif not uf.is_active and not uf.is_transient:
                cp.start.append(u)
                cp.reasons.append(f"{u} is {uf.active}: start it")

        # systemd propagates a restart along Requires=, transitively.
        also: set[str] = set()
        todo = list(cp.restart)
        while todo:
            for r in requirers.get(todo.pop(), []):
                if r not in also and r not in cp.restart:
                    also.add(r)
                    todo.append(r)
        if also:
            cp.reasons.append("systemd restarts with it (Requires=): " + ", ".join(sorted(also)))

        if comp.etcd_keys is not None and desired.etcdctl:
            for key in comp.etcd_keys.keys:
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
                cp.etcd_keys.append(
                    EtcdKeyChange(
                        key=key,
                        value=value,
                        old_value=old,
                        reason=why,
                        command=f"{desired.etcdctl} set {shlex.quote(key)} {shlex.quote(value)}",
                    )
                )
                cp.reasons.append(f"etcd key {key}: {why}")

        if not cp.changed:
            cp.reasons = ["no change: files, units and keys as desired"]
        plans.append(cp)

    return NodePlan(
        node=desired.name,
        address=desired.node.address,
        hostname_change=plan_hostname(desired.hostname, facts),
        components=plans,
        desired=desired,
    )


def _restarts_of(desired: DesiredNode, path: str) -> tuple[str, ...]:
    return next((f.restarts for f in desired.files if f.path == path), ())


def error_line(node: str, why: str) -> str:
    """A plan error as one line naming its node: most texts come from a
    PiprovError and already start with it, the others get it in front."""
    return why if why.startswith(node) else f"{node}: {why}"


def _with_hint(e: PiprovError, text: str) -> str:
    # Plan errors travel as text: keep the next step (e.g. `piprov node
    # forget-key NAME` for a changed host key) with the message.
    return f"{text} (hint: {e.hint})" if e.hint else text


def plan_cluster(
    inventory: Inventory,
    graph: ComponentGraph,
    facts: Mapping[str, NodeFacts | PiprovError],
    *,
    templates_dir: Path | None = None,
) -> Plan:
    """Plan every node of the inventory from its facts (keyed by node name).

    A node whose facts are missing or an error gets an entry in ``Plan.errors``
    and no plan: partial failure is data. Rendering errors (a broken template
    or inventory) concern every node and are raised.
    """
    nodes: list[NodePlan] = []
    errors: dict[str, str] = {}
    for node in inventory.nodes:
        planned = plan_one(inventory, graph, node, facts.get(node.name), templates_dir=templates_dir)
        if isinstance(planned, NodePlan):
            nodes.append(planned)
        else:
            errors[node.name] = planned
    return Plan(nodes, errors)


def plan_one(
    inventory: Inventory,
    graph: ComponentGraph,
    node: Node,
    facts: NodeFacts | PiprovError | None,
    *,
    templates_dir: Path | None = None,
) -> NodePlan | str:
    """One node's plan from its facts, or why it has none (the message for ``Plan.errors``).

    Rendering errors are raised: they concern every node, not this one.
    """
    f = facts
    if f is None:
        return "no facts were gathered"
    if isinstance(f, PiprovError):
        return _with_hint(f, str(f))
    try:
        arch = node_image_arch(node, f.machine)
    except PiprovError as e:
        return _with_hint(e, f"{node.name}: {e}")
    missing = [b for b in BINARIES if f.binaries.get(b, "") is None]
    if missing:
        return str(
            PiprovError(
                f"docker is not installed: no {' or '.join(missing)} in sudo's PATH",
                host=f.host,
                hint="piprov needs docker on every node (HypriotOS ships it; on Debian: apt install docker.io)",
            )
        )
    found = {b: p for b, p in f.binaries.items() if p is not None}
    desired = desired_state(inventory, graph, node, arch, binaries=found, templates_dir=templates_dir)
    try:
        return plan_node(desired, f, graph)
    except FactsError as e:
        return str(e)
