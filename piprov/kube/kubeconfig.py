"""This cluster's kubeconfig entry, merged into the user's file the way kind and k3sup do it.

A kubeconfig often holds other clusters' credentials: replacing the file
would lose them. The merge replaces only the cluster, user and context named
``piprov-<cluster name>`` (kind's ``kind-<name>`` convention: one prefix for
all three, so they cannot collide with another tool's ``admin``), keeps every
other entry and every key it does not know (preferences, extensions), and
sets ``current-context`` only when asked. The file is written with
:func:`piprov.localfs.atomic_write`, mode 0600: kubectl reads either the old
file or the new one, never half of it.

Which file, and how entries are replaced, follow kind (kubernetes-sigs/kind,
pkg/cluster/internal/kubeconfig/internal/kubeconfig/paths.go ``pathForMerge`` and
merge.go ``merge``), which follows kubectl: with one path in ``$KUBECONFIG``
that path; with several, the first that exists, else the last; without
``$KUBECONFIG``, ``~/.kube/config``. An entry of the same name is replaced
where it stands, a new one appended.
"""

from __future__ import annotations

import base64
import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from piprov.errors import PiprovError
from piprov.localfs import atomic_write

_SECTIONS = (("clusters", "cluster"), ("users", "user"), ("contexts", "context"))


class KubeconfigError(PiprovError):
    """The existing kubeconfig cannot be merged into (not YAML, not a Config)."""


def entry_name(cluster_name: str) -> str:
    return f"piprov-{cluster_name}"


def _data(pem: bytes) -> str:
    return base64.b64encode(pem).decode("ascii")


def entry(cluster_name: str, server: str, *, ca: bytes, cert: bytes, key: bytes) -> dict[str, Any]:
    """A kubeconfig holding only this cluster: what ``--print`` writes and what gets merged.

    The cluster's CA and the admin's client certificate and key (PEM) are
    embedded (``*-data``), as kubeadm's admin.conf and kind's do: the file
    works wherever it is copied, and no path on the controller leaks into it.
    """
    name = entry_name(cluster_name)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": _data(ca)}}],
        "users": [{"name": name, "user": {"client-certificate-data": _data(cert), "client-key-data": _data(key)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "preferences": {},
    }


def merge(existing: Mapping[str, Any] | None, ours: Mapping[str, Any], *, use: bool) -> dict[str, Any]:
    """``existing`` with ``ours``'s entries added or replaced by name; nothing else touched.

    Pure. ``current-context`` becomes ours only with ``use``; otherwise the
    existing one stays (absent stays absent).
    """
    out: dict[str, Any] = copy.deepcopy(dict(existing or {}))
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    for section, _ in _SECTIONS:
        entries = list(out.get(section) or [])
        for new in ours.get(section) or []:
            at = next((i for i, e in enumerate(entries) if isinstance(e, Mapping) and e.get("name") == new["name"]), None)
            if at is None:
                entries.append(copy.deepcopy(new))
            else:
                entries[at] = copy.deepcopy(new)
        out[section] = entries
    if use:
        out["current-context"] = ours["current-context"]
    return out


def parse(text: str, path: Path) -> dict[str, Any] | None:
    """The existing file as a mapping (None when empty), or why it cannot be merged into."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise KubeconfigError(f"{where}: not valid YAML, not merging into it",
                              hint="fix the file, or write elsewhere with -o FILE") from None
    if doc is None:
        return None
    if not isinstance(doc, Mapping) or doc.get("kind", "Config") != "Config":
        raise KubeconfigError(f"{path}: not a kubeconfig (kind: Config), not merging into it",
                              hint="write elsewhere with -o FILE")
    for section, body in _SECTIONS:
        items = doc.get(section)
        if items is not None and (not isinstance(items, list) or not all(isinstance(e, Mapping) and "name" in e for e in items)):
            raise KubeconfigError(f"{path}: {section} must be a list of entries with a name, not merging into it",
                                  hint="write elsewhere with -o FILE")
    return dict(doc)


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """The file kubectl (and kind) would merge a new entry into."""
    env = os.environ if environ is None else environ
    paths = list(dict.fromkeys(p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p))
    if not paths:
        home = env.get("HOME")
        return Path(home, ".kube", "config") if home else Path("~/.kube/config").expanduser()
    if len(paths) == 1:
        return Path(paths[0]).expanduser()
    return next((Path(p).expanduser() for p in paths if Path(p).expanduser().is_file()), Path(paths[-1]).expanduser())


def dump(doc: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(doc), default_flow_style=False, sort_keys=False)


def write_merged(path: Path, ours: Mapping[str, Any], *, use: bool) -> None:
    """Merge ``ours`` into the file at ``path`` (created if missing), atomically, mode 0600."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as e:
        raise KubeconfigError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    merged = merge(parse(text, path), ours, use=use)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KubeconfigError(f"cannot create {path.parent}: {e.strerror or e}") from None
    atomic_write(path, dump(merged).encode(), mode=0o600)
