"""Every unit directive and systemctl option piprov uses is in the systemd that runs it.

playbooks/versions.yaml's systemd section holds the table (``directives``,
``systemctl``: the first systemd version of each, cited). Every unit of every
supported profile and docker line is rendered for systemd versions at the
floor, at each line's edge and at the lab's 252; each directive it holds must
be listed, and exist in that version. The node scripts' systemctl calls are
checked the same way against the floor.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from piprov.facts import facts_command
from piprov.graph import HealthCheck, load_graph
from piprov.graph.versions import load_matrix
from piprov.plan.actions import Systemctl
from piprov.render import desired_state
from piprov.shell import keys, probes, script
from test_versions_render import _inventory, _sets

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = yaml.safe_load((ROOT / "playbooks" / "versions.yaml").read_text())["components"]["systemd"]
DIRECTIVES: dict[str, dict[str, Any]] = SYSTEMD["directives"]
SYSTEMCTL: dict[str, dict[str, Any]] = SYSTEMD["systemctl"]
MATRIX = load_matrix()
FLOOR = min(line.low for line in MATRIX.component("systemd").lines).major
# The floor, each line's first and last version, and the lab's (Debian 12).
SYSTEMDS = sorted({FLOOR, 217, 218, 252})
CASES = [(p, tags, s) for (p, tags), s in itertools.product(_sets(MATRIX), SYSTEMDS)]


def _directives(text: str) -> set[str]:
    """``Section.Key`` of every setting in a unit file (continuation lines skipped)."""
    found, section, continued = set(), "", False
    for line in text.splitlines():
        if not continued and line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif not continued and "=" in line and not line.startswith("#"):
            found.add(f"{section}.{line.split('=', 1)[0]}")
        continued = line.endswith("\\")
    return found


def test_the_floor_is_the_matrix_s_oldest_systemd() -> None:
    assert FLOOR == 215
    for p in MATRIX.profiles.values():
        assert MATRIX.component("systemd").line(p.lines["systemd"][0]).low.major == FLOOR, p.name


@pytest.mark.parametrize(("profile", "tags", "systemd"), CASES,
                         ids=[f"{p}-etcd{t['etcd']}-systemd{s}" for p, t, s in CASES])
def test_every_unit_uses_only_directives_its_systemd_has(profile: str, tags: dict[str, str], systemd: int,
                                                         tmp_path: Path) -> None:
    graph = load_graph()
    inv = _inventory(tmp_path, tags)
    seen: set[str] = set()
    for node, docker in itertools.product((inv.master, inv.workers[0]), ("1.11.2", "20.10.24+dfsg1")):
        desired = desired_state(inv, graph, node, "armv7l", docker=docker, systemd=str(systemd))
        for f in desired.files:
            if not f.is_unit_file:
                continue
            for d in _directives(f.content.decode()):
                seen.add(d)
                assert d in DIRECTIVES, f"{f.template}: {d}= is not in versions.yaml's systemd directives"
                since = DIRECTIVES[d]["since"]
                assert since <= systemd, f"{f.template}: {d}= needs systemd {since}, rendered for {systemd}"
    assert {"Service.ExecStartPost", "Socket.ListenStream", "Install.WantedBy"} <= seen
    assert ("Service.Delegate" in seen) == (systemd >= 218)


def test_a_directive_above_the_floor_says_how_it_is_handled() -> None:
    for name, d in {**DIRECTIVES, **SYSTEMCTL}.items():
        assert d["since"] >= 183 and d["source"], name
        if d["since"] > FLOOR:
            assert d.get("adapted"), f"{name} needs systemd {d['since']} > {FLOOR}: say how piprov handles it"


def _node_scripts() -> list[str]:
    """Every node script that calls systemctl, with every verb the planner uses."""
    verbs = set(re.findall(r'Systemctl\("([a-z-]+)"', (ROOT / "piprov" / "plan" / "model.py").read_text()))
    assert {"daemon-reload", "enable", "restart", "start"} <= verbs
    unit = HealthCheck(probe="unit", target="docker.service", timeout=5)
    return [
        script.script([Systemctl(v, ("docker.service",), quiet=True, no_block=True, no_reload=True) for v in sorted(verbs)],
                      journal=("docker.service",)),
        script.disable_units(["docker.service", "docker.socket"]),
        facts_command([], ["docker.service"]),
        probes.wait_command(unit),
        keys.disable_password_script(),
    ]


def test_every_systemctl_verb_and_option_is_in_the_floor() -> None:
    used: set[str] = set()
    for text in _node_scripts():
        for call in re.findall(r"systemctl((?: [^\s;|&)]+)+)", text):
            words = call.split()
            verb = next((w for w in words if not w.startswith("-")), None)
            if verb is not None and re.fullmatch(r"[a-z-]+", verb):
                used.add(verb)
            used.update(w.split("=", 1)[0] for w in words if w.startswith("-") and w != "--")
    assert {"stop", "disable", "show", "is-active", "--no-block", "--quiet"} <= used
    assert "--now" not in used  # systemd 220
    for word in used:
        assert word in SYSTEMCTL, f"systemctl {word} is not in versions.yaml's systemctl table"
        assert SYSTEMCTL[word]["since"] <= FLOOR, f"systemctl {word} needs systemd {SYSTEMCTL[word]['since']}"


def test_an_unparsable_or_missing_systemd_word_renders_the_newest_line(tmp_path: Path) -> None:
    graph = load_graph()
    inv = _inventory(tmp_path, MATRIX.default_profile.images)
    for word in (None, "banana"):
        d = desired_state(inv, graph, inv.master, "armv7l", systemd=word)
        text = next(f.content.decode() for f in d.files if f.path.endswith("/docker.service"))
        assert "Delegate=yes" in text
