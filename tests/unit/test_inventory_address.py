"""A node's address must be a unicast IPv4 address: the seed stack is IPv4-only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from piprov.errors import ProblemList
from piprov.inventory import load_text
from piprov.inventory.validate import address_problem

INV = "cluster: {{name: a}}\nnodes:\n  - name: a\n    address: '{addr}'\n    role: master\n"


@pytest.mark.parametrize(
    "addr, fragment",
    [
        ("fe80::1", "IPv6"),
        ("2001:db8::10", "IPv6"),
        ("::ffff:192.168.1.5", "IPv6"),
        ("169.254.7.9", "link-local"),
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("239.1.1.1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("192.168.1.300", "not a valid IP address"),
    ],
)
def test_refused_addresses(addr: str, fragment: str) -> None:
    why = address_problem(addr)
    assert why is not None and fragment in why
    with pytest.raises(ProblemList) as ei:
        load_text(INV.format(addr=addr), Path("inv.yaml"))
    hits = [p for p in ei.value.problems if fragment in p.message]
    assert hits, [p.message for p in ei.value.problems]
    loc = hits[0].location
    assert loc is not None and (loc.file, loc.line) == ("inv.yaml", 4)


@pytest.mark.parametrize("addr", ["192.168.1.20", "10.0.0.1", "172.16.5.4", "192.0.2.100", "100.64.0.1", "8.8.8.8"])
def test_unicast_ipv4_passes(addr: str) -> None:
    assert address_problem(addr) is None
    assert load_text(INV.format(addr=addr), Path("inv.yaml")).master.address == addr


def test_cli_shows_one_line_and_exit_1(tmp_path: Path) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(INV.format(addr="fe80::1"))
    p = subprocess.run([sys.executable, "-m", "piprov", "inventory", "validate", "-i", str(inv)],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "400"})
    assert p.returncode == 1
    assert "Traceback" not in p.stderr + p.stdout
    lines = [ln for ln in p.stderr.splitlines() if "IPv6" in ln]
    assert len(lines) == 1 and f"{inv}:4:" in lines[0], p.stderr
