"""What the support matrix says of an inventory and of a node: the profile, refusals, the template view.

The inventory's image tags pick the profile (:func:`select`); a tag that names
no version, a version outside the matrix or a mix no profile holds is refused
with the file:line of the tag (:func:`check_inventory_versions`, every problem
at once). A node's docker and systemd versions are facts: :func:`node_problem`
says what is wrong with them, as data. :func:`versions_view` is what the
templates see as ``versions``.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from piprov.errors import InventoryError, Location, PiprovError, ProblemList
from piprov.graph.versions import MATRIX_FILE, Matrix, Profile, VersionLine, load_matrix
from piprov.inventory.model import ImageSpec, Inventory
from piprov.version import Version, parse_version


@dataclass(frozen=True)
class Pick:
    """One component's version as the inventory names it, and its line."""

    component: str
    image: str
    tag: str
    version: Version
    line: VersionLine
    location: Location | None


@dataclass(frozen=True)
class Selection:
    """The profile of one arch's images and each imaged component's pick."""

    profile: Profile
    picks: Mapping[str, Pick]


def supported_sets(matrix: Matrix) -> str:
    """The profiles as one line each: what a refusal lists as supported."""
    out = []
    for p in matrix.profiles.values():
        parts = [f"{c} {p.supported_text(matrix, c)}" for c in p.lines if matrix.component(c).image]
        out.append(f"{p.name}: " + "; ".join(parts))
    return "supported sets: " + " | ".join(out)


def _tags(inventory: Inventory, defaults: Mapping[str, ImageSpec], arch: str | None) -> dict[str, tuple[str, Location | None]]:
    """Image name -> (tag, where the inventory set it) for one arch (None: the default images)."""
    out: dict[str, tuple[str, Location | None]] = {}
    for name, spec in defaults.items():
        out[name] = (spec.tag, None)
    for name, spec in inventory.images.specs.items():
        out[name] = (spec.tag, spec.location)
    for name, spec in (inventory.images.arch_overrides.get(arch, {}) if arch else {}).items():
        out[name] = (spec.tag, spec.location)
    return out


def select(matrix: Matrix, tags: Mapping[str, tuple[str, Location | None]], anchor: Location | None) -> Selection:
    """The profile ``tags`` (image -> tag, location) make, or ProblemList naming each tag at fault.

    ``anchor`` is where a problem with a default tag (one the inventory does not set) is reported.
    """
    problems: list[PiprovError] = []
    picks: dict[str, Pick] = {}
    for image, comp in matrix.by_image().items():
        if image not in tags:
            continue
        tag, loc = tags[image]
        where = loc or anchor
        v = parse_version(tag)
        line = comp.line_of(v) if v else None
        if v is None or line is None:
            what = f"tag {tag!r} names no version" if v is None else f"{comp.name} {v} is outside the support matrix"
            lines = ", ".join(f"{x.name} ({x.range_text})" for x in comp.lines)
            problems.append(InventoryError(f"images.{image}: {what}", location=where,
                                           hint=f"{comp.name} versions piprov supports: {lines}"))
            continue
        picks[comp.name] = Pick(comp.name, image, tag, v, line, loc)
    if problems:
        raise ProblemList("unsupported versions", problems)
    return Selection(_profile(matrix, picks, anchor), picks)


def _profile(matrix: Matrix, picks: Mapping[str, Pick], anchor: Location | None) -> Profile:
    """The profile of ``picks``: its hyperkube line decides, the others must fit it."""
    kube = picks.get("hyperkube")
    candidates = [p for p in matrix.profiles.values()
                  if kube is None or p.allows("hyperkube", kube.line, kube.version)]
    if not candidates:
        raise ProblemList("unsupported versions", [InventoryError(
            f"images.{kube.image if kube else 'hyperkube'}: no profile runs this hyperkube",
            location=(kube.location if kube else None) or anchor, hint=supported_sets(matrix))])
    best, misfits = candidates[0], [p for p in picks.values() if not candidates[0].allows(p.component, p.line, p.version)]
    for p in candidates:
        bad = [x for x in picks.values() if not p.allows(x.component, x.line, x.version)]
        if not bad:
            return p
        if len(bad) < len(misfits):
            best, misfits = p, bad
    kube_text = f"hyperkube {kube.tag}" if kube else "these images"
    raise ProblemList("unsupported versions", [
        InventoryError(
            f"images.{x.image}: {x.component} {x.tag} does not go with {kube_text} (profile {best.name}): "
            f"it needs {x.component} {best.supported_text(matrix, x.component)}",
            location=x.location or (kube.location if kube else None) or anchor,
            hint=(f"set images.{x.image} to tag {best.images[x.image]!r}; " if x.image in best.images else "")
            + supported_sets(matrix),
        )
        for x in misfits
    ])


