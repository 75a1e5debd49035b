"""Edit the inventory file in place, the way a careful person would by hand.

The file belongs to its user: comments, key order, blank lines, quoting and
indentation are theirs. Re-dumping a YAML tree, even ruamel's round-trip one,
re-flows flow mappings and re-indents sequences. So an edit here is a text
splice: ruamel's composer gives the exact character span of every node, the
edit replaces or inserts only the text of the value it changes, and every
other byte of the file stays as it was.

Every edit, under an exclusive lock on ``<inventory>.lock``:
  1. re-reads the file (another edit may have happened since the caller looked),
  2. applies the splice,
  3. validates the result with the normal loader and refuses an edit that would
     make the file invalid (the file is then left untouched),
  4. writes atomically: temp file in the same directory, fsync, rename, same mode.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from piprov import localfs, yamlsrc
from piprov.errors import InventoryError, ProblemList
from piprov.inventory.load import load_text, read_text
from piprov.inventory.model import Inventory
from piprov.inventory.schema import Field, _did_you_mean, field_at, schema
from piprov.inventory.splice import TextDoc as _TextDoc
from piprov.lock import FileLock
from piprov.localfs import LocalWriteError

__all__ = [
    "LOCK_WAIT_S", "NewNode", "add_node", "add_nodes", "free_name", "lock_path", "parse_value", "remove_node",
    "rename_node", "set_value", "split_path",
]

# How long an edit waits for another edit of the same file to finish. Edits
# hold the lock for milliseconds; 30 s only matters if something hangs.
LOCK_WAIT_S = 30.0

@dataclass(frozen=True)
class NewNode:
    """A node to append to the inventory (``inventory add``, ``discover --add``)."""

    name: str
    address: str
    role: str = "worker"
    arch: str | None = None
    mac: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def as_mapping(self) -> dict[str, Any]:
        m: dict[str, Any] = {"name": self.name, "address": self.address, "role": self.role}
        if self.arch:
            m["arch"] = self.arch
        if self.mac:
            m["mac"] = self.mac
        if self.labels:
            m["labels"] = dict(self.labels)
        return m


def free_name(pattern: str, taken: Collection[str]) -> str:
    """``pattern`` with the lowest number n >= 1 for ``{n}`` that no name in ``taken`` has.

    Case-insensitively, as validation compares node names (host names are).
    """
    used = {t.lower() for t in taken}
    n = 1
    while pattern.replace("{n}", str(n)).lower() in used:
        n += 1
    return pattern.replace("{n}", str(n))


# ---------------------------------------------------------------------------
# Public edits


def lock_path(path: Path) -> Path:
    real = Path(os.path.realpath(path))
    return real.with_name(real.name + ".lock")


def add_node(path: Path, node: NewNode) -> Inventory:
    """Append ``node`` to ``nodes:``; refused if the result would be invalid (e.g. a duplicate)."""
    return add_nodes(path, lambda _inv: [node], what=f"add node {node.name}")


def add_nodes(path: Path, plan: Callable[[Inventory], Sequence[NewNode]], *, what: str = "add nodes") -> Inventory:
    """Append the nodes ``plan(current_inventory)`` returns, all in one locked edit.

    ``plan`` runs under the lock on the freshly read file, so names it picks
    ("next free rpi-node-N") cannot collide with a concurrent edit.
    """

    def apply(text: str, inv: Inventory | None) -> str:
        if inv is None:  # plan() needs the current fleet: load again to raise the problems
            inv = load_text(text, path)
        for n in plan(inv):
            text = _TextDoc(text, str(path)).append_node(n.as_mapping())
        return text

    return _edit(path, apply, what)


def remove_node(path: Path, name: str) -> Inventory:
    """Remove the node called ``name``: its lines and the comment lines right above it."""

    def apply(text: str, inv: Inventory | None) -> str:
        return _TextDoc(text, str(path)).remove_node(name)

    return _edit(path, apply, f"remove node {name}")


def rename_node(path: Path, old: str, new: str) -> Inventory:
    """Change a node's name (the hostname piprov sets on it)."""

    def apply(text: str, inv: Inventory | None) -> str:
        return _TextDoc(text, str(path)).set_path(["nodes", old, "name"], new)

    return _edit(path, apply, f"rename node {old} to {new}")


