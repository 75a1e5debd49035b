"""The component model: components, their requirements, files, health checks; the graph of them.

Plain frozen values, built by :mod:`piprov.graph.playbook` from ``playbooks/*.yaml``.
Nothing here reads a file or renders a template, so the planner may import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Mapping, get_args

from piprov.graph.leaves import Leaves
from piprov.errors import GraphError, Location
from piprov.inventory.model import SWITCHES, ImageSpec, Inventory, Role

ProbeKind = Literal["unit", "docker_socket", "file", "http", "node_ready"]
PROBE_KINDS: tuple[str, ...] = get_args(ProbeKind)
ROLES: tuple[str, ...] = get_args(Role)
Placement = Literal["same", "master"]
# How a same-node requirement is written into the unit files (see
# ComponentGraph.unit_dependencies and the comments in playbooks/).
EdgeKind = Literal["wants", "requires", "binds_to"]
EDGE_KINDS: tuple[str, ...] = get_args(EdgeKind)
# What a credential on a node is: the cluster CA's certificate (no key), or a
# leaf the CA issues for serving or for authenticating as a client.
CredentialKind = Literal["ca", "server", "client"]
CREDENTIAL_KINDS: tuple[str, ...] = get_args(CredentialKind)

SYSTEMD_DIR = "/etc/systemd/system/"


@dataclass(frozen=True)
class HealthCheck:
    """One probe: ``probe`` kind, ``target`` and ``timeout`` in seconds.

    In a :class:`Component` the target is a jinja expression over the
    inventory ("http://{{ master.address }}:{{ network.etcd_port }}/health");
    in a :class:`~piprov.graph.dag.NodeDag` it is rendered for the vertex's node
    (:func:`piprov.graph.expr.render_check`).

    Kinds: ``unit`` (target: a unit, active on the node), ``docker_socket``
    (target: a docker host URL answering ``docker -H TARGET version`` on the
    node), ``file`` (target: a path, non-empty on the node), ``http`` (target:
    a URL fetched from the controller, 200 expected), ``node_ready`` (target:
    the apiserver URL of the Node, ``.../api/v1/nodes/NAME``, whose Ready
    condition must be True).
    """

    probe: ProbeKind
    target: str
    timeout: float

    def describe(self) -> str:
        return f"{self.probe} {self.target}"

    def capped(self, cap: float | None) -> HealthCheck:
        """The same check, giving up after ``cap`` seconds if that is sooner."""
        return self if cap is None or cap >= self.timeout else HealthCheck(self.probe, self.target, float(cap))

    def __str__(self) -> str:
        return f"{self.probe} {self.target} (timeout {self.timeout:g}s)"


@dataclass(frozen=True)
class Requirement:
    """``component`` must be healthy first: on the ``same`` node, or on the ``master``.

    On the same node, ``edge`` is the systemd dependency of this component's
    units on that component's units (always with ``After=``): ``wants``
    (``Wants=``: a failed start of the dependency does not fail this unit's
    start job; the unit checks its own precondition and ``Restart=`` retries
    it), ``requires`` (``Requires=``) or ``binds_to`` (``BindsTo=``).
    ``cascade``, when set, says why this component's units must restart when
    piprov restarts or starts the required component's units: the planner then restarts
    them too (systemd does not, along ``Wants=``).
    """

    component: str
    on: Placement = "same"
    edge: EdgeKind = "wants"
    cascade: str | None = None

    def __str__(self) -> str:
        return self.component if self.on == "same" else f"{self.component} on {self.on}"


@dataclass(frozen=True)
class UnitDependencies:
    """The dependency lines of one unit file: unit names per directive."""

    after: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    binds_to: list[str] = field(default_factory=list)
    wants: list[str] = field(default_factory=list)

    def add(self, kind: EdgeKind, unit: str) -> None:
        target = {"wants": self.wants, "requires": self.requires, "binds_to": self.binds_to}[kind]
        if unit not in target:
            target.append(unit)


@dataclass(frozen=True)
class ManagedFile:
    """A file the component owns, rendered from ``template`` to ``path``."""

    template: str
    path: str
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    # Units to restart when this file's content changes (besides the unit
    # whose own unit file this is, which always restarts).
    restarts: tuple[str, ...] = ()

    @property
    def unit(self) -> str | None:
        """The systemd unit this file defines, if it is a unit file."""
        if self.path.startswith(SYSTEMD_DIR) and "/" not in self.path[len(SYSTEMD_DIR):]:
            return self.path[len(SYSTEMD_DIR):]
        return None


@dataclass(frozen=True)
class Credential:
    """A certificate (and its key) the component uses, under the playbook's ``pki.dir`` on the node.

    ``cn``, ``o`` and each of ``sans`` are jinja over node, master, network,
    cluster_name and vars; a SAN that renders to an IP address is an IP SAN,
    anything else a DNS name. ``roles``: where the component gets it (a
    subset of its roles); ``restarts``: its units restarted when the
    certificate or key changes. A ``ca`` credential is the CA's certificate
    alone (``ca.crt``).
    """

    name: str
    kind: CredentialKind
    cn: str = ""
    o: str = ""
    sans: tuple[str, ...] = ()
    roles: tuple[Role, ...] = ()
    restarts: tuple[str, ...] = ()

    def paths(self, pki_dir: str) -> tuple[str, ...]:
        """The files on the node: certificate first, then the key (none for the CA)."""
        stem = f"{pki_dir.rstrip('/')}/{self.name}"
        return (f"{stem}.crt",) if self.kind == "ca" else (f"{stem}.crt", f"{stem}.key")

    def key_path(self, pki_dir: str) -> str | None:
        return None if self.kind == "ca" else f"{pki_dir.rstrip('/')}/{self.name}.key"


@dataclass(frozen=True)
class PkiSettings:
    """The playbook's ``pki``: where credentials live on the nodes, and the controller's own subject."""

    dir: str
    admin_cn: str
    admin_o: str = ""


@dataclass(frozen=True)
class EtcdKeys:
    """Desired etcd v2 keys a component owns, written after it is healthy.

    ``etcdctl`` is the command prefix (jinja) that reaches etcd on its node;
    ``keys`` maps each key to the template rendering its value.
    """

    etcdctl: str
    keys: Mapping[str, str]


@dataclass(frozen=True)
class EtcdBackup:
    """How `piprov backup` reaches the etcd a component runs (piprov.backup): ``exec`` is the
    command prefix (jinja) that runs a program beside etcd, ``version`` the command there that
    prints etcd's version, ``data_dir`` etcd's --data-dir as that program sees it and
    ``host_data_dir`` the same directory on the node; ``v3_client`` the v3 etcdctl's flags
    (jinja) that reach etcd with a client certificate. The commands follow versions.etcd."""

    exec: str
    version: str
    data_dir: str
    host_data_dir: str
    v3_client: str


@dataclass(frozen=True)
class DaemonConfig:
    """A config file the component's daemon reads besides its flags, that refuses a key also given
    as a flag (dockerd and /etc/docker/daemon.json): ``keys`` maps a flag to its key where they differ."""

    path: str
    keys: Mapping[str, str]


@dataclass(frozen=True)
class Component:
    name: str
    description: str
    roles: tuple[Role, ...]
    requires: tuple[Requirement, ...]
    units: tuple[str, ...]
    files: tuple[ManagedFile, ...]
    health: tuple[HealthCheck, ...]
    etcd_keys: EtcdKeys | None = None
    # Non-graph systemd dependencies (e.g. network-online.target).
    systemd_after: tuple[str, ...] = ()
    systemd_wants: tuple[str, ...] = ()
    location: Location | None = None
    # Restarting its units takes pods or the kubelet away: a rollout drains first.
    disruptive: bool = False
    # Its files name every member of the cluster (the firewall's allow list): a
    # node add or remove re-applies it on every node, not only on the one joining.
    fleet_wide: bool = False
    # Image names (inventory ``images.<name>``) its templates run.
    images: tuple[str, ...] = ()
    # Programs its units run on the node; default paths in ComponentGraph.binary_paths.
    binaries: tuple[str, ...] = ()
    # The etcd prefix of the pod network this component holds (flannel's leases).
    pod_network_prefix: str | None = None
    # Certificates it uses, issued by the cluster PKI (piprov.pki).
    credentials: tuple[Credential, ...] = ()
    # Read by its daemon too (facts only: piprov checks it against the unit's flags, never writes it).
    daemon_config: DaemonConfig | None = None
    # What its running stack makes on the node that piprov never wrote (graph.leaves): what reset removes.
    leaves: Leaves = Leaves()
    # `piprov backup`: how to reach the etcd data this component holds.
    etcd_backup: EtcdBackup | None = None
    # A top-level inventory setting (inventory.model.SWITCHES) without which no node runs it.
    when: str | None = None

    def runs_on(self, role: str) -> bool:
        return role in self.roles

    def credentials_for(self, role: str) -> tuple[Credential, ...]:
        return tuple(c for c in self.credentials if role in c.roles)

    @property
    def restart_triggers(self) -> dict[str, tuple[str, ...]]:
        """Target path -> units restarted when that file's content changes."""
        triggers: dict[str, tuple[str, ...]] = {}
        for f in self.files:
            units = list(f.restarts)
            own = f.unit
            if own is not None and own in self.units and own not in units:
                units.insert(0, own)
            triggers[f.path] = tuple(units)
        return triggers


