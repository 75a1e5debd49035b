"""Desired state of a node: its files rendered from templates/, its units, its keys.

Pure: inventory + component graph + the node's image arch in, bytes out. The
jinja environment is strict (an undefined variable is an error) and every
error names the template and the line.
"""

from __future__ import annotations

import functools
import types
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import jinja2

from piprov.errors import PiprovError, RenderError
from piprov.facts.model import NodeFacts
from piprov.graph import Component, ComponentGraph, ManagedFile, UnitDependencies, probe_context, render_expression
from piprov.graph.support import arch_selection, docker_view, matrix_for, node_problem, versions_view
from piprov.inventory.model import ARCH_MAP, Inventory, Node, image_arch
from piprov.plan.desired import ConfigCheck, DesiredFile, DesiredNode, RestartCascade
from piprov.plan.model import RECORD

if TYPE_CHECKING:
    from piprov.pki import ClusterPki


def to_image_arch(arch: str) -> str:
    """An image arch (arm, arm64, amd64) as is; a ``uname -m`` mapped through ARCH_MAP."""
    return arch if arch in ARCH_MAP.values() else image_arch(arch)


def node_image_arch(node: Node, machine: str) -> str:
    """Image arch of a node: its inventory override, else what ``uname -m`` said."""
    return to_image_arch(node.arch or machine)


def node_machine(
    graph: ComponentGraph, node: Node, facts: NodeFacts, inventory: Inventory | None = None
) -> tuple[str, dict[str, str]]:
    """What the node's facts say its desired state is rendered for: image arch and program paths.

    Raises a PiprovError that concerns this node alone: an architecture piprov
    has no images for, no docker, or a docker or systemd outside the support
    matrix of the inventory's profile (``inventory`` given).
    """
    arch = node_image_arch(node, facts.machine)
    unneeded: set[str] = set()
    if inventory is not None:
        matrix = matrix_for(graph.sources)
        profile = arch_selection(inventory, graph.image_specs, matrix, arch).profile
        problem = node_problem(matrix, profile, facts.host, facts.versions)
        if problem is not None:
            raise problem
        docker = facts.versions.get("docker")
        if docker:
            # A docker without dockerd (before 1.12) runs `docker daemon`.
            unneeded = set(graph.binaries(node.role)) - set(docker_view(matrix, docker).daemon)
            unneeded.discard("docker")
    missing = [b for b in graph.binaries(node.role) if facts.binaries.get(b, "") is None and b not in unneeded]
    if missing:
        raise _not_installed(graph, node.role, missing, facts.host)
    return arch, {b: p for b, p in facts.binaries.items() if p is not None}


def _not_installed(graph: ComponentGraph, role: str, missing: list[str], host: str) -> PiprovError:
    """The error for programs the node lacks, named by the first component that runs one of them."""
    if {"docker", "dockerd"} & set(missing):
        docker = [b for b in missing if b in ("docker", "dockerd")]
        return PiprovError(
            f"docker is not installed: no {' or '.join(docker)} in sudo's PATH",
            host=host,
            hint="piprov needs docker on every node (HypriotOS ships it; on Debian: apt install docker.io)",
        )
    owner = next(c.name for c in graph.for_role(role) if set(c.binaries) & set(missing))
    return PiprovError(
        f"{missing[0]} is not installed: no {' or '.join(missing)} in sudo's PATH",
        host=host,
        hint=f"component {owner} runs it: install it on the node (HypriotOS ships it; "
        f"on Debian: apt install {missing[0]})",
    )


def template_environment(templates_dir: Path | None = None) -> jinja2.Environment:
    from piprov import resources

    return _environment(Path(templates_dir or resources.templates_dir()).resolve())