def inventory_selection(inventory: Inventory, defaults: Mapping[str, ImageSpec], matrix: Matrix) -> Selection:
    """The inventory's profile, every arch override included; ProblemList of every problem."""
    anchor = Location(str(inventory.path), 1, 1)
    problems: list[PiprovError] = []
    base: Selection | None = None
    try:
        base = select(matrix, _tags(inventory, defaults, None), anchor)
    except ProblemList as e:
        problems.extend(e.problems)
    for arch, specs in inventory.images.arch_overrides.items():
        problems.extend(_override_problems(matrix, inventory, defaults, arch, specs, base, anchor))
    if problems or base is None:
        # An override repeats the default tags' problems: each once.
        unique = list({str(p): p for p in problems}.values())
        unique.sort(key=lambda p: (p.location.line or 0) if p.location else 0)
        n = len(unique)
        raise ProblemList(f"{inventory.path}: {n} unsupported version{'s' if n != 1 else ''} in the inventory",
                          unique, hint="`piprov versions` lists what piprov supports")
    return base


def _override_problems(matrix: Matrix, inventory: Inventory, defaults: Mapping[str, ImageSpec], arch: str,
                       specs: Mapping[str, ImageSpec], base: Selection | None, anchor: Location) -> list[PiprovError]:
    """What is wrong with one arch's overrides, each reported at an override's line."""
    here = next((s.location for s in specs.values() if s.location), anchor)
    mine = {s.location for s in specs.values() if s.location}
    try:
        sel = select(matrix, _tags(inventory, defaults, arch), here)
    except ProblemList as e:
        return [p if p.location in mine else InventoryError(
            f"images.arch_overrides.{arch}: {p.message}", location=here, hint=p.hint) for p in e.problems
            if p.location in mine or base is not None]
    if base is not None and sel.profile.name != base.profile.name:
        return [InventoryError(
            f"images.arch_overrides.{arch}: makes profile {sel.profile.name}, the other images {base.profile.name}",
            location=here, hint="one cluster runs one profile: an arch override may change a tag only within "
            f"the lines of {base.profile.name}; " + supported_sets(matrix))]
    return []


def matrix_for(playbook_sources: tuple[Path, ...]) -> Matrix:
    """The matrix next to the playbooks a graph was read from (else the data directory's)."""
    for src in playbook_sources:
        if (src.parent / MATRIX_FILE).is_file():
            return load_matrix(src.parent)
    return load_matrix()


def arch_selection(inventory: Inventory, defaults: Mapping[str, ImageSpec], matrix: Matrix, arch: str) -> Selection:
    """The selection of the images a node of image arch ``arch`` runs (its overrides included)."""
    return select(matrix, _tags(inventory, defaults, arch), Location(str(inventory.path), 1, 1))


def check_inventory_versions(inventory: Inventory) -> Selection:
    """The inventory's profile under the data directory's playbooks (the load-time check)."""
    from piprov.graph.playbook import load_graph

    return inventory_selection(inventory, load_graph().image_specs, load_matrix())


