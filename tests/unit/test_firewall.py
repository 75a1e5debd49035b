"""The per-node firewall (templates/piprov-firewall.service.j2): what its unit does to iptables.

Its ExecStart=/ExecStop= sh lines run under busybox sh and dash (as in
test_floor.py) against a fake iptables that keeps chains in files and refuses
what the real one refuses (-N of an existing chain, -F/-A of a missing one, -D
of a rule that is not there), so applying twice, and stopping, are checked by
their effect; and every option the unit passes must be one iptables 1.4.21 has
(the template cites the source).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from piprov.graph import load_graph
from piprov.provision import plan_cluster
from piprov.render import desired_state
from test_floor import busybox_bin
from test_floor import BUSYBOX, SHELLS
from test_plan import build_facts, make_inventory

UNIT = "/etc/systemd/system/piprov-firewall.service"
CHAIN = "PIPROV-INPUT"

# Everything the unit may pass to iptables: the options of 1.4.21 it uses
# (iptables/iptables.c long options and libipt_REJECT.c at 482c6d37).
OPTIONS_1_4_21 = {"-w", "-N", "-F", "-X", "-A", "-C", "-I", "-D", "-i", "-s", "-p", "--dport", "-j",
                  "--reject-with"}

FAKE_IPTABLES = r"""#!/bin/sh
# A fake iptables: chain NAME is the file $STATE/$(basename $0)/NAME, one rule a line.
d="$STATE/$(basename "$0")"
mkdir -p "$d"
[ -e "$d/INPUT" ] || : > "$d/INPUT"
printf '%s\n' "$*" >> "$d/calls"
[ "$1" = -w ] || { echo "no -w" >&2; exit 2; }
shift
op=$1; c=$2; shift 2
case $op in
  -N) [ ! -e "$d/$c" ] || { echo "iptables: Chain already exists." >&2; exit 1; }; : > "$d/$c" ;;
  -F) [ -e "$d/$c" ] || exit 1; : > "$d/$c" ;;
  -X) [ -e "$d/$c" ] && [ ! -s "$d/$c" ] || exit 1
      ! grep -q -- "-j $c\$" "$d/INPUT" || exit 1; rm "$d/$c" ;;
  -A) [ -e "$d/$c" ] || exit 1; printf '%s\n' "$*" >> "$d/$c" ;;
  -C) [ -e "$d/$c" ] && grep -qxF -- "$*" "$d/$c" ;;
  -I) [ "$1" = 1 ] && shift; { printf '%s\n' "$*"; cat "$d/$c"; } > "$d/$c.new"; mv "$d/$c.new" "$d/$c" ;;
  -D) grep -qxF -- "$*" "$d/$c" || exit 1
      awk -v r="$*" 'done || $0 != r { print; next } { done = 1 }' "$d/$c" > "$d/$c.new"; mv "$d/$c.new" "$d/$c" ;;
  *) echo "fake iptables: unexpected $op" >&2; exit 2 ;;
