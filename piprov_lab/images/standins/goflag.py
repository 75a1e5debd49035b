"""Go's standard ``flag`` package, as flanneld (0.5.5, 0.12.0) and etcd 2.1.1 parse their argv.

These programs use Go's ``flag`` (not spf13/pflag, which hyperkube uses), so the
rules are those of golang/go src/flag/flag.go ``(*FlagSet).parseOne`` (unchanged
in these respects from Go 1.4 to 1.13, the toolchains that built them):

* ``-name``, ``--name``, ``-name=value``, ``--name=value``; a non-bool flag takes
  the next argument as its value when there is no ``=`` (whatever it looks like);
  a bool flag takes a value only after ``=`` (``strconv.ParseBool`` spellings).
* parsing stops at the first non-flag argument or after ``--``; the rest are
  positional arguments.
* a name that is not defined fails with ``flag provided but not defined: -NAME``
  (``-h``/``-help``, when not defined, ask for the usage instead: ``ErrHelp``).
  What happens next (usage text, exit status) is the program's choice: the callers
  say what each real program does.
* ``-name`` with no value for a non-bool flag: ``flag needs an argument: -NAME``;
  ``---x`` or ``-=x``: ``bad flag syntax: ---x``.

Environment defaults (``coreos/pkg/flagutil.SetFlagsFromEnv``, etcd's
``pkg/flags.SetFlagsFromEnv``) fill flags not given on the command line from
``PREFIX_NAME`` (upper case, ``-`` as ``_``): see :func:`from_env`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")

Setter = Callable[[str], Any]  # parses one value, raises ValueError(reason) when invalid


class FlagError(Exception):
    """What Go's failf printed (first line of the program's complaint)."""


class HelpRequested(Exception):
    """``-h`` or ``-help`` given and not defined by the program (Go's ErrHelp)."""


def parse_bool(value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def parse_int(value: str) -> int:
    try:
        return int(value, 0)
    except ValueError:
        raise ValueError(f'strconv.ParseInt: parsing "{value}": invalid syntax') from None


def parse_uint(value: str) -> int:
    n = parse_int(value)
    if n < 0:
        raise ValueError(f'strconv.ParseUint: parsing "{value}": invalid syntax')
    return n


@dataclass(frozen=True)
class GoFlag:
    name: str
    default: Any = ""
    setter: Setter = str
    is_bool: bool = False
    repeated: bool = False  # a flag.Value that appends (flannel 0.12's flagSlice)
    usage: str = ""


def string(name: str, default: str = "", usage: str = "") -> GoFlag:
    return GoFlag(name, default, str, usage=usage)


def boolean(name: str, default: bool = False, usage: str = "") -> GoFlag:
    return GoFlag(name, default, parse_bool, is_bool=True, usage=usage)


def integer(name: str, default: int = 0, usage: str = "") -> GoFlag:
    return GoFlag(name, default, parse_int, usage=usage)


def uinteger(name: str, default: int = 0, usage: str = "") -> GoFlag:
    return GoFlag(name, default, parse_uint, usage=usage)


@dataclass
class Parsed:
    values: dict[str, Any]
    given: list[str] = field(default_factory=list)  # names set on the command line, in order
    args: list[str] = field(default_factory=list)  # positional arguments after the flags

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


def parse(argv: list[str], flags: list[GoFlag]) -> Parsed:
    """Parse argv as Go's flag.FlagSet.Parse does; raises FlagError or HelpRequested."""
    known = {f.name: f for f in flags}
    out = Parsed({f.name: ([] if f.repeated else f.default) for f in flags})
    i = 0
    while i < len(argv):
        arg = argv[i]
        if len(arg) < 2 or arg[0] != "-":
            break
        i += 1
        minuses = 2 if arg[1] == "-" else 1
        if minuses == 2 and len(arg) == 2:  # "--" ends the flags
            break
        name = arg[minuses:]
        if not name or name[0] in "-=":
            raise FlagError(f"bad flag syntax: {arg}")
        name, eq, value = name.partition("=")
        flag = known.get(name)
        if flag is None:
            if name in ("help", "h"):
                raise HelpRequested()
            raise FlagError(f"flag provided but not defined: -{name}")
        if flag.is_bool and not eq:
            value = "true"
        elif not eq:
            if i >= len(argv):
                raise FlagError(f"flag needs an argument: -{name}")
            value = argv[i]
            i += 1
        _set(out, flag, value, "-" + name)
    out.args = argv[i:]
    return out


def _set(out: Parsed, flag: GoFlag, value: str, shown: str) -> None:
    try:
        parsed = flag.setter(value)
    except ValueError as exc:
        kind = "invalid boolean value" if flag.is_bool else "invalid value"
        raise FlagError(f"{kind} {value!r} for flag {shown}: {exc}".replace("'", '"')) from None
    if flag.repeated:
        out.values[flag.name].append(parsed)
    else:
        out.values[flag.name] = parsed
    out.given.append(flag.name)


def from_env(out: Parsed, flags: list[GoFlag], prefix: str, env: dict[str, str] | None = None) -> None:
    """Fill flags not given on the command line from PREFIX_NAME variables (non-empty ones only),
    as coreos/pkg flagutil.SetFlagsFromEnv and etcd 2.1.1 pkg/flags/flag.go SetFlagsFromEnv do."""
    env = dict(os.environ) if env is None else env
    for flag in flags:
        if flag.name in out.given:
            continue
        key = f"{prefix}_{flag.name.upper().replace('-', '_')}"
        value = env.get(key, "")
        if value:
            try:
                _set(out, flag, value, key)
            except FlagError as exc:
                raise FlagError(f"invalid value {value!r} for {key}: {exc}".replace("'", '"')) from None


def defaults_text(flags: list[GoFlag]) -> str:
    """flag.PrintDefaults, roughly: one "  -name=default: usage" line per flag, sorted by name."""
    lines = []
    for f in sorted(flags, key=lambda f: f.name):
        default = str(f.default).lower() if f.is_bool else ("" if f.repeated else f.default)
        lines.append(f"  -{f.name}={default}: {f.usage}".rstrip(": "))
    return "\n".join(lines) + "\n"