def node_problem(matrix: Matrix, profile: Profile, host: str, versions: Mapping[str, str | None]) -> PiprovError | None:
    """What is wrong with a node's docker/systemd versions (facts: component -> raw word), or None."""
    for name in ("docker", "systemd"):
        comp = matrix.component(name)
        raw = versions.get(name)
        v = parse_version(raw) if raw else None
        need = profile.supported_text(matrix, name)
        if raw is None:
            continue  # not installed: the binaries check says so
        if v is None:
            return PiprovError(f"cannot tell the {name} version from {raw!r}", host=host,
                               hint=f"piprov needs {name} {need}; check `{name} --version` on the node")
        line = comp.line_of(v)
        if line is None or not profile.allows(name, line, v):
            return PiprovError(
                f"{name} {raw} is outside the support matrix of profile {profile.name} (it needs {name} {need})",
                host=host, hint=_upgrade_hint(name, need))
    return None


def _upgrade_hint(name: str, need: str) -> str:
    if name == "docker":
        return (f"upgrade docker on the node to {need} (HypriotOS: `apt-get install docker-hypriot`, "
                "Debian: `apt install docker.io`), or choose the profile whose docker it has (`piprov versions`)")
    return f"this node's OS is older than piprov supports: {name} {need} (HypriotOS 1.0 / Debian 8 or later)"


def versions_view(selection: Selection, docker: str | None, matrix: Matrix,
                  systemd: str | None = None) -> types.SimpleNamespace:
    """What templates see as ``versions``: per component its version, line and features; the profile.

    docker's and systemd's from the node's facts (the words their --version
    printed); without a fact (a render without facts), the profile's newest line.
    """
    view: dict[str, object] = {"profile": selection.profile.name}
    for pick in selection.picks.values():
        view[pick.component] = _ns(str(pick.version), pick.tag, pick.line)
    for name, word in (("docker", docker), ("systemd", systemd)):
        v = parse_version(word) if word else None
        comp = matrix.component(name)
        line = (comp.line_of(v) if v else None) or comp.line(selection.profile.lines[name][-1])
        view[name] = _ns(str(v) if v else "", word or "", line)
    return types.SimpleNamespace(**view)


def docker_view(matrix: Matrix, docker: str) -> types.SimpleNamespace:
    """The docker part of :func:`versions_view` for a docker version word (its newest line if unparsable)."""
    comp = matrix.component("docker")
    v = parse_version(docker)
    line = (comp.line_of(v) if v else None) or comp.lines[-1]
    return _ns(str(v) if v else "", docker, line)


def _ns(version: str, raw: str, line: VersionLine) -> types.SimpleNamespace:
    return types.SimpleNamespace(version=version, raw=raw, line=line.name, **line.features)


def running_version(component: str, body: bytes) -> str | None:
    """The version a server's /version answer names: etcd's ``etcdserver``, the apiserver's ``gitVersion``.

    None for anything else (not JSON, another shape, garbage): a server that
    answered but said no version. (etcd v2.1.1 etcdserver/etcdhttp/client.go
    serveVersion and v3.4.23 version/version.go: {"etcdserver", "etcdcluster"};
    the apiserver's /version is version.Info, {"gitVersion": "v1.1.2", ...}, in
    1.1 and 1.18 alike: pkg/version/version.go.)
    """
    import json

    key = {"etcd": "etcdserver", "hyperkube": "gitVersion"}[component]
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, str) and parse_version(value) is not None else None


def security_notes(selection: Selection) -> list[str]:
    """What the profile's releases cannot authenticate, so that the per-node firewall alone guards it
    (the lines' ``firewalled`` feature in playbooks/versions.yaml)."""
    return [f"{what}; only the cluster's members reach it (piprov-firewall.service)"
            for pick in selection.picks.values() for what in pick.line.features.get("firewalled") or ()]


def running_notes(selection: Selection, running: Mapping[str, str | None]) -> list[str]:
    """What to say of the master's running etcd and apiserver (component -> version seen, None: no answer)."""
    notes = []
    for comp, seen in running.items():
        pick = selection.picks.get(comp)
        if pick is None or seen is None:
            continue
        v = parse_version(seen)
        if v != pick.version:
            what = "etcd" if comp == "etcd" else "the apiserver"
            notes.append(f"{what} on the master runs {seen}, the inventory asks for {pick.tag} "
                         f"(images.{pick.image}): `piprov up` restarts it with the inventory's image"
                         + ("; mind the data: etcd does not downgrade its data directory" if comp == "etcd"
                            and v is not None and v > pick.version else ""))
    return notes
