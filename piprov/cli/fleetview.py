"""A big fleet on screen: nodes that would print the same line are said once, with their names.

With 250 Pis, one line per node buries the two that failed under the 248 that did not. Every
text view that lists nodes (the plan, the live grid, the report, status, the check warnings) asks
this module to group nodes whose lines are identical. A group smaller than ``GROUP_AT`` is printed
node by node, as a small fleet always was; failures and stragglers are never grouped away. Pure:
names and keys in, names and keys out; ``--json`` never comes here (it stays per node).
"""

from __future__ import annotations

import re
from typing import Callable, Hashable, Iterable, Sequence, TypeVar

K = TypeVar("K", bound=Hashable)

# Fewer nodes than this sharing a line are printed one per line: a 3-node lab reads as before.
GROUP_AT = 6
# A live grid with more rows than this groups identical rows (a terminal is about 40 lines).
BIG_GRID = 24
# Names shown before "and N more" in a group's name list.
NAMES_SHOWN = 8

_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def grouped(items: Iterable[tuple[str, K]]) -> list[tuple[K, list[str]]]:
    """(node, key) pairs -> (key, nodes) in the order each key was first seen; nodes keep their order."""
    groups: dict[K, list[str]] = {}
    for name, key in items:
        groups.setdefault(key, []).append(name)
    return list(groups.items())


def name_ranges(names: Sequence[str]) -> list[str]:
    """Runs of consecutively numbered names as ``rpi-node-2..rpi-node-9`` (``pi-008..pi-012`` too),
    the rest as they are, in order."""
    parts: list[str] = []
    run: list[tuple[str, int, str, str]] = []  # (prefix, number, its digits, name)

    def flush() -> None:
        if len(run) >= 3:
            parts.append(f"{run[0][3]}..{run[-1][3]}")
        else:
            parts.extend(r[3] for r in run)
        run.clear()

    for name in names:
        m = _NUMBERED.match(name)
        if m is None:
            flush()
            parts.append(name)
            continue
        prefix, digits = m.group(1), m.group(2)
        num = int(digits)
        if run and not _follows(run[-1][:3], (prefix, num, digits)):
            flush()
        run.append((prefix, num, digits, name))
    flush()
    return parts


def _follows(prev: tuple[str, int, str], this: tuple[str, int, str]) -> bool:
    """``this`` name is the next of ``prev`` in a range that reads right: node-9, node-10; pi-009, pi-010
    (never node-09 after node-8: the range's ends would not say which spelling lies between)."""
    (p1, n1, d1), (p2, n2, d2) = prev, this
    unpadded = d1 == str(n1) and d2 == str(n2)
    return p1 == p2 and n2 == n1 + 1 and (unpadded or len(d1) == len(d2))


def names_text(names: Sequence[str], *, shown: int = NAMES_SHOWN) -> str:
    """``a..b, c (N nodes)`` (at most ``shown`` parts, then ``and K more``); a short list as it is."""
    if len(names) < GROUP_AT:
        return ", ".join(names)
    parts = name_ranges(names)
    more = len(parts) - shown
    return ", ".join(parts[:shown]) + (f" and {more} more" if more > 0 else "") + f" ({len(names)} nodes)"


def rows_to_show(rows: Sequence[tuple[str, K]], *, rank: Callable[[K], int], limit: int = BIG_GRID,
                 ) -> list[tuple[str, K]]:
    """A grid's rows for a screen: (label, row), at most about ``limit`` of them.

    ``rank`` orders rows by urgency (0 first: a failure; then a straggler; the highest rank is
    "nothing to see"). Few rows are shown as they are. Many: the most urgent on their own, first, up
    to half the screen; every other row merged with the rows identical to it, one line labelled by
    their names, most urgent groups first.
    """
    if len(rows) <= limit:
        return list(rows)
    calm = max(rank(row) for _, row in rows)
    ordered = sorted(rows, key=lambda r: rank(r[1]))  # stable: the inventory's order within a rank
    alone = [(name, row) for name, row in ordered if rank(row) < calm][: limit // 2]
    taken = {name for name, _ in alone}
    rest = grouped((name, row) for name, row in ordered if name not in taken)
    return alone + [(names_text(names, shown=2) if len(names) > 1 else names[0], row) for row, names in rest]
