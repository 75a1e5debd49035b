"""Text splicing on the composer nodes of an inventory file.

ruamel's composer gives the exact character span of every node; an edit
replaces or inserts only the text of the value it changes, and every other
byte of the file (comments, order, blank lines, quoting, indentation) stays
as it was.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from piprov import yamlsrc
from piprov.errors import InventoryError
from piprov.inventory.schema import field_at

YamlNode = Any  # ruamel's composer nodes are untyped


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


class TextDoc:
    """One inventory text; each edit returns the new text."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.root: YamlNode = yamlsrc.compose(text, file, InventoryError, lead="YAML syntax error")

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
