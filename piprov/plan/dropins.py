"""Drop-ins on the units piprov manages: what each changes of piprov's unit, and what to do about it.

systemd merges every ``UNIT.d/*.conf`` in /etc and /run into the unit
(systemd.unit(5), "drop-in"), so a drop-in can replace what piprov's unit
says (Docker's install script on Raspbian wrote ``docker.service.d/overlay.conf``
with ``ExecStart=`` and its own ``ExecStart=``: the main daemon then runs without
``--bridge=cbr0``, and every health gate still passes). Three cases:

- it only sets directives piprov's unit sets: it overrides piprov, it is drift,
  and ``up`` removes it (the unit is piprov's);
- it only sets directives piprov's unit does not (``Environment=`` for a proxy,
  ``CPUQuota=``): the user's own additions, left alone, no change;
- both: removing it would lose the user's settings and keeping it overrides
  piprov's, so the node cannot be planned until the user splits it.
"""

from __future__ import annotations

from dataclasses import dataclass

from piprov.errors import PlanError
from typing import Mapping

from piprov.facts.model import FileFacts


BACKSLASH = "\\"


@dataclass(frozen=True)
class DropinRemoval:
    """A drop-in that overrides piprov's unit: removed, then systemd reloads and the unit restarts."""

    unit: str
    path: str
    overrides: tuple[str, ...]  # "Service.ExecStart", ...

    @property
    def reason(self) -> str:
        what = ", ".join(f"{d.split('.', 1)[1]}=" for d in self.overrides)
        return f"drop-in overrides piprov's {what} of {self.unit}: removed (the unit is piprov's)"


def entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of each assignment in a unit file or drop-in, in order; a value's
    continuation lines (a trailing backslash) joined with a space; comments and blank lines skipped."""
    found: list[tuple[str, str, str]] = []
    section = ""
    continued = False
    joins = False  # the line being continued is an assignment in ``found[-1]``
    for raw in text.splitlines():
        line = raw.strip()
        if continued:
            if joins:
                s, k, v = found[-1]
                found[-1] = (s, k, f"{v} {line.removesuffix(BACKSLASH).strip()}".strip())
            continued = line.endswith(BACKSLASH)
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, eq, value = line.partition("=")
        joins = bool(eq and section)
        if joins:
            found.append((section, key.strip(), value.removesuffix(BACKSLASH).strip()))
        continued = line.endswith(BACKSLASH)
    return found


def directives(text: str) -> set[str]:
    """The ``Section.Key`` pairs a unit file or drop-in sets."""
    return {f"{section}.{key}" for section, key, _ in entries(text)}


def plan_dropins(unit: str, piprovs: str, dropins: tuple[str | None, ...], files: Mapping[str, FileFacts],
                 host: str) -> list[DropinRemoval]:
    """The drop-ins of ``unit`` to remove; ``piprovs`` is piprov's own unit file. Pure.

    Raises :class:`PlanError` for a drop-in that cannot be judged (unreadable,
    an odd name) or that mixes overrides with settings of the user's own.
    """
    ours = directives(piprovs)
    removals = []
    for path in dropins:
        f = files.get(path) if path is not None else None
        text = f.text if f is not None and f.exists and f.is_regular else None
        if path is None or text is None:
            where = path or f"a drop-in of {unit} with an unusual file name"
            raise PlanError(f"{where}: cannot read it to see what it changes of piprov's {unit}", host=host,
                            hint=f"look at /etc/systemd/system/{unit}.d/ and /run/systemd/system/{unit}.d/: "
                            "remove or rename it (systemd reads only *.conf there)")
        theirs = directives(text)
        overrides = tuple(sorted(theirs & ours))
        additions = sorted(theirs - ours)
        if overrides and additions:
            raise PlanError(
                f"{path} overrides piprov's {', '.join(d.split('.', 1)[1] + '=' for d in overrides)} of {unit} "
                f"and also sets {', '.join(d.split('.', 1)[1] + '=' for d in additions)} of its own: removing it "
                "would lose those settings, keeping it overrides piprov's unit", host=host,
                hint=f"move your own settings to a drop-in of their own in /etc/systemd/system/{unit}.d/ and "
                f"delete the overriding lines from {path}; then piprov leaves your drop-in alone")
        if overrides:
            removals.append(DropinRemoval(unit, path, overrides))
    return removals