@functools.lru_cache(maxsize=8)
def _environment(templates_dir: Path) -> jinja2.Environment:
    # One environment per directory: jinja caches compiled templates in it, so
    # rendering a fleet compiles each template once. No auto_reload: it stats
    # every template (and each one it includes) at every render, ~50 stats a
    # node; templates do not change during a run.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        auto_reload=False,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def template_context(
    inventory: Inventory,
    graph: ComponentGraph,
    node: Node,
    arch: str,
    binaries: Mapping[str, str] | None = None,
    docker: str | None = None,
    systemd: str | None = None,
) -> dict[str, object]:
    """Everything a template may use (see the top of playbooks/seed-stack.yaml).

    ``versions`` is the support matrix's view of what this node runs: per
    component its version, line and features (playbooks/versions.yaml), docker's
    and systemd's from the node's facts (``docker``, ``systemd``: the words
    their --version printed).
    """
    ctx = probe_context(inventory, node)
    ctx["versions"] = node_versions(inventory, graph, arch, docker, systemd)
    # The playbooks' images with the inventory's settings on top.
    images = graph.image_defaults()
    ctx.update(
        arch=arch,
        # Where the programs the units run live when the facts do not say: the
        # playbook's defaults (docker-ce, as on HypriotOS); Debian's docker.io has
        # /usr/sbin/dockerd, and the facts tell.
        bin=types.SimpleNamespace(**{**graph.binaries(node.role), **(binaries or {})}),
        images=types.SimpleNamespace(**{c: inventory.images.ref(c, arch, images) for c in images}),
        insecure_registries=list(inventory.images.insecure_registries),
        vars=dict(graph.vars),
    )
    return ctx


def node_versions(inventory: Inventory, graph: ComponentGraph, arch: str, docker: str | None = None,
                  systemd: str | None = None) -> object:
    """The ``versions`` view of templates and playbook expressions for a node of image arch ``arch``."""
    matrix = matrix_for(graph.sources)
    return versions_view(arch_selection(inventory, graph.image_specs, matrix, arch), docker, matrix, systemd)


