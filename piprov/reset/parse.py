"""The reset script's output -> NodeReset (strict: a line it does not print is an error naming the host)."""

from __future__ import annotations

from piprov.errors import FactsError
from piprov.reset.command import DONE
from piprov.reset.model import KINDS, Leftover, NodeReset


def parse_reset(host: str, stdout: str) -> NodeReset:
    out = NodeReset(host)
    done = False
    for n, line in enumerate(stdout.splitlines(), 1):
        if not line.strip():
            continue
        if done:
            raise _bad(host, f"line {n} after the end marker: {line[:80]!r}")
        if line == DONE:
            done = True
            continue
        verb, _, rest = line.partition(" ")
        kind, _, what = rest.partition(" ")
        if verb not in ("removed", "left") or kind not in KINDS or not what:
            raise _bad(host, f"line {n} is not 'removed|left KIND NAME': {line[:80]!r}")
        (out.removed if verb == "removed" else out.leftovers).append(Leftover(kind, what))
    if not done:
        raise _bad(host, "the output ended before the end marker (the connection dropped, or the script died)")
    return out


def _bad(host: str, what: str) -> FactsError:
    return FactsError(f"the reset script's output: {what}", host=host,
                      hint="run `piprov reset` again: every step of it is safe to repeat")
