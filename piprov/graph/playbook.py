"""Reading ``playbooks/*.yaml`` into one validated :class:`ComponentGraph`.

Each section of a component has its own small parser; :func:`_validate`
then checks what spans components (dangling references, role mismatches,
shared units or files, cycles) and sorts them topologically. Every problem
is a :class:`~piprov.errors.GraphError` naming the playbook file, line and
column, and the cycle or dangling reference.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Mapping, cast

from piprov import yamlsrc
from piprov.errors import GraphError
from piprov.graph.credentials import (check_credentials, parse_credentials, parse_daemon_config, parse_etcd_backup,
                                      parse_pki, parse_when)
from piprov.graph.leaves import parse_leaves
from piprov.graph.expr import syntax_problem
from piprov.graph.model import (
    EDGE_KINDS,
    PROBE_KINDS,
    ROLES,
    Component,
    ComponentGraph,
    EdgeKind,
    EtcdKeys,
    HealthCheck,
    ManagedFile,
    PkiSettings,
    Placement,
    ProbeKind,
    Requirement,
)
from piprov.graph.versions import MATRIX_FILE
from piprov.inventory.model import ImageSpec, Role

_UNIT_RE = re.compile(r"^[A-Za-z0-9@_.:-]+\.(service|socket|path|timer|target|mount)$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._/@+-]+$")
_OWNER_RE = re.compile(r"^[a-z_][a-z0-9_-]*$")
_ETCD_KEY_RE = re.compile(r"(/[A-Za-z0-9._-]+)+")

_COMPONENT_KEYS = (
    "name", "description", "roles", "requires", "units", "templates", "health", "etcd_keys", "systemd",
    "disruptive", "fleet_wide", "images", "binaries", "pod_network", "credentials", "daemon_config",
    "leaves",
    "backup", "when",
)

Reader = yamlsrc.Reader[GraphError]


# --------------------------------------------------------------------------
# One component, section by section


def _parse_mode(r: Reader, key: str) -> int:
    v = r.data.get(key, "0644")
    # YAML 1.1 reads an unquoted 0644 as the integer 420 and 644 as 644: both
    # are easy to get wrong, so only a quoted octal string is accepted.
    if not isinstance(v, str) or not re.fullmatch(r"0?[0-7]{3,4}", v):
        raise r.err(key, f"mode {yamlsrc.plain(v)!r} must be a quoted octal string like \"0644\"")
    return int(v, 8)


def _check_expression(r: Reader, key: str, text: str) -> None:
    problem = syntax_problem(text)
    if problem is not None:
        raise r.err(key, f"{key!r} is not a valid jinja expression: {problem}")


def _template_exists(r: Reader, key: str, template: str, templates: Path | None) -> None:
    if templates is not None and not (templates / template).is_file():
        raise r.err(key, f"template {template!r} not found in {templates}")


def _roles(r: Reader) -> tuple[Role, ...]:
    roles = r.str_list("roles")
    if not roles:
        raise r.err("roles", "needs at least one role")
    for role in roles:
        if role not in ROLES:
            raise r.err("roles", f"unknown role {role!r} (roles are: {', '.join(ROLES)})")
    return cast(tuple[Role, ...], roles)


def _requires(r: Reader, name: str) -> tuple[Requirement, ...]:
    requires: list[Requirement] = []
    items = r.items("requires")
    for i, item in enumerate(items):
        if isinstance(item, str):
            requires.append(Requirement(str(item)))
            continue
        rr = r.item(items, i, f"component {name}: requirement")
        rr.check_keys(["component", "on", "edge", "cascade"])
        on = rr.text("on", default="same")
        if on not in ("same", "master"):
            raise rr.err("on", f"'on' must be 'same' or 'master', not {on!r}")
        edge = rr.text("edge", default="wants")
        if edge not in EDGE_KINDS:
            raise rr.err("edge", f"unknown edge {edge!r} (edges are: {', '.join(EDGE_KINDS)})")
        cascade = rr.text("cascade") if "cascade" in rr.data else None
        if on != "same":
            # The master's X is reached over the network: only ordering, on the
            # master itself; nothing of it can be tied to this node's units.
            for key in ("edge", "cascade"):
                if key in rr.data:
                    raise rr.err(key, f"'{key}' applies to a requirement on the same node, not on the {on}")
        requires.append(Requirement(rr.text("component"), cast(Placement, on), cast(EdgeKind, edge), cascade))
    return tuple(requires)


def _files(r: Reader, name: str, units: tuple[str, ...], templates: Path | None) -> tuple[ManagedFile, ...]:
    files: list[ManagedFile] = []
    items = r.items("templates")
    for i in range(len(items)):
        fr = r.item(items, i, f"component {name}: template")
        fr.check_keys(["template", "path", "mode", "owner", "restarts"])
        template = fr.text("template")
        _template_exists(fr, "template", template, templates)
        target = fr.text("path", pattern=_PATH_RE)
        owner_s = fr.text("owner", default="root:root")
        owner, _, group = owner_s.partition(":")
        if not _OWNER_RE.match(owner) or not _OWNER_RE.match(group or owner):
            raise fr.err("owner", f"owner {owner_s!r} must be USER:GROUP")
        restarts = fr.str_list("restarts", pattern=_UNIT_RE)
        for u in restarts:
            if u not in units:
                raise fr.err("restarts", f"restarts {u!r}, which is not one of {name}'s units")
        files.append(ManagedFile(template, target, _parse_mode(fr, "mode"), owner, group or owner, restarts))
    return tuple(files)


def _health(r: Reader, name: str) -> tuple[HealthCheck, ...]:
    health: list[HealthCheck] = []
    items = r.items("health")
    for i in range(len(items)):
        hr = r.item(items, i, f"component {name}: health check")
        hr.check_keys(["probe", "target", "timeout"])
        probe = hr.text("probe")
        if probe not in PROBE_KINDS:
            raise hr.err("probe", f"unknown probe {probe!r} (probes are: {', '.join(PROBE_KINDS)})")
        timeout = hr.data.get("timeout", 60)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise hr.err("timeout", "timeout must be a positive number of seconds")
        target = hr.text("target")
        _check_expression(hr, "target", target)
        health.append(HealthCheck(cast(ProbeKind, probe), target, float(timeout)))
    if not health:
        raise r.err("health", "needs at least one health check: the graph gates on it")
    return tuple(health)


def _etcd_keys(r: Reader, name: str, templates: Path | None) -> EtcdKeys | None:
    if "etcd_keys" not in r.data:
        return None
    er = r.sub("etcd_keys", r.data["etcd_keys"], f"component {name}: etcd_keys")
    er.check_keys(["etcdctl", "keys"])
    etcdctl = er.text("etcdctl")
    _check_expression(er, "etcdctl", etcdctl)
    kr = er.sub("keys", er.data.get("keys"), f"component {name}: etcd_keys.keys")
    keys: dict[str, str] = {}
    for k in kr.data:
        if not isinstance(k, str) or not _ETCD_KEY_RE.fullmatch(k):
            raise kr.err(k, f"etcd key {k!r} must look like /a/b/c")
        tpl = kr.text(k)
        _template_exists(kr, k, tpl, templates)
        keys[str(k)] = tpl
    return EtcdKeys(etcdctl, keys)


def _systemd(r: Reader, name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(after, wants)``: system dependencies that are not components."""
    if "systemd" not in r.data:
        return (), ()
    sr = r.sub("systemd", r.data["systemd"], f"component {name}: systemd")
    sr.check_keys(["after", "wants"])
    return sr.str_list("after", pattern=_UNIT_RE), sr.str_list("wants", pattern=_UNIT_RE)


