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
import re
import stat
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from piprov.errors import InventoryError, ProblemList
from piprov.inventory.load import Field, _did_you_mean, _syntax_error, field_at, load_text, read_text, schema
from piprov.inventory.model import Inventory
from piprov.lock import FileLock

# How long an edit waits for another edit of the same file to finish. Edits
# hold the lock for milliseconds; 30 s only matters if something hangs.
LOCK_WAIT_S = 30.0

YamlNode = Any  # ruamel's composer nodes are untyped


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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = YAML(typ="safe", pure=True).load(raw)
    except Exception as e:
        raise _syntax_error(e, raw, "<command line>") from None
    return value


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
        atomic_write(real, new_text.encode("utf-8"))
        return result


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never a mix."""
    try:
        st = os.stat(path)
        mode: int | None = stat.S_IMODE(st.st_mode)
        owner: tuple[int, int] | None = (st.st_uid, st.st_gid)
    except FileNotFoundError:
        mode, owner = None, None
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if owner is not None and os.geteuid() == 0:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
        tmp = None
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        raise InventoryError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


# ---------------------------------------------------------------------------
# Text splicing on composer nodes

_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9_./~+][A-Za-z0-9_./~:+@-]*$")
_NOT_PLAIN = re.compile(r"^(true|false|yes|no|on|off|null|~|y|n)$", re.IGNORECASE)


def _is_plain_string(s: str) -> bool:
    """Can ``s`` be written without quotes and still read back as this exact string?"""
    if not _PLAIN_SAFE.match(s) or _NOT_PLAIN.match(s) or s.endswith(":"):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            back = YAML(typ="safe", pure=True).load(f"k: {s}\n")
    except Exception:
        return False
    return isinstance(back, dict) and back.get("k") == s and isinstance(back.get("k"), str)


def render_scalar(v: Any, style: str | None = None) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    if style == "'" and s.isprintable():
        return "'" + s.replace("'", "''") + "'"
    if style is None and _is_plain_string(s):
        return s
    return _double_quoted(s)


def _double_quoted(s: str) -> str:
    """A YAML double-quoted scalar: printable text as is, everything else escaped.

    (json.dumps is not enough: it writes characters beyond the BMP as UTF-16
    surrogate pairs, which YAML reads back as two broken characters.)
    """
    out = ['"']
    for ch in s:
        cp = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch.isprintable() and not 0xD800 <= cp <= 0xDFFF:
            out.append(ch)
        elif cp < 0x100:
            out.append(f"\\x{cp:02x}")
        elif cp < 0x10000:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


def render_flow(v: Any) -> str:
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{render_scalar(str(k))}: {render_flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(render_flow(x) for x in v) + "]"
    return render_scalar(v)


def _render_block_value(v: Any, indent: int) -> str:
    """The text after ``key:`` for a value in block style at ``indent`` (of the key)."""
    if isinstance(v, Mapping) and v:
        lines = [f"{' ' * (indent + 2)}{render_scalar(str(k))}:{_render_block_value(x, indent + 2)}" for k, x in v.items()]
        return "\n" + "\n".join(lines)
    return " " + render_flow(v)


class _TextDoc:
    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.root: YamlNode = YAML(typ="rt").compose(text)
        except Exception as e:
            raise _syntax_error(e, text, file) from None

    # -- helpers over the text

    def _line_start(self, idx: int) -> int:
        return self.text.rfind("\n", 0, idx) + 1

    def _line_end(self, idx: int) -> int:
        """Index just past the newline of the line holding ``idx`` (a trailing comment included)."""
        if idx > 0 and self.text[idx - 1] == "\n":
            return idx
        j = self.text.find("\n", idx)
        return len(self.text) if j < 0 else j + 1

    def _content_end(self, node: YamlNode) -> int:
        """Where the last character of a node's own text is (block collections end at their last child)."""
        if isinstance(node, ScalarNode) or getattr(node, "flow_style", False):
            return int(node.end_mark.index)
        if isinstance(node, MappingNode) and node.value:
            k, v = node.value[-1]
            ends = [self._content_end(k)]
            if not (isinstance(v, ScalarNode) and v.value == "" and v.style is None):
                ends.append(self._content_end(v))
            return max(ends)
        if isinstance(node, SequenceNode) and node.value:
            return self._content_end(node.value[-1])
        return int(node.end_mark.index)

    def _splice(self, start: int, end: int, new: str) -> str:
        return self.text[:start] + new + self.text[end:]

    def _colon_after(self, key: YamlNode) -> int:
        i = int(key.end_mark.index)
        while i < len(self.text) and self.text[i] in " \t":
            i += 1
        if i < len(self.text) and self.text[i] == ":":
            return i
        raise InventoryError(f"cannot edit this YAML construct at line {key.start_mark.line + 1}")

    # -- navigation

    def _nodes_seq(self) -> YamlNode:
        if not isinstance(self.root, MappingNode):
            raise InventoryError(f"{self.file}: the inventory is not a mapping")
        for k, v in self.root.value:
            if k.value == "nodes" and isinstance(v, SequenceNode):
                return v
        raise InventoryError(f"{self.file}: no 'nodes:' list to edit")

    def _node_index(self, name: str) -> int:
        seq = self._nodes_seq()
        for i, item in enumerate(seq.value):
            if isinstance(item, MappingNode):
                for k, v in item.value:
                    if k.value == "name" and isinstance(v, ScalarNode) and v.value == name:
                        return i
        raise InventoryError(f"no node named {name!r} in {self.file}", hint="`piprov inventory list` shows the nodes")

    # -- edits (each returns the new text)

    def set_path(self, parts: list[str], value: Any) -> str:
        if field_at(parts) is None:
            raise InventoryError(f"{'.'.join(parts)!r} is not a setting piprov knows")
        node: YamlNode = self.root
        for i, part in enumerate(parts):
            rest = parts[i:]
            if isinstance(node, SequenceNode):
                node = node.value[self._node_index(part)]
                continue
            if not isinstance(node, MappingNode):
                raise InventoryError(f"cannot set {'.'.join(parts)}: {'.'.join(parts[:i])} is not a mapping")
            found = next(((k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == part), None)
            if found is None:
                return self._insert_key(node, part, _nest(rest[1:], value))
            key, val = found
            if i == len(parts) - 1:
                return self._replace_value(val, value, key=key)
            if isinstance(val, ScalarNode) and val.style is None and val.value in ("", "~", "null", "Null", "NULL"):
                # An empty section (`ssh:` with nothing under it) gets a flow mapping.
                return self._replace_value(val, _nest(rest[1:], value), key=key)
            node = val
        raise InventoryError(f"cannot set {'.'.join(parts)}")

    def _replace_value(self, val: YamlNode, value: Any, *, key: YamlNode = None) -> str:
        if isinstance(val, ScalarNode):
            if val.style is None and val.value in ("", "~") and key is not None:
                # `key:` with nothing after it: write after the colon.
                colon = self._colon_after(key)
                return self._splice(colon + 1, colon + 1, " " + render_flow(value))
            if isinstance(value, (Mapping, list, tuple)):
                return self._splice(val.start_mark.index, val.end_mark.index, render_flow(value))
            return self._splice(val.start_mark.index, val.end_mark.index, render_scalar(value, val.style))
        if getattr(val, "flow_style", False) or key is None:
            return self._splice(val.start_mark.index, self._content_end(val), render_flow(value))
        # A block collection: replace everything after `key:` up to its last
        # character, in block style again (a mapping the user wrote one key per
        # line stays that way).
        colon = self._colon_after(key)
        return self._splice(colon + 1, self._content_end(val), _render_block_value(value, int(key.start_mark.column)))

    def _flow_insert_point(self, node: YamlNode, closer: str) -> int:
        """Where a new entry goes in a flow collection: just after its last
        entry, before the white space and the closing ``closer``."""
        close = int(node.end_mark.index) - 1
        while close > 0 and self.text[close] != closer:
            close -= 1
        j = close
        while j > 0 and self.text[j - 1] in " \t\n":
            j -= 1
        return j

    def _insert_key(self, m: YamlNode, key: str, value: Any) -> str:
        if getattr(m, "flow_style", False) or not m.value:
            j = self._flow_insert_point(m, "}")
            sep = ", " if m.value else ""
            return self._splice(j, j, f"{sep}{render_scalar(key)}: {render_flow(value)}")
        indent = int(m.value[0][0].start_mark.column)
        at = self._line_end(self._content_end(m))
        prefix = "" if at == 0 or self.text[at - 1] == "\n" else "\n"
        line = f"{prefix}{' ' * indent}{render_scalar(key)}:{_render_block_value(value, indent)}\n"
        return self._splice(at, at, line)

    def append_node(self, item: Mapping[str, Any]) -> str:
        seq = self._nodes_seq()
        if getattr(seq, "flow_style", False) or not seq.value:
            j = self._flow_insert_point(seq, "]")
            sep = ", " if seq.value else ""
            return self._splice(j, j, sep + render_flow(item))
        last = seq.value[-1]
        dash = self._dash_before(last)
        dash_col = dash - self._line_start(dash)
        key_col = dash_col + 2
        gap = ""
        if len(seq.value) >= 2:
            between = self.text[self._line_end(self._content_end(seq.value[-2])) : self._line_start(dash)]
            if any(not ln.strip() for ln in between.split("\n")[:-1]):
                gap = "\n"
        else:
            gap = "\n"
        lines = []
        for i, (k, v) in enumerate(item.items()):
            lead = " " * dash_col + "- " if i == 0 else " " * key_col
            lines.append(f"{lead}{render_scalar(k)}:{_render_block_value(v, key_col)}")
        at = self._line_end(self._content_end(seq))
        prefix = "" if at == 0 or self.text[at - 1] == "\n" else "\n"
        return self._splice(at, at, prefix + gap + "\n".join(lines) + "\n")

    def _dash_before(self, item: YamlNode) -> int:
        i = int(item.start_mark.index) - 1
        while i >= 0 and self.text[i] in " \t\n":
            i -= 1
        if i < 0 or self.text[i] != "-":
            raise InventoryError(f"cannot find the '-' of the list item at line {item.start_mark.line + 1}")
        return i

    def _comments_above(self, line_start: int) -> int:
        """Start of the comment lines right above a list item, at its indentation.

        People write what a node is ("# the one with the broken fan") on the
        lines above it: they go with the node. A blank line or a comment at
        another indentation ends them; those describe something else.
        """
        dash_line = self.text[line_start:].split("\n", 1)[0]
        indent = len(dash_line) - len(dash_line.lstrip(" "))
        start = line_start
        while start > 0:
            prev = self._line_start(start - 1)
            line = self.text[prev : start - 1]
            if not line.lstrip(" ").startswith("#") or len(line) - len(line.lstrip(" ")) != indent:
                break
            start = prev
        return start

    def remove_node(self, name: str) -> str:
        seq = self._nodes_seq()
        idx = self._node_index(name)
        item = seq.value[idx]
        if getattr(seq, "flow_style", False):
            items = seq.value
            if idx + 1 < len(items):
                start, end = int(item.start_mark.index), int(items[idx + 1].start_mark.index)
            elif idx > 0:
                start, end = int(items[idx - 1].end_mark.index), int(item.end_mark.index)
            else:
                start, end = int(item.start_mark.index), int(item.end_mark.index)
            return self._splice(start, end, "")
        start = self._comments_above(self._line_start(self._dash_before(item)))
        end = self._line_end(self._content_end(item))
        text = self.text[:start] + self.text[end:]
        # Keep the spacing between items: don't leave two blank lines (or a
        # trailing blank line) where the item was.
        prev_start = text.rfind("\n", 0, max(start - 1, 0)) + 1
        prev_blank = start > 0 and not text[prev_start:start].strip()
        nxt_end = text.find("\n", start)
        nxt = text[start : (len(text) if nxt_end < 0 else nxt_end)]
        if prev_blank and not nxt.strip():
            text = text[:prev_start] + text[start:]
        return text


def _nest(parts: list[str], value: Any) -> Any:
    for p in reversed(parts):
        value = {p: value}
    return value
