"""Inventory fuzz (issue 9): generated files, valid and broken, through load -> plan.

Each example is a whole inventory FILE built from a valid document, then
maybe broken in one of many ways (wrong type, bad value, missing or unknown
key, duplicate name, two masters, YAML syntax damage, truncation, junk
bytes). It is loaded from disk the way the CLI does and, when it loads,
planned against facts read from a data file (tests/unit/data/facts/).

Every outcome must be a plan or a PiprovError whose location (or whose every
problem's location) names the file, a line and a column; never any other
exception, and never a write: the directory is byte-for-byte the same after.
"""

from __future__ import annotations

import io
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from piprov.errors import PiprovError, ProblemList
from piprov.facts import NodeFacts, parse_facts
from piprov.graph import ComponentGraph, load_graph
from piprov.inventory import check_images, load
from piprov.plan import Plan
from piprov.provision import plan_cluster

FACTS_TEXT = (Path(__file__).parent / "data" / "facts" / "good-hypriot.txt").read_text()
EXAMPLES = 600
SEEN: Counter[str] = Counter()

_name = st.from_regex(r"rpi-[a-z0-9]{1,8}", fullmatch=True)
_octet = st.integers(1, 254)
# A valid inventory names a supported set (playbooks/versions.yaml): with the
# other images at the seed's defaults, a hyperkube of the 1.1 line.
_tag = st.sampled_from(["v1.1.2", "v1.1.3", "1.1.8", "v1.1.2-1"])


@st.composite
def valid_docs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 5))
    names = draw(st.lists(_name, min_size=n, max_size=n, unique=True))
    last = draw(st.lists(_octet, min_size=n, max_size=n, unique=True))
    nodes: list[dict[str, Any]] = []
    for i, (name, octet) in enumerate(zip(names, last)):
        node: dict[str, Any] = {"name": name, "address": f"192.168.1.{octet}", "role": "master" if i == 0 else "worker"}
        if draw(st.booleans()):
            node["arch"] = draw(st.sampled_from(["armv7l", "aarch64", "x86_64", "armv6l"]))
        if draw(st.booleans()):
            node["labels"] = {"shelf": draw(st.sampled_from(["top", "bottom", "a1"]))}
        if draw(st.booleans()):
            node["ssh"] = {"port": draw(st.integers(1, 65535))}
        nodes.append(node)
    doc: dict[str, Any] = {"cluster": {"name": draw(st.sampled_from(["pi-cluster", "lab", "k"]))}}
    if draw(st.booleans()):
        doc["ssh"] = {"user": "pirate", "port": 22, "host_key_policy": draw(st.sampled_from(["strict", "tofu"])),
                      "known_hosts": "known_hosts", "connect_timeout": draw(st.floats(0.5, 60))}
    if draw(st.booleans()):
        doc["images"] = {"registry": "gcr.io/google_containers",
                         "hyperkube": {"repository": "hyperkube", "tag": draw(_tag)}}
    if draw(st.booleans()):
        doc["network"] = {"flannel_network": "10.0.0.0/16", "flannel_subnet_len": draw(st.integers(17, 28)),
                          "flannel_backend": draw(st.sampled_from(["host-gw", "vxlan", "udp"])),
                          "mtu": draw(st.one_of(st.none(), st.integers(1280, 1500)))}
    doc["nodes"] = nodes
    return doc


_BAD_VALUES = [None, 1, -1, 1.5, True, "", " ", "x" * 300, [], {}, "192.168.1.300", "a_b", "ünïcode", "1e9",
               "../../etc/passwd", "$(reboot)", "\t", "0x10", "::1", "master", "10.0.0.0/8"]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for k in path[:-1]:
        doc = doc[k]
    return doc


def break_doc(doc: dict[str, Any], rnd: random.Random) -> str:
    """Damage the document in one structural way; return which."""
    paths = [p for p in _paths(doc) if p]
    path = rnd.choice(paths)
    parent = _parent(doc, path)
    how = rnd.choice(["value", "delete", "unknown-key", "dup-name", "two-masters", "dup-address"])
    if how == "value":
        parent[path[-1]] = rnd.choice(_BAD_VALUES)
    elif how == "delete":
        del parent[path[-1]]
    elif how == "unknown-key" and isinstance(parent, dict):
        parent[rnd.choice(["prot", "adress", "Role", "x", 7])] = "y"
    elif how == "dup-name":
        doc["nodes"].append(dict(doc["nodes"][0], address="192.168.1.255", role="worker"))
    elif how == "two-masters":
        doc["nodes"].append({"name": "rpi-two", "address": "192.168.1.250", "role": "master"})
    else:
        doc["nodes"].append({"name": "rpi-dup", "address": doc["nodes"][0]["address"], "role": "worker"})
    return how