@dataclass(frozen=True)
class ComponentGraph:
    """Components in topological order (ties kept in playbook order)."""

    components: tuple[Component, ...]
    vars: Mapping[str, object] = field(default_factory=dict)
    sources: tuple[Path, ...] = ()
    # Program name -> where it lives when the node's facts do not say.
    binary_paths: Mapping[str, str] = field(default_factory=dict)
    # Image name -> the repository and tag a node runs unless the inventory says otherwise.
    image_specs: Mapping[str, ImageSpec] = field(default_factory=dict)
    # Where credentials live on the nodes (None: the playbooks declare none).
    pki: PkiSettings | None = None
    # The inventory switches that are on (inventory.model.SWITCHES): a component whose `when:`
    # is not among them runs nowhere (for_role leaves it out; ``components`` keeps it).
    switches: frozenset[str] = frozenset()

    def for_inventory(self, inventory: Inventory) -> ComponentGraph:
        """This graph with the switches ``inventory`` sets on (a component's ``when:``)."""
        on = frozenset(s for s in SWITCHES if inventory.switched_on(s))
        return self if on == self.switches else replace(self, switches=on)

    @property
    def switched_off(self) -> dict[str, str]:
        """Components no node runs since their ``when:`` is off: component -> why."""
        return {c.name: f"the inventory sets no {c.when}:" for c in self.components
                if c.when is not None and c.when not in self.switches}

    def component(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise GraphError(f"no component named {name!r} in the playbooks")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.components]

    def for_role(self, role: str) -> list[Component]:
        return [c for c in self.components if c.runs_on(role) and (c.when is None or c.when in self.switches)]

    def unit_dependencies(
        self, component: str | Component, *, role: str | None = None, unit: str | None = None
    ) -> UnitDependencies:
        """The ``After=``/``Requires=``/``BindsTo=``/``Wants=`` units of a unit of ``component``.

        A same-node requirement orders after every unit of the required
        component (``After=``) and adds its non-socket units under the
        requirement's ``edge``. A requirement on the master gives ``After=``
        only, and only when ``role`` is "master". For a ``X.service`` whose
        ``X.socket`` the component also owns, the socket is ``Requires=``: the
        service is socket-activated (``-H fd://``) and cannot run without it.
        System dependencies from the playbook (``systemd: after/wants``) go to
        ``after`` and ``wants``. A socket gets nothing: it listens at once.
        """
        comp = component if isinstance(component, Component) else self.component(component)
        deps = UnitDependencies(after=list(comp.systemd_after), wants=list(comp.systemd_wants))
        if unit is not None and unit.endswith(".socket"):
            return UnitDependencies()
        if unit is not None and unit.endswith(".service"):
            sock = unit[: -len(".service")] + ".socket"
            if sock in comp.units:
                deps.after.append(sock)
                deps.add("requires", sock)
        for req in comp.requires:
            if req.on != "same" and role != req.on:
                continue
            for u in self.component(req.component).units:
                if u not in deps.after:
                    deps.after.append(u)
                # A requirement on "the master's X" is a network dependency: on
                # the master itself it orders the start but ties nothing else.
                if req.on == "same" and not u.endswith(".socket"):
                    deps.add(req.edge, u)
        return deps

    def restart_cascades(self, role: str) -> list[tuple[Component, tuple[str, ...], str]]:
        """``(dependent, units whose restart cascades, why)`` per same-node ``cascade`` edge of ``role``.

        In graph order. The dependent's non-socket units restart when piprov
        restarts any of those units (a socket needs no restart: it listens).
        """
        out: list[tuple[Component, tuple[str, ...], str]] = []
        for comp in self.for_role(role):
            for req in comp.requires:
                if req.on == "same" and req.cascade:
                    dep = self.component(req.component)
                    out.append((comp, tuple(u for u in dep.units if not u.endswith(".socket")), req.cascade))
        return out

    def fleet_wide_components(self) -> tuple[str, ...]:
        """Components whose files name every member (``fleet_wide``), in graph order."""
        return tuple(c.name for c in self.components if c.fleet_wide)

    def disruptive_units(self) -> frozenset[str]:
        """Units whose restart takes pods or the kubelet away (of ``disruptive`` components)."""
        return frozenset(u for c in self.components if c.disruptive for u in c.units)

    @property
    def pod_network_prefix(self) -> str | None:
        """The etcd prefix under which the pod network (flannel) keeps its config and leases."""
        return next((c.pod_network_prefix for c in self.components if c.pod_network_prefix), None)

    def etcd_backup(self) -> tuple[Component, EtcdBackup] | None:
        """The component holding the cluster's etcd data and how `piprov backup` reaches it."""
        return next(((c, c.etcd_backup) for c in self.components if c.etcd_backup), None)

    def image_names(self) -> tuple[str, ...]:
        """Every image the components run, in graph order: the inventory's ``images.<name>`` keys."""
        return tuple(dict.fromkeys(i for c in self.components for i in c.images))

    def image_defaults(self) -> dict[str, ImageSpec]:
        """Every image the components run (in :meth:`image_names` order) with its default repository and tag."""
        return {i: self.image_specs[i] for i in self.image_names()}

    def binaries(self, role: str | None = None) -> dict[str, str]:
        """Program name -> default path, for the components of ``role`` (all when None)."""
        comps = self.components if role is None else self.for_role(role)
        return {b: self.binary_paths[b] for c in comps for b in c.binaries}

    def credential_paths(self, role: str) -> list[str]:
        if self.pki is None:
            return []
        return [p for c in self.for_role(role) for cred in c.credentials_for(role) for p in cred.paths(self.pki.dir)]

    def managed_paths(self, role: str) -> list[str]:
        return [*(f.path for c in self.for_role(role) for f in c.files), *self.credential_paths(role)]

    def fact_paths(self, role: str) -> list[str]:
        """What the facts read: the managed paths, and the daemons' own config files (read, never written)."""
        configs = [c.daemon_config.path for c in self.for_role(role) if c.daemon_config is not None]
        return list(dict.fromkeys([*self.managed_paths(role), *configs]))

    def secret_paths(self, role: str) -> list[str]:
        """Managed files nobody but their owner may read (no o+r): the facts send only their checksum."""
        keys = [] if self.pki is None else [
            k for c in self.for_role(role) for cred in c.credentials_for(role)
            if (k := cred.key_path(self.pki.dir)) is not None]
        return [*(f.path for c in self.for_role(role) for f in c.files if not f.mode & 0o004), *keys]

    def managed_units(self, role: str) -> list[str]:
        return [u for c in self.for_role(role) for u in c.units]

    def etcd_key_names(self, role: str) -> list[str]:
        """The etcd keys the role's components own (written by piprov, read back as facts)."""
        return [k for c in self.for_role(role) if c.etcd_keys is not None for k in c.etcd_keys.keys]