def _pod_network_prefix(r: Reader, name: str) -> str | None:
    if "pod_network" not in r.data:
        return None
    pr = r.sub("pod_network", r.data["pod_network"], f"component {name}: pod_network")
    pr.check_keys(["etcd_prefix"])
    return pr.text("etcd_prefix", pattern=re.compile(r"^(/[A-Za-z0-9._-]+)+$"))


def _parse_component(r: Reader, templates: Path | None) -> Component:
    name = r.text("name", pattern=_NAME_RE)
    r.where = f"component {name}"
    r.check_keys(_COMPONENT_KEYS)
    roles = _roles(r)
    units = r.str_list("units", pattern=_UNIT_RE)
    requires = _requires(r, name)
    files = _files(r, name, units, templates)
    health = _health(r, name)
    etcd_keys = _etcd_keys(r, name, templates)
    after, wants = _systemd(r, name)
    return Component(
        name=name,
        description=r.text("description", default=name),
        roles=roles,
        requires=requires,
        units=units,
        files=files,
        health=health,
        etcd_keys=etcd_keys,
        systemd_after=after,
        systemd_wants=wants,
        location=r.loc(),
        disruptive=r.flag("disruptive", False),
        fleet_wide=r.flag("fleet_wide", False),
        images=r.str_list("images", pattern=_NAME_RE),
        binaries=r.str_list("binaries", pattern=_NAME_RE),
        pod_network_prefix=_pod_network_prefix(r, name),
        credentials=parse_credentials(r, name, roles, units),
        daemon_config=parse_daemon_config(r, name),
        leaves=parse_leaves(r, name),
        etcd_backup=parse_etcd_backup(r, name),
        when=parse_when(r),
    )