def set_value(path: Path, dotted: str, value: Any) -> Inventory:
    """Set the value at a dotted path, e.g. ``images.hyperkube.tag`` or ``nodes.rpi-node-1.address``.

    Missing mappings on the way are created; ``value`` must already have the
    schema's type (see :func:`parse_value` for command-line strings).
    """
    parts = split_path(dotted)

    def apply(text: str, inv: Inventory | None) -> str:
        return _TextDoc(text, str(path)).set_path(parts, value)

    return _edit(path, apply, f"set {dotted}")


def split_path(dotted: str) -> list[str]:
    """Split a dotted path; free-form keys (labels) keep their dots: ``nodes.a.labels.k8s.io/x``."""
    raw = dotted.split(".")
    parts: list[str] = []
    f: Field | None = schema()
    for i, part in enumerate(raw):
        if not part:
            raise InventoryError(f"{dotted!r} is not a valid path (empty part)", hint="e.g. images.hyperkube.tag")
        if f is not None and f.kind == "dict" and f.items is not None and f.items.kind == "str":
            # Label keys may hold dots (kubernetes.io/role): the rest is one key.
            parts.append(".".join(raw[i:]))
            return parts
        parts.append(part)
        f = field_at(parts)
    return parts


def parse_value(dotted: str, raw: str) -> Any:
    """Turn a command-line string into the type the schema wants at ``dotted``."""
    parts = split_path(dotted)
    f = field_at(parts)
    if f is None:
        parent = field_at(parts[:-1])
        known = list((parent.fields or {}) if parent is not None and parent.kind == "map" else [])
        raise InventoryError(
            f"{dotted!r} is not a setting piprov knows{_did_you_mean(parts[-1], known)}",
            hint=f"known keys there: {', '.join(known)}" if known else "see inventory.example.yaml",
        )
    if f.nullable and raw.strip() in ("", "null", "~"):
        return None
    if f.kind == "str":
        return raw
    if f.kind in ("int", "number"):
        try:
            return int(raw, 10)
        except ValueError:
            if f.kind == "number":
                try:
                    return float(raw)
                except ValueError:
                    pass
        raise InventoryError(f"{dotted} needs {'an integer' if f.kind == 'int' else 'a number'}, not {raw!r}")
    if f.kind == "bool":
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise InventoryError(f"{dotted} needs true or false, not {raw!r}")
    # Lists and mappings: accept YAML flow syntax, e.g. '[10.0.0.1:5000]'.
    return yamlsrc.plain(yamlsrc.parse(raw, "<command line>", InventoryError, lead="YAML syntax error"))


# ---------------------------------------------------------------------------
# The locked read-modify-validate-write cycle


def _edit(path: Path, apply: Callable[[str, Inventory | None], str], what: str) -> Inventory:
    real = Path(os.path.realpath(path))
    with FileLock(lock_path(path), what=f"another edit of {path}", wait=LOCK_WAIT_S):
        text = read_text(real)
        # An invalid file may still be edited (that is how one fixes it with
        # `inventory set`); only the result has to be valid.
        current: Inventory | None
        try:
            current = load_text(text, path)
        except ProblemList:
            current = None
        new_text = apply(text, current)
        if new_text == text and current is not None:
            return current
        try:
            result = load_text(new_text, path)
        except ProblemList as e:
            raise ProblemList(
                f"{path} not changed: '{what}' would make the inventory invalid",
                e.problems,
                hint="nothing was written",
            ) from None
        except InventoryError as e:
            raise InventoryError(f"{path} not changed: '{what}' would make the inventory invalid: {e.message}") from None
        _write(real, new_text.encode("utf-8"))
        return result


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (:func:`piprov.localfs.atomic_write`); a failure is an InventoryError."""
    try:
        localfs.atomic_write(path, data)
    except LocalWriteError as e:
        raise InventoryError(e.message) from None
