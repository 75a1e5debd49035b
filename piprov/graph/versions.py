"""The support matrix (``playbooks/versions.yaml``) as typed values, and versions parsed from tags.

The matrix says, per component (etcd, flannel, hyperkube, docker, systemd),
which version lines piprov drives and what differs between them: the
``features`` templates branch on, the ``flags`` each program is passed, and
the sources of each fact. Profiles name the lines that work together. The
YAML is the stack knowledge; this module only reads and checks its shape.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from piprov import yamlsrc
from piprov.errors import GraphError
from piprov.version import Version, parse_version

MATRIX_FILE = "versions.yaml"

@dataclass(frozen=True)
class VersionLine:
    """One version line of a component: [low, high) and what is true throughout it."""

    component: str
    name: str
    low: Version
    high: Version | None
    features: Mapping[str, Any] = field(default_factory=dict)
    flags: Mapping[str, frozenset[str]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def contains(self, v: Version) -> bool:
        return self.low <= v and (self.high is None or v < self.high)

    @property
    def range_text(self) -> str:
        return f">= {self.low}" + (f", < {self.high}" if self.high else "")


@dataclass(frozen=True)
class MatrixComponent:
    name: str
    # The inventory's images.<name> whose tag is the version; None: a node fact.
    image: str | None
    lines: tuple[VersionLine, ...]

    def line_of(self, v: Version) -> VersionLine | None:
        return next((line for line in self.lines if line.contains(v)), None)

    def line(self, name: str) -> VersionLine:
        for line in self.lines:
            if line.name == name:
                return line
        raise GraphError(f"the support matrix has no line {name!r} of {self.name}")


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    # Component -> names of its lines this profile supports (the first is the default's).
    lines: Mapping[str, tuple[str, ...]]
    # Component -> lowest version within those lines, where a line's start is not enough.
    minimum: Mapping[str, Version] = field(default_factory=dict)
    # Image name -> tag: the profile's default images.
    images: Mapping[str, str] = field(default_factory=dict)
    default: bool = False

    def allows(self, component: str, line: VersionLine, v: Version) -> bool:
        floor = self.minimum.get(component)
        return line.name in self.lines.get(component, ()) and (floor is None or v >= floor)

    def supported_text(self, matrix: "Matrix", component: str) -> str:
        comp = matrix.component(component)
        ranges = [f"{n} ({comp.line(n).range_text})" for n in self.lines.get(component, ())]
        floor = self.minimum.get(component)
        return " or ".join(ranges) + (f", at least {floor}" if floor else "")


@dataclass(frozen=True)
class Matrix:
    components: Mapping[str, MatrixComponent]
    profiles: Mapping[str, Profile]
    source: Path | None = None

    def component(self, name: str) -> MatrixComponent:
        try:
            return self.components[name]
        except KeyError:
            raise GraphError(f"the support matrix has no component {name!r}") from None

    @property
    def default_profile(self) -> Profile:
        return next((p for p in self.profiles.values() if p.default), next(iter(self.profiles.values())))

    def by_image(self) -> dict[str, MatrixComponent]:
        """Image name -> the component whose version its tag is."""
        return {c.image: c for c in self.components.values() if c.image}


# -- loading ------------------------------------------------------------------------------------------


def load_matrix(playbooks_dir: Path | None = None) -> Matrix:
    """The matrix in ``playbooks_dir`` (default: the data directory's playbooks/)."""
    from piprov import resources

    return _load(Path(playbooks_dir or resources.playbooks_dir()).resolve() / MATRIX_FILE)


@functools.lru_cache(maxsize=4)
def _load(path: Path) -> Matrix:
    doc = yamlsrc.plain(yamlsrc.load_file(path, GraphError, what="the support matrix"))
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise GraphError(f"{path}: the support matrix must be a mapping with version: 1")
    comps = {str(n): _component(path, str(n), c) for n, c in _mapping(path, doc, "components").items()}
    profiles = {str(n): _profile(path, str(n), p, comps) for n, p in _mapping(path, doc, "profiles").items()}
    if not profiles:
        raise GraphError(f"{path}: no profiles")
    return Matrix(comps, profiles, path)


def _mapping(path: Path, m: Any, key: str) -> dict[str, Any]:
    v = m.get(key) if isinstance(m, dict) else None
    if not isinstance(v, dict):
        raise GraphError(f"{path}: {key} must be a mapping")
    return v


def _version(path: Path, where: str, text: Any) -> Version:
    v = parse_version(str(text)) if text is not None else None
    if v is None:
        raise GraphError(f"{path}: {where}: {text!r} is not a version")
    return v


def _component(path: Path, name: str, c: Any) -> MatrixComponent:
    if not isinstance(c, dict) or not isinstance(c.get("lines"), list) or not c["lines"]:
        raise GraphError(f"{path}: components.{name} needs a list of lines")
    lines = tuple(_line(path, name, i, line) for i, line in enumerate(c["lines"]))
    keys = {frozenset(line.features) for line in lines}
    if len(keys) > 1:
        raise GraphError(f"{path}: components.{name}: every line must have the same feature keys")
    for a, b in zip(lines, lines[1:]):
        if a.high is None or a.high > b.low:
            raise GraphError(f"{path}: components.{name}: lines {a.name} and {b.name} overlap or are out of order")
    return MatrixComponent(name, str(c["image"]) if c.get("image") else None, lines)


def _line(path: Path, comp: str, i: int, d: Any) -> VersionLine:
    where = f"components.{comp}.lines[{i}]"
    if not isinstance(d, dict) or "line" not in d or "from" not in d:
        raise GraphError(f"{path}: {where} needs line: and from:")
    flags = d.get("flags") or {}
    sources = d.get("sources") or []
    if not sources:
        raise GraphError(f"{path}: {where}: every line cites its sources")
    return VersionLine(
        component=comp,
        name=str(d["line"]),
        low=_version(path, where + ".from", d["from"]),
        high=_version(path, where + ".until", d["until"]) if d.get("until") is not None else None,
        features=dict(d.get("features") or {}),
        flags={str(p): frozenset(str(f) for f in fl) for p, fl in flags.items()},
        sources=tuple(str(s) for s in sources),
    )


def _profile(path: Path, name: str, p: Any, comps: Mapping[str, MatrixComponent]) -> Profile:
    if not isinstance(p, dict):
        raise GraphError(f"{path}: profiles.{name} must be a mapping")
    lines = {str(c): tuple(str(n) for n in ns) for c, ns in _mapping(path, p, "lines").items()}
    for c, names in lines.items():
        if c not in comps:
            raise GraphError(f"{path}: profiles.{name}: no component {c!r}")
        for n in names:
            comps[c].line(n)
    missing = [c for c in comps if c not in lines]
    if missing:
        raise GraphError(f"{path}: profiles.{name} names no lines of {', '.join(missing)}")
    minimum = {str(c): _version(path, f"profiles.{name}.minimum.{c}", v) for c, v in (p.get("minimum") or {}).items()}
    images = {str(k): str(v) for k, v in (p.get("images") or {}).items()}
    return Profile(name, str(p.get("description", "")), lines, minimum, images, bool(p.get("default", False)))
