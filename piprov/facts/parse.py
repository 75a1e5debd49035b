"""The framing of the facts output: find the records between the markers, check their count.

What is between :data:`~piprov.facts.command.BEGIN` and ``END <count>`` goes
to the record parsers; the count (and every file's size) lets a truncated or
mangled answer be told from a complete one, so it is never half-parsed.
"""

from __future__ import annotations

from piprov.facts.model import NodeFacts
from piprov.facts.records import FACTS, Collected, Output, parse_records, snippet, unreadable


def parse_facts(host: str, output: str) -> NodeFacts:
    """Parse :func:`~piprov.facts.command.facts_command` output; anything unexpected is a FactsError naming ``host``."""
    return node_facts(host, parse_records(host, framed_records(host, output)))


def framed_records(host: str, text: str, output: Output = FACTS) -> list[str]:
    """The record lines between ``output``'s markers, as many as the node counted."""
    lines = text.splitlines()
    try:
        begin = next(i for i, line in enumerate(lines) if line.strip() == output.begin)
    except StopIteration:
        first = next((line for line in lines if line.strip()), "")
        raise unreadable(
            host,
            f"no {output.name} in it (the command did not run?)"
            + (f"; it starts with {snippet(first)}" if first else "; it is empty"),
            output=output,
        ) from None
    end_idx: int | None = None
    declared = -1
    for i in range(begin + 1, len(lines)):
        if lines[i].startswith(output.end):
            tail = lines[i][len(output.end) :].strip()
            if not tail.isdigit():
                raise unreadable(host, f"bad end marker {snippet(lines[i])}", output=output)
            end_idx, declared = i, int(tail)
            break
    records = lines[begin + 1 : end_idx]
    if end_idx is None:
        raise unreadable(host, f"it is truncated: no end marker after {len(records)} records",
                         hint="the SSH session was cut; retry", output=output)
    if len(records) != declared:
        raise unreadable(host, f"it is mangled: {len(records)} records where the node counted {declared}",
                         output=output)
    return records


def node_facts(host: str, got: Collected, output: Output = FACTS) -> NodeFacts:
    """The facts, once the records every node sends are known to be there."""
    if got.machine is None:
        raise unreadable(host, "no architecture (uname -m) in it", output=output)
    if got.hostname is None:
        raise unreadable(host, "no hostname in it", output=output)
    return NodeFacts(
        host=host,
        machine=got.machine,
        hostname=got.hostname,
        os_id=got.os_id,
        os_version=got.os_version,
        files=got.files,
        units=got.units,
        addresses=tuple(got.addresses),
        binaries=got.binaries,
        uptime=got.uptime,
        versions=got.versions,
        dropins={u: tuple(ps) for u, ps in got.dropins.items()},
    )