# --------------------------------------------------------------------------
# Across components


def _by_name(components: list[Component]) -> dict[str, Component]:
    by_name: dict[str, Component] = {}
    for c in components:
        if c.name in by_name:
            raise GraphError(
                f"component {c.name!r} is defined twice (first at {by_name[c.name].location})",
                location=c.location,
            )
        by_name[c.name] = c
    return by_name


def _check_requirements(c: Component, by_name: Mapping[str, Component]) -> None:
    for req in c.requires:
        dep = by_name.get(req.component)
        if dep is None:
            raise GraphError(
                f"component {c.name} requires {req.component!r}, which no playbook defines "
                f"(components: {', '.join(by_name)})",
                location=c.location,
            )
        if dep is c:
            raise GraphError(f"component {c.name} requires itself", location=c.location)
        if req.on == "same":
            missing = [r for r in c.roles if r not in dep.roles]
            if missing:
                raise GraphError(
                    f"component {c.name} requires {dep.name} on the same node, but {dep.name} "
                    f"does not run on role {missing[0]!r}",
                    location=c.location,
                    hint=f"add the role to {dep.name}, or require it `on: master`",
                )
        elif req.on not in dep.roles:
            raise GraphError(
                f"component {c.name} requires {dep.name} on the {req.on}, but {dep.name} "
                f"does not run on role {req.on!r}",
                location=c.location,
            )


def _check_ownership(components: list[Component]) -> None:
    """Two components on the same node must not own the same unit or file."""
    for i, a in enumerate(components):
        for b in components[i + 1 :]:
            if not set(a.roles) & set(b.roles):
                continue
            for u in set(a.units) & set(b.units):
                raise GraphError(f"unit {u} is owned by both {a.name} and {b.name}", location=b.location)
            for p in {f.path for f in a.files} & {f.path for f in b.files}:
                raise GraphError(f"file {p} is owned by both {a.name} and {b.name}", location=b.location)


