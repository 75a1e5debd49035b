"""The one line-tracking YAML reader, for playbooks and the inventory.

Both are read with ruamel.yaml's round-trip loader, which keeps the line and
column of every mapping, key and item, so each problem can name
file:line:column. Duplicate keys are an error, never a silent overwrite.
Each caller names the error class its problems are raised as
(:class:`~piprov.errors.GraphError`, :class:`~piprov.errors.InventoryError`).

Booleans are YAML 1.2's (only true/false) everywhere: under YAML 1.1 the key
``on`` of ``{component: etcd, on: master}`` would read as True. Playbooks keep
YAML 1.1's numbers (``0644`` is octal 420, so an unquoted mode is caught);
the inventory is plain YAML 1.2.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.resolver import VersionedResolver, implicit_resolvers

from piprov.errors import Location, PiprovError

E = TypeVar("E", bound=PiprovError)
Pos = tuple[int, int]  # 0-based line, column as ruamel keeps them

_BOOL = "tag:yaml.org,2002:bool"


class _PlaybookResolver(VersionedResolver):
    """YAML 1.1 scalars (octal 0644, sexagesimals) with YAML 1.2 booleans."""

    @property
    def versioned_resolver(self) -> Any:
        key = (1, 1)  # the one table this resolver has, whatever the document says
        if key not in self._version_implicit_resolver:
            for versions, tag, regexp, first in implicit_resolvers:
                if ((1, 2) if tag == _BOOL else (1, 1)) in versions:
                    self.add_version_implicit_resolver(key, tag, regexp, first)
        return self._version_implicit_resolver[key]


def _yaml(yaml11_numbers: bool) -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    if yaml11_numbers:
        y.Resolver = _PlaybookResolver
        y.version = (1, 1)  # the constructor reads 0644 as octal only outside 1.2
    return y


def parse(text: str, file: str, error: type[E], *, lead: str, yaml11_numbers: bool = False) -> Any:
    """The document in ``text`` (ruamel's round-trip types); a syntax problem raises ``error``.

    ``lead`` starts the message ("YAML syntax error", "invalid YAML").
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _yaml(yaml11_numbers).load(text)
    except Exception as e:  # ruamel raises a zoo of classes; none may escape as a traceback
        raise syntax_error(e, text, file, error, lead=lead) from None


def load_file(path: Path, error: type[E], *, what: str, lead: str = "YAML syntax error",
              yaml11_numbers: bool = False) -> Any:
    """The document in the file ``path`` (ruamel's round-trip types); unreadable or bad YAML raises ``error``.

    ``what`` names the file in the message ("the support matrix", "playbook").
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise error(f"cannot read {what}: {e.strerror or e}", location=Location(str(path))) from None
    return parse(text, str(path), error, lead=lead, yaml11_numbers=yaml11_numbers)


def compose(text: str, file: str, error: type[E], *, lead: str) -> Any:
    """The node tree of ``text`` (exact character spans, for text splicing)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return YAML(typ="rt").compose(text)
    except Exception as e:
        raise syntax_error(e, text, file, error, lead=lead) from None


_DUPLICATE_RE = re.compile(r'^found duplicate key "(.*)" with value ', re.S)


def syntax_error(e: Exception, text: str, file: str, error: type[E], *, lead: str) -> E:
    """``e`` from ruamel as one ``error`` at file:line:column, with a hint."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line = col = None
    if mark is not None and getattr(mark, "line", None) is not None:
        line, col = int(mark.line) + 1, int(mark.column) + 1
    elif isinstance(getattr(e, "position", None), int):
        pos = int(getattr(e, "position"))
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    problem = getattr(e, "problem", None)
    hint = "check the indentation and quoting around this position"
    if not problem:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    elif (dup := _DUPLICATE_RE.match(str(problem))) is not None:
        msg = f"duplicate key {dup.group(1)!r}"
        hint = "each key may appear only once in a mapping; remove or merge the repeated one"
    else:
        msg = str(problem) + _context(e, mark)
    return error(f"{lead}: {msg}", hint=hint, location=Location(file, line, col))


def _context(e: Exception, mark: Any) -> str:
    context = getattr(e, "context", None)
    context_mark = getattr(e, "context_mark", None)
    if not context:
        return ""
    if context_mark is not None and (mark is None or context_mark.line != mark.line):
        return f" ({context} started at line {context_mark.line + 1})"
    return f" ({context})"


def key_pos(container: Any, key: Any, default: Pos) -> Pos:
    """Where ``key`` of a mapping is written."""
    try:
        line, col = container.lc.key(key)
        return (int(line), int(col))
    except Exception:  # merged keys (<<) and other exotic nodes keep no position
        return default


def value_pos(container: Any, key: Any, default: Pos) -> Pos:
    """Where the value of ``key`` (a mapping key or a list index) is written."""
    try:
        lc: Any = container.lc
        line, col = lc.item(key) if isinstance(container, list) else lc.value(key)
        return (int(line), int(col))
    except Exception:
        return default


def own_pos(value: Any, default: Pos) -> Pos:
    """Where a mapping or list itself starts."""
    lc = getattr(value, "lc", None)
    if lc is None or getattr(lc, "line", None) is None:
        return default
    return (int(lc.line), int(lc.col or 0))


def plain(value: Any) -> Any:
    """``value`` with ruamel's round-trip types turned into dict, list, str, int, float, bool."""
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    for t in (bool, str, int, float):
        if isinstance(value, t):
            return t(value)
    return value


def location(file: str, pos: Pos) -> Location:
    return Location(file, pos[0] + 1, pos[1] + 1)


class Reader(Generic[E]):
    """Typed access to one mapping of a document; each problem an ``error`` at file:line:column."""

    def __init__(self, error: type[E], file: str, data: object, where: str, pos: Pos) -> None:
        self.error = error
        self.file = file
        self.where = where
        if not isinstance(data, Mapping):
            raise error(f"{where} must be a mapping", location=location(file, pos))
        self.data: Mapping[Any, Any] = data
        self.pos = own_pos(data, pos)

    def loc(self, key: str | None = None) -> Location:
        return location(self.file, key_pos(self.data, key, self.pos) if key else self.pos)

    def err(self, key: str | None, message: str) -> E:
        return self.error(f"{self.where}: {message}", location=self.loc(key))

    def check_keys(self, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for k in self.data:
            if k not in allowed:
                raise self.err(k, f"unknown key {k!r} (expected one of: {', '.join(sorted(allowed))})")

    def text(self, key: str, default: str | None = None, pattern: re.Pattern[str] | None = None) -> str:
        if key not in self.data:
            if default is None:
                raise self.err(None, f"missing {key!r}")
            return default
        v = self.data[key]
        if not isinstance(v, str) or not v:
            raise self.err(key, f"{key!r} must be a non-empty string")
        if pattern is not None and not pattern.match(v):
            raise self.err(key, f"{key!r}: {v!r} is not valid")
        return str(v)

    def flag(self, key: str, default: bool) -> bool:
        v = self.data.get(key, default)
        if not isinstance(v, bool):
            raise self.err(key, f"{key!r} must be true or false")
        return bool(v)

    def items(self, key: str) -> list[Any]:
        v = self.data.get(key, [])
        if v is None:
            return []
        if not isinstance(v, list):
            raise self.err(key, f"{key!r} must be a list")
        return v

    def str_list(self, key: str, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
        out: list[str] = []
        for item in self.items(key):
            if not isinstance(item, str) or (pattern is not None and not pattern.match(item)):
                raise self.err(key, f"{key!r}: {plain(item)!r} is not valid")
            if item in out:
                raise self.err(key, f"{key!r}: {item!r} listed twice")
            out.append(str(item))
        return tuple(out)

    def sub(self, key: str, value: object, where: str) -> Reader[E]:
        """A reader of ``value``, found under ``key``."""
        return Reader(self.error, self.file, value, where, value_pos(self.data, key, key_pos(self.data, key, self.pos)))

    def item(self, seq: list[Any], index: int, where: str) -> Reader[E]:
        """A reader of ``seq[index]`` (a list under one of this mapping's keys)."""
        return Reader(self.error, self.file, seq[index], where, value_pos(seq, index, self.pos))
