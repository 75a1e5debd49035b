"""Loading and validating the inventory: every problem at once, with file:line:column."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from piprov.errors import InventoryError, InventoryNotFoundError, ProblemList
from piprov.graph import load_graph
from piprov.inventory import check_images, load, load_text

DATA = Path(__file__).parent / "data" / "inventory"
EXAMPLE = Path(__file__).parents[2] / "inventory.example.yaml"


def problems(path: Path) -> list[tuple[int | None, int | None, str]]:
    with pytest.raises(ProblemList) as ei:
        load(path)
    out = []
    for p in ei.value.problems:
        assert isinstance(p, InventoryError)
        assert p.location is not None and p.location.file == str(path)
        out.append((p.location.line, p.location.column, p.message))
    return out


def test_example_loads() -> None:
    inv = load(EXAMPLE)
    assert inv.cluster_name == "pi-cluster"
    assert inv.master.name == "rpi-master"
    assert [n.name for n in inv.workers] == ["rpi-node-1", "rpi-node-2"]
    node2 = inv.node("rpi-node-2")
    assert node2.ssh.port == 2222 and node2.ssh.user == "pirate" and node2.arch == "aarch64"
    assert inv.node("rpi-node-1").labels == {"shelf": "top"}
    # Relative paths are relative to the inventory file, ~ is expanded.
    assert inv.known_hosts == EXAMPLE.parent / "known_hosts"
    assert inv.ssh.identity_file == str(Path("~/.ssh/id_ed25519").expanduser())
    defaults = load_graph().image_defaults()
    assert inv.images.ref("hyperkube", "arm64", defaults).endswith("hyperkube-arm64:v1.1.3")
    assert inv.images.ref("hyperkube", "arm", defaults).endswith("hyperkube-arm:v1.1.2")
    assert inv.master.location is not None and inv.master.location.line == 53


def test_every_problem_reported_with_position() -> None:
    got = problems(DATA / "bad-many.yaml")
    expected = [
        (2, 9, "cluster.name"),
        (5, 3, "unknown key 'prot' in ssh; did you mean 'port'?"),
        (6, 20, "did you mean 'strict'"),
        (9, 33, "images.etcd.tag must be a string, not a number"),
        (11, 5, "'armhf' is not one of amd64, arm, arm64"),
        (14, 20, "host bits set"),
        (15, 23, "flannel_subnet_len"),
        (21, 11, "'rpi_node_1' is not a valid host name"),
        (22, 14, "'192.168.1.300' is not a valid IP address"),
        (24, 5, "a second master"),
        (25, 14, "'192.168.1.100' is already used by nodes[rpi-master]"),
        (27, 11, "'sparc' is not one of"),
        (28, 5, "missing required key 'address'"),
        (31, 13, "70000 is not a valid port"),
    ]
    assert len(got) == len(expected), got
    for (line, col, msg), (eline, ecol, fragment) in zip(got, expected):
        assert (line, col) == (eline, ecol), (line, col, msg)
        assert fragment in msg


@pytest.mark.parametrize(
    "text, fragment, line",
    [
        ("cluster: {name: a}\nnodes:\n  - name: a\n    address: 10.1.1.1\n    role: worker\n", "no node has role: master", 2),
        ("cluster: {name: a}\nnodes: []\n", "the list is empty", 2),
        ("cluster: {name: a}\n", "missing required key 'nodes'", 1),
        ("- a\n- b\n", "must be a mapping", 1),
        ("cluster: {name: a}\nnodes:\n  - name: A\n    address: 10.1.1.1\n    role: master\n"
         "  - name: a\n    address: 10.1.1.2\n    role: worker\n", "name 'a' is already used", 6),
        ("cluster: {name: a}\nnetwork: {flannel_network: 10.0.0.0/16}\nnodes:\n  - name: a\n"
         "    address: 10.0.3.1\n    role: master\n", "inside the pod network", 5),
        ("cluster: {name: a}\nnetwork: {flannel_network: 10.0.0.0/16, flannel_subnet_len: 16}\nnodes:\n"
         "  - {name: a, address: 10.1.1.1, role: master}\n", "must be longer", 2),
        ("cluster: {name: a}\nnodes:\n  - {name: a, address: 10.1.1.1, role: master, mac: 'B8:27:EB:00:00:01'}\n",
         "not a MAC address", 3),
        ("cluster: {name: a}\nnodes:\n  - {name: a, address: 10.1.1.1, role: mastr}\n", "did you mean 'master'", 3),
        ("cluster: {name: a}\nnodes:\n  - {name: a, address: 10.1.1.1, role: master, ssh: {port: yes}}\n",
         "must be an integer, not a string", 3),
        ("cluster: {name: a}\nnodes:\n  - {name: a, address: 10.1.1.1, role: master, ssh: {port: true}}\n",
         "must be an integer, not a boolean", 3),
    ],
)
def test_single_problems(text: str, fragment: str, line: int) -> None:
    with pytest.raises(ProblemList) as ei:
        load_text(text, Path("inv.yaml"))
    msgs = [(p.location.line if p.location else None, p.message) for p in ei.value.problems]
    assert any(fragment in m and ln == line for ln, m in msgs), msgs


@pytest.mark.parametrize(
    "text, fragment, line",
    [
        ("cluster:\n  name: a\n  name: b\n", "duplicate key", 3),
        ("nodes: [a,\n", "YAML syntax error", 2),
        ("a:\n  b: 1\n   c: 2\n", "YAML syntax error", 3),
        ("a: *nowhere\n", "undefined alias", 1),
        ("a: \x00\n", "YAML syntax error", 1),
        ("", "empty", 1),
    ],
)
def test_syntax_errors_have_positions(text: str, fragment: str, line: int) -> None:
    with pytest.raises(InventoryError) as ei:
        load_text(text, Path("inv.yaml"))
    assert fragment in str(ei.value)
    assert ei.value.location is not None and ei.value.location.line == line


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="does not exist") as missing:
        load(tmp_path / "nope.yaml")
    assert isinstance(missing.value, InventoryNotFoundError)
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"cluster:\n  name: \xff\xfe\n")
    with pytest.raises(InventoryError, match="UTF-8") as ei:
        load(bad)
    assert ei.value.location is not None and ei.value.location.line == 2


def test_relative_paths_follow_the_file(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    f = sub / "inv.yaml"
    f.write_text(
        "cluster: {name: c}\nssh: {identity_file: keys/id, known_hosts: ../kh}\n"
        "nodes:\n  - {name: m, address: 10.1.1.1, role: master, ssh: {identity_file: /abs/key}}\n"
        "  - {name: w, address: 10.1.1.2, role: worker}\n"
    )
    inv = load(f)
    assert inv.known_hosts == sub / "../kh"
    assert inv.node("w").ssh.identity_file == str(sub / "keys/id")
    assert inv.master.ssh.identity_file == "/abs/key"


# Never a traceback, whatever the input: only InventoryError/ProblemList escape.

_yaml_bits = st.sampled_from(
    [
        "cluster:", "  name: x", "nodes:", "  - name: a", "    address: 10.0.0.1", "    role: master",
        "  - {name: b, address: 1.2.3.4, role: worker}", "ssh: {port: 99999}", "images:", "  etcd: 1",
        "  arch_overrides: {arm: {etcd: {repository: e, tag: 1}}}", "network: {mtu: x}", "<<: *a",
        "&a x: y", "? [a, b]\n: c", "- x", "!!binary aGk=", "labels: {1: 2}", "a: !!float .nan",
        "{", "]", "'", '"', "\t", "---", "...", "%YAML 1.1", "@", "\x00", "\ud7ff", "key: |", "  block",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_yaml_bits, max_size=12).map("\n".join) | st.text(max_size=200))
def test_fuzz_never_tracebacks(text: str) -> None:
    try:
        load_text(text, Path("fuzz.yaml"))
    except (InventoryError, ProblemList):
        pass


def test_unknown_image_names_refused_where_the_graph_is_known(tmp_path: Path) -> None:
    # The inventory keeps any well-formed image name; the playbooks' names are
    # checked once both are loaded, each problem at the key's file:line:column.
    f = tmp_path / "inv.yaml"
    f.write_text(
        "cluster: {name: c}\nimages:\n  etcdd: {repository: etcd, tag: '2.1.1'}\n"
        "  arch_overrides:\n    arm64:\n      hyperkub: {repository: hyperkube, tag: v1.2.0}\n"
        "nodes:\n  - {name: m, address: 10.1.1.1, role: master}\n"
    )
    inv = load(f)
    with pytest.raises(ProblemList) as ei:
        check_images(inv, load_graph().image_names())
    got = [(p.location.line, p.location.column, p.message) for p in ei.value.problems if p.location]
    assert got == [
        (3, 3, "unknown key 'etcdd' in images; did you mean 'etcd'?"),
        (6, 7, "unknown key 'hyperkub' in images.arch_overrides.arm64; did you mean 'hyperkube'?"),
    ]
    check_images(load(EXAMPLE), load_graph().image_names())