esac
"""

pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="needs busybox")


def _unit(role: str = "worker") -> str:
    inv = make_inventory()
    node = inv.master if role == "master" else inv.workers[0]
    d = desired_state(inv, load_graph(), node, "armv7l", docker="1.11.2", systemd="215")
    return next(f for f in d.files if f.path == UNIT).content.decode()


def _lines(unit: str, key: str) -> list[tuple[str, str]]:
    """(sh options, script) of each ``key=/bin/sh -c '...'`` line."""
    out = []
    for line in unit.replace("\\\n", " ").splitlines():
        k, _, value = line.partition("=")
        if k == key:
            words = shlex.split(value)
            assert words[0] == "/bin/sh", line
            out.append((words[1], words[2]))
    return out


@pytest.fixture(params=SHELLS)
def node(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[list[str], dict[str, str], Path]:
    """(the shell, an env of busybox applets + fake iptables/ip6tables, the fakes' state dir)."""
    assert BUSYBOX is not None
    bindir = busybox_bin(tmp_path / "bin", dict.fromkeys(("iptables", "ip6tables"), FAKE_IPTABLES))
    shell = [str(shutil.which("dash"))] if request.param == "dash" else [BUSYBOX, "sh"]
    state = tmp_path / "state"
    state.mkdir()
    return shell, {"PATH": str(bindir), "STATE": str(state), "LC_ALL": "C"}, state


def _run(node: tuple[list[str], dict[str, str], Path], unit: str, key: str) -> None:
    shell, env, _ = node
    for opts, script in _lines(unit, key):
        # The unit names /sbin/iptables (the playbook's default path): the fakes stand in.
        script = script.replace("/sbin/", "")
        out = subprocess.run([*shell, opts, script], capture_output=True, text=True, env=env, timeout=30)
        assert out.returncode == 0, f"{key}: {out.stderr}"


def _chains(state: Path, prog: str = "iptables") -> dict[str, list[str]]:
    d = state / prog
    return {p.name: p.read_text().splitlines() for p in d.iterdir() if p.name != "calls"} if d.exists() else {}


def test_the_rules_let_members_and_loopback_through_and_refuse_the_rest() -> None:
    unit = _unit()
    ((_, v4), (_, v6)) = _lines(unit, "ExecStart")
    assert "-s $a -j RETURN" in v4 and "for a in 192.168.1.100 192.168.1.101 192.168.1.102;" in v4
    assert "-s " not in v6  # members have IPv4 addresses: over IPv6 only loopback passes
    assert v6.startswith("[ -e /proc/net/if_inet6 ] || exit 0;")
    # The ports that cannot authenticate, and none that does (6443, etcd's) or SSH.
    assert "for p in 10250 10255 4194;" in v4 and "for p in 8285 8472;" in v4
    for port in ("6443", "4001", "8080", " 22"):
        assert f"--dport {port}" not in v4 and f" {port} " not in v4.split("for p in", 1)[1]
    assert "iptables-restore" not in unit


def test_every_option_is_one_iptables_1_4_21_has() -> None:
    for role in ("master", "worker"):
        for key in ("ExecStart", "ExecStop"):
            for _, script in _lines(_unit(role), key):
                for call in re.findall(r"/sbin/ip6?tables ([^;|&]*)", script):
                    opts = {w for w in call.split() if w.startswith("-")}
                    assert opts <= OPTIONS_1_4_21, (key, call)
                    assert call.startswith("-w "), call  # wait for the xtables lock (docker, kube-proxy)


def test_applying_twice_is_one_chain_and_one_jump(node: tuple[list[str], dict[str, str], Path]) -> None:
    unit = _unit()
    _, _, state = node
    for _ in range(2):
        _run(node, unit, "ExecStart")
    v4 = _chains(state)
    assert v4["INPUT"] == [f"-j {CHAIN}"]
    assert v4[CHAIN] == [
        "-i lo -j RETURN",
        "-s 192.168.1.100 -j RETURN", "-s 192.168.1.101 -j RETURN", "-s 192.168.1.102 -j RETURN",
        "-p tcp --dport 10250 -j REJECT --reject-with tcp-reset",
        "-p tcp --dport 10255 -j REJECT --reject-with tcp-reset",
        "-p tcp --dport 4194 -j REJECT --reject-with tcp-reset",
        "-p udp --dport 8285 -j REJECT --reject-with icmp-port-unreachable",
        "-p udp --dport 8472 -j REJECT --reject-with icmp-port-unreachable",
    ]
    if Path("/proc/net/if_inet6").exists():
        v6 = _chains(state, "ip6tables")
        assert v6["INPUT"] == [f"-j {CHAIN}"]
        assert v6[CHAIN][0] == "-i lo -j RETURN" and not any(r.startswith("-s ") for r in v6[CHAIN])
        assert v6[CHAIN][-1] == "-p udp --dport 8472 -j REJECT --reject-with icmp6-port-unreachable"


def test_stop_removes_every_jump_and_the_chain(node: tuple[list[str], dict[str, str], Path]) -> None:
    unit = _unit()
    shell, env, state = node
    _run(node, unit, "ExecStart")
    # A jump added by hand as well: the unit removes that one too.
    subprocess.run([*shell, "-c", f"iptables -w -I INPUT 1 -j {CHAIN}"], env=env, check=True)
    _run(node, unit, "ExecStop")
    assert _chains(state) == {"INPUT": []}
    # Stopping what is not there is no error (a stop after a failed start).
    _run(node, unit, "ExecStop")


def test_a_node_without_iptables_is_named() -> None:
    graph = load_graph()
    spec = yaml.safe_load((Path(__file__).parent / "data/plan/converged-master.yaml").read_text())["facts"]
    facts = build_facts(spec, "rpi-master", graph)
    facts = replace(facts, binaries={**facts.binaries, "iptables": None})
    plan = plan_cluster(make_inventory(), graph, {"rpi-master": facts})
    err = plan.errors["rpi-master"]
    assert str(err) == "192.168.1.100: iptables is not installed: no iptables in sudo's PATH"
    assert err.hint is not None and "component firewall" in err.hint