def _template_line(exc: BaseException, template: str) -> int | None:
    """The template line an error was raised from, from jinja's rewritten traceback."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.lineno
    line: int | None = None
    tb = exc.__traceback__
    while tb is not None:
        fname = tb.tb_frame.f_code.co_filename
        if fname.endswith(".j2") or fname == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _render(env: jinja2.Environment, template: str, ctx: Mapping[str, object]) -> str:
    try:
        return env.get_template(template).render(ctx)
    except jinja2.TemplateNotFound as e:
        raise RenderError(f"template {e.name!r} not found") from None
    except jinja2.TemplateSyntaxError as e:
        where = e.filename or e.name or template
        raise RenderError(f"{where}:{e.lineno}: syntax error: {e.message}") from None
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError) as e:
        line = _template_line(e, template)
        where = f"{template}:{line}" if line else template
        raise RenderError(
            f"{where}: {e}",
            hint="a template refers to something the inventory or playbook does not define",
        ) from None


def render_file(
    env: jinja2.Environment,
    graph: ComponentGraph,
    component: Component,
    f: ManagedFile,
    ctx: Mapping[str, object],
    role: str,
) -> DesiredFile:
    local = dict(ctx, component=component.name, template=f.template, unit=f.unit)
    deps = graph.unit_dependencies(component, role=role, unit=f.unit) if f.unit else UnitDependencies()
    local.update(after=deps.after, requires=deps.requires, binds_to=deps.binds_to, wants=deps.wants)
    text = _render(env, f.template, local)
    return DesiredFile(
        path=f.path,
        content=text.encode("utf-8"),
        mode=f.mode,
        owner=f.owner,
        group=f.group,
        component=component.name,
        template=f.template,
        restarts=component.restart_triggers[f.path],
    )


def desired_state(
    inventory: Inventory,
    graph: ComponentGraph,
    node: Node | str,
    arch: str,
    *,
    binaries: Mapping[str, str] | None = None,
    templates_dir: Path | None = None,
    docker: str | None = None,
    systemd: str | None = None,
    pki: ClusterPki | None = None,
) -> DesiredNode:
    """What ``node`` should look like. ``arch`` is an image arch or a ``uname -m``.

    ``binaries`` maps program names (docker, dockerd) to their paths on the
    node, from :attr:`piprov.facts.NodeFacts.binaries`; the playbook's
    defaults (``ComponentGraph.binaries``) fill in the others. ``docker`` is
    the node's docker version word (``NodeFacts.versions``): the docker flags
    follow it; without it, the profile's newest docker line. ``systemd``
    likewise (the directives a unit may use follow it). ``pki`` adds the
    node's certificates and keys (the playbooks' ``credentials``; None: none,
    as for tests of templates alone); templates see ``pki.<name>``, the
    checksum of certificate NAME, so a file that must change with a
    certificate (a static pod's manifest) can.
    """
    if isinstance(node, str):
        node = inventory.node(node)
    graph = graph.for_inventory(inventory)
    arch = to_image_arch(arch)
    env = template_environment(templates_dir)
    ctx = template_context(inventory, graph, node, arch, binaries, docker, systemd)
    ctx["backup"] = backup_view(inventory, graph) if node.role == "master" else None
    credentials = [] if pki is None else pki.node_files(inventory, node)
    ctx["pki"] = {f.path.rsplit("/", 1)[-1].removesuffix(".crt"): f.sha256
                  for f in credentials if f.path.endswith(".crt")}
    files: list[DesiredFile] = []
    units: dict[str, list[str]] = {}
    etcd_keys: dict[str, str] = {}
    etcdctl: str | None = None
    etcd_owners: dict[str, str] = {}
    for c in graph.for_role(node.role):
        units[c.name] = list(c.units)
        for f in c.files:
            files.append(render_file(env, graph, c, f, ctx, node.role))
        if c.etcd_keys is not None:
            etcdctl = render_expression(c.etcd_keys.etcdctl, ctx).strip()
            local = dict(ctx, component=c.name)
            for key, template in c.etcd_keys.keys.items():
                etcd_keys[key] = _render(env, template, local).strip()
                etcd_owners[key] = c.name
    # Credentials go before the component's templates: a unit never starts
    # from a file written before the certificate it names.
    files = _credentials_first(credentials, files)
    return DesiredNode(
        node=node,
        arch=arch,
        hostname=node.name,
        files=files,
        units=units,
        etcd_keys=etcd_keys,
        etcdctl=etcdctl,
        cascades=tuple(
            RestartCascade(dep.name, tuple(u for u in dep.units if not u.endswith(".socket")), on, why)
            for dep, on, why in graph.restart_cascades(node.role)
        ),
        etcd_owners=etcd_owners,
        config_checks=tuple(ConfigCheck(c.name, c.daemon_config.path, c.daemon_config.keys)
                            for c in graph.for_role(node.role) if c.daemon_config is not None),
        known_components=frozenset(c.name for c in graph.components),
        switched_off=graph.switched_off,
    )


def backup_view(inventory: Inventory, graph: ComponentGraph) -> object:
    """``backup`` in templates: the inventory's schedule and the one backup script `piprov backup` runs
    (piprov.backup.command, per etcd line), for the master's timer; None without ``backup:``."""
    if inventory.backup is None:
        return None
    from piprov.backup.command import MARK
    from piprov.backup.fetch import KEPT_DIR
    from piprov.backup.run import plan_backup

    plan = plan_backup(inventory, graph, matrix_for(graph.sources))
    b = inventory.backup
    return types.SimpleNamespace(every=b.every, keep=b.keep, is_span=b.is_span, script=plan.script,
                                 dir=KEPT_DIR, mark=MARK)


def _credentials_first(credentials: list[DesiredFile], files: list[DesiredFile]) -> list[DesiredFile]:
    out: list[DesiredFile] = []
    for comp in dict.fromkeys(f.component for f in [*files, *credentials]):
        out += [f for f in credentials if f.component == comp] + [f for f in files if f.component == comp]
    return out


def facts_command_for(inventory: Inventory, graph: ComponentGraph, node: Node | str) -> str:
    """The one facts command for ``node``: its managed paths and units.

    Paths and units do not depend on the node's arch, so this runs before the
    facts (which tell the arch) are known. The etcd keys piprov owns are read
    from the controller (piprov.kube.etcd.read_keys), not by this command.
    """
    from piprov.facts import facts_command

    if isinstance(node, str):
        node = inventory.node(node)
    graph = graph.for_inventory(inventory)
    return facts_command(
        [*graph.fact_paths(node.role), RECORD],
        list(dict.fromkeys(graph.managed_units(node.role))),
        secret_paths=graph.secret_paths(node.role),
        binaries=list(graph.binaries(node.role)),
    )