def _check_acyclic(components: list[Component], by_name: Mapping[str, Component]) -> None:
    """Depth-first search for a cycle, naming it."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for req in by_name[name].requires:
            s = state.get(req.component, 0)
            if s == 1:
                cycle = stack[stack.index(req.component) :] + [req.component]
                raise GraphError(
                    "the component graph has a cycle: " + " -> ".join(cycle),
                    location=by_name[name].location,
                )
            if s == 0:
                visit(req.component)
        stack.pop()
        state[name] = 2

    for c in components:
        if state.get(c.name, 0) == 0:
            visit(c.name)


def _topological(components: list[Component]) -> list[Component]:
    """A stable topological order: ties keep playbook order."""
    ordered: list[Component] = []
    placed: set[str] = set()
    pending = list(components)
    while pending:
        for c in pending:
            if all(r.component in placed for r in c.requires):
                ordered.append(c)
                placed.add(c.name)
                pending.remove(c)
                break
    return ordered


def _check_stack_fields(components: list[Component], binary_paths: Mapping[str, str],
                        images: Mapping[str, ImageSpec]) -> None:
    """Every binary has a default path, every image a default; at most one component holds the pod network."""
    for c in components:
        for i in c.images:
            if i not in images:
                raise GraphError(
                    f"component {c.name} runs image {i!r}, which no playbook's 'images' defines",
                    location=c.location,
                )
        for b in c.binaries:
            if b not in binary_paths:
                raise GraphError(
                    f"component {c.name} runs binary {b!r}, which no playbook's 'binaries' gives a path",
                    location=c.location,
                )
    holders = [c for c in components if c.pod_network_prefix is not None]
    for extra in holders[1:]:
        raise GraphError(
            f"component {extra.name} holds the pod network, but {holders[0].name} already does",
            location=extra.location,
        )


def _validate(components: list[Component], binary_paths: Mapping[str, str],
              images: Mapping[str, ImageSpec]) -> list[Component]:
    """Dangling references, role mismatches, duplicate ownership, cycles; then a topological sort."""
    by_name = _by_name(components)
    for c in components:
        _check_requirements(c, by_name)
    _check_ownership(components)
    _check_stack_fields(components, binary_paths, images)
    _check_acyclic(components, by_name)
    return _topological(components)


# --------------------------------------------------------------------------
# Files


class _Playbooks:
    """What the playbook files add up to, read one after the other."""

    def __init__(self, templates: Path | None) -> None:
        self.templates = templates
        self.components: list[Component] = []
        self.vars: dict[str, object] = {}
        self.binary_paths: dict[str, str] = {}
        self.images: dict[str, ImageSpec] = {}
        self.pki: PkiSettings | None = None

    def read(self, path: Path) -> None:
        doc = yamlsrc.load_file(path, GraphError, what="playbook", lead="invalid YAML", yaml11_numbers=True)
        top = Reader(GraphError, str(path), doc, "playbook", (0, 0))
        top.check_keys(["version", "vars", "binaries", "images", "pki", "components"])
        if top.data.get("version", 1) != 1:
            raise top.err("version", "unsupported playbook version (this piprov reads version 1)")
        self._named("vars", top, self.vars, "variable", lambda r, k: yamlsrc.plain(r.data[k]))
        self._named("binaries", top, self.binary_paths, "binary", lambda r, k: r.text(k, pattern=_PATH_RE))
        self._named("images", top, self.images, "image", _image_spec)
        if "pki" in top.data:
            if self.pki is not None:
                raise top.err("pki", "'pki' is defined in two playbooks")
            self.pki = parse_pki(top.sub("pki", top.data["pki"], "pki"))
        items = top.items("components")
        for i in range(len(items)):
            r = top.item(items, i, f"component #{i + 1}")
            self.components.append(_parse_component(r, self.templates))

    @staticmethod
    def _named(key: str, top: Reader, into: dict[str, Any], what: str, value: Any) -> None:
        """A top-level mapping whose names must be unique across playbooks."""
        if key not in top.data:
            return
        r = top.sub(key, top.data[key], key)
        for k in r.data:
            if k in into:
                raise r.err(k, f"{what} {k!r} is defined in two playbooks")
            into[str(k)] = value(r, k)

    def graph(self, files: tuple[Path, ...]) -> ComponentGraph:
        check_credentials(self.components, self.pki)
        return ComponentGraph(tuple(_validate(self.components, self.binary_paths, self.images)), self.vars, files,
                              self.binary_paths, self.images, self.pki)


def load_graph(playbooks_dir: Path | None = None, *, templates_dir: Path | None = None) -> ComponentGraph:
    """Read every ``*.yaml`` in ``playbooks_dir`` into one validated graph.

    ``templates_dir`` (default: the data directory's templates/) is used to
    check that every referenced template exists.
    """
    from piprov import resources

    default = playbooks_dir is None and templates_dir is None
    if playbooks_dir is None:
        playbooks_dir = resources.playbooks_dir()
    if templates_dir is None:
        sibling = playbooks_dir.parent / "templates"
        templates_dir = sibling if sibling.is_dir() else resources.templates_dir()
    return _load_default(playbooks_dir, templates_dir) if default else _load(playbooks_dir, templates_dir)


@functools.lru_cache(maxsize=4)
def _load_default(playbooks_dir: Path, templates_dir: Path) -> ComponentGraph:
    """The data directory's playbooks, read once per process: they do not change under it."""
    return _load(playbooks_dir, templates_dir)


def _load(playbooks_dir: Path, templates_dir: Path) -> ComponentGraph:
    # The support matrix lives next to the playbooks but is no component playbook.
    files = [f for f in sorted(playbooks_dir.glob("*.yaml")) + sorted(playbooks_dir.glob("*.yml"))
             if f.name != MATRIX_FILE]
    if not files:
        raise GraphError(f"no playbooks (*.yaml) in {playbooks_dir}")
    books = _Playbooks(templates_dir)
    for path in files:
        books.read(path)
    return books.graph(tuple(files))


def _image_spec(r: Reader, key: str) -> ImageSpec:
    ir = r.sub(key, r.data[key], f"images.{key}")
    ir.check_keys(["repository", "tag"])
    return ImageSpec(ir.text("repository"), ir.text("tag"))