def damage_text(text: str, rnd: random.Random) -> str:
    how = rnd.choice(["truncate", "junk-line", "bad-indent", "tab", "control", "unclosed", "anchor"])
    lines = text.splitlines(keepends=True)
    i = rnd.randrange(len(lines))
    if how == "truncate":
        return text[: rnd.randrange(len(text))]
    if how == "junk-line":
        lines.insert(i, rnd.choice(["{\n", "]]\n", "- - -\n", "key: [unclosed\n", "%TAG !x\n", ": :\n"]))
    elif how == "bad-indent":
        lines[i] = "   " + lines[i]
    elif how == "tab":
        lines[i] = "\t" + lines[i]
    elif how == "control":
        lines[i] = lines[i][:2] + rnd.choice(["\x00", "\x07", "\ufeff", "\x1b[31m"]) + lines[i][2:]
    elif how == "unclosed":
        lines[i] = lines[i].rstrip("\n") + ' "\n'
    else:
        lines.insert(i, "x: *nowhere\n")
    return "".join(lines)


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _facts(names: list[str]) -> dict[str, NodeFacts | PiprovError]:
    return {n: parse_facts(n, FACTS_TEXT) for n in names}


def _assert_located(e: PiprovError, file: str) -> None:
    problems = e.problems if isinstance(e, ProblemList) else [e]
    assert problems, str(e)
    for p in problems:
        assert p.location is not None, f"no location: {p}"
        assert p.location.file == file, (p.location, file)
        assert p.location.line is not None and p.location.line >= 1, f"no line: {p}"
        assert p.location.column is not None and p.location.column >= 1, f"no column: {p}"


@pytest.fixture(scope="module")
def graph() -> ComponentGraph:
    return load_graph()


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(doc=valid_docs(), seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(["valid", "structure", "text", "both"]))
def test_inventory_file_fuzz(doc: dict[str, Any], seed: int, mode: str, graph: ComponentGraph,
                             tmp_path_factory: pytest.TempPathFactory) -> None:
    rnd = random.Random(seed)
    d = tmp_path_factory.mktemp("fuzz", numbered=True)
    how = "valid"
    if mode in ("structure", "both"):
        how = break_doc(doc, rnd)
    buf = io.StringIO()
    yaml.safe_dump(doc, buf, sort_keys=False, default_flow_style=rnd.random() < 0.2, allow_unicode=True)
    text = buf.getvalue()
    if mode in ("text", "both"):
        text = damage_text(text, rnd)
        how = f"{how}+text"
    path = d / "inventory.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    before = _snapshot(d)
    outcome = "plan"
    try:
        inv = load(path)
        check_images(inv, graph.image_names())
        plan = plan_cluster(inv, graph, _facts([n.name for n in inv.nodes]))
        assert isinstance(plan, Plan)
        assert set(plan.errors) | {n.node for n in plan.nodes} == {n.name for n in inv.nodes}
    except PiprovError as e:
        outcome = "error"
        _assert_located(e, str(path))
    assert _snapshot(d) == before, "loading or planning wrote a file"
    SEEN["files"] += 1
    SEEN[outcome] += 1
    SEEN["broken" if how != "valid" else "valid"] += 1
    if how == "valid":
        assert outcome == "plan", f"a valid generated inventory was refused:\n{text}"


def test_fuzz_volume() -> None:
    """Runs after the fuzz (file order): >= 500 files, both outcomes well represented."""
    if SEEN["files"] == 0:
        pytest.skip("the fuzz test did not run in this session")
    print(f"\ninventory fuzz: {dict(SEEN)}")
    assert SEEN["files"] >= 500
    assert SEEN["valid"] >= 50 and SEEN["broken"] >= 150
    assert SEEN["plan"] >= 50 and SEEN["error"] >= 100
