"""Round-trip edits: only the edited text changes, under a lock, atomically, never invalid."""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path

import pytest

from piprov.errors import InventoryError, LockError, ProblemList
from piprov.inventory import edit, load
from piprov.inventory.edit import NewNode
from piprov.inventory.splice import render_scalar
from piprov.lock import FileLock

DATA = Path(__file__).parent / "data" / "inventory"


@pytest.fixture
def inv(tmp_path: Path) -> Path:
    p = tmp_path / "inventory.yaml"
    shutil.copy(DATA / "commented.yaml", p)
    p.chmod(0o640)
    return p


def original() -> str:
    return (DATA / "commented.yaml").read_text()


def changed(path: Path, old: str, new: str) -> None:
    """The file is the original with exactly ``old`` replaced by ``new``, byte for byte."""
    base = original()
    assert base.count(old) == 1, old
    assert path.read_text() == base.replace(old, new)


def test_set_scalar_keeps_quoting_and_comment(inv: Path) -> None:
    edit.set_value(inv, "images.hyperkube.tag", "v1.2.0")
    changed(inv, 'tag: "v1.1.2"}   # pinned', 'tag: "v1.2.0"}   # pinned')
    assert load(inv).images.specs["hyperkube"].tag == "v1.2.0"


def test_set_single_quoted(inv: Path) -> None:
    edit.set_value(inv, "cluster.name", "pies")
    changed(inv, "name: 'pi-cluster'    #", "name: 'pies'    #")


def test_set_node_address_in_block_and_flow_items(inv: Path) -> None:
    edit.set_value(inv, "nodes.rpi-node-1.address", "192.168.1.111")
    edit.set_value(inv, "nodes.rpi-node-2.address", "192.168.1.112")
    base = original().replace("address: 192.168.1.101", "address: 192.168.1.111")
    assert inv.read_text() == base.replace("address: 192.168.1.102", "address: 192.168.1.112")


def test_set_new_keys_are_inserted_in_place(inv: Path) -> None:
    edit.set_value(inv, "network.mtu", edit.parse_value("network.mtu", "1400"))
    changed(inv, "  etcd_port: 4001\n", "  etcd_port: 4001\n  mtu: 1400\n")


def test_set_creates_nested_mapping_with_section_indentation(inv: Path) -> None:
    edit.set_value(inv, "nodes.rpi-node-1.ssh.port", 2222)
    changed(inv, "      shelf: top   # keep\n", "      shelf: top   # keep\n    ssh:\n      port: 2222\n")
    edit.set_value(inv, "ssh.connect_timeout", 5)
    assert "    known_hosts: known_hosts\n    connect_timeout: 5\n" in inv.read_text()
    assert load(inv).node("rpi-node-1").ssh.port == 2222


def test_set_into_flow_mapping(inv: Path) -> None:
    edit.set_value(inv, "nodes.rpi-node-2.labels.kubernetes.io/role", "worker")
    changed(
        inv,
        "{name: rpi-node-2, address: 192.168.1.102, role: worker}",
        "{name: rpi-node-2, address: 192.168.1.102, role: worker, labels: {kubernetes.io/role: worker}}",
    )
    assert load(inv).node("rpi-node-2").labels == {"kubernetes.io/role": "worker"}


def test_numbers_as_strings_are_quoted(inv: Path) -> None:
    edit.set_value(inv, "images.pause.tag", edit.parse_value("images.pause.tag", "3.0"))
    changed(inv, 'tag: "2.0"}', 'tag: "3.0"}')
    edit.set_value(inv, "nodes.rpi-node-1.labels.shelf", "yes")
    assert 'shelf: "yes"   # keep' in inv.read_text()
    assert load(inv).node("rpi-node-1").labels["shelf"] == "yes"


def test_add_node_follows_item_style(inv: Path) -> None:
    edit.add_node(inv, NewNode("rpi-node-3", "192.168.1.103", mac="b8:27:eb:00:00:03"))
    changed(
        inv,
        "role: worker}\n",
        "role: worker}\n\n  - name: rpi-node-3\n    address: 192.168.1.103\n    role: worker\n"
        "    mac: b8:27:eb:00:00:03\n",
    )
    assert load(inv).node("rpi-node-3").mac == "b8:27:eb:00:00:03"


def test_remove_node_removes_only_its_lines(inv: Path) -> None:
    edit.remove_node(inv, "rpi-node-1")
    changed(
        inv,
        "  - name: rpi-node-1        # left\n    address: 192.168.1.101\n    role: worker\n"
        "    labels:\n      shelf: top   # keep\n\n",
        "",
    )


def test_remove_node_takes_the_comment_written_above_it(inv: Path) -> None:
    edit.remove_node(inv, "rpi-node-2")
    changed(inv, "\n  # a comment between nodes\n  - {name: rpi-node-2, address: 192.168.1.102, role: worker}\n", "")
    edit.remove_node(inv, "rpi-node-1")
    assert "# the master sits on the top shelf\n  - name: rpi-master" in inv.read_text()
    assert inv.read_text().endswith("role: master\n\n# trailing comment at the end of the file\n")


def test_rename(inv: Path) -> None:
    edit.rename_node(inv, "rpi-node-1", "pi-one")
    changed(inv, "- name: rpi-node-1        # left", "- name: pi-one        # left")


def test_add_then_remove_restores_the_file(inv: Path) -> None:
    edit.add_node(inv, NewNode("rpi-node-9", "192.168.1.109"))
    edit.remove_node(inv, "rpi-node-9")
    assert inv.read_text() == original()


@pytest.mark.parametrize(
    "action",
    [
        lambda p: edit.remove_node(p, "rpi-master"),
        lambda p: edit.rename_node(p, "rpi-node-1", "rpi-node-2"),
        lambda p: edit.set_value(p, "ssh.port", 99999),
        lambda p: edit.set_value(p, "nodes.rpi-node-1.role", "master"),
        lambda p: edit.add_node(p, NewNode("x", "192.168.1.100")),
        lambda p: edit.add_node(p, NewNode("bad;name", "192.168.1.200")),
    ],
)
def test_invalid_results_are_refused_and_nothing_changes(inv: Path, action: object) -> None:
    before = inv.read_bytes()
    st = inv.stat()
    with pytest.raises(ProblemList, match="not changed"):
        action(inv)  # type: ignore[operator]
    assert inv.read_bytes() == before
    assert inv.stat().st_ino == st.st_ino and inv.stat().st_mtime_ns == st.st_mtime_ns
    assert not [f for f in os.listdir(inv.parent) if f.endswith(".tmp")]


def test_unknown_names_and_paths(inv: Path) -> None:
    with pytest.raises(InventoryError, match="no node named 'nope'"):
        edit.remove_node(inv, "nope")
    with pytest.raises(InventoryError, match="did you mean 'port'"):
        edit.parse_value("ssh.prot", "22")
    with pytest.raises(InventoryError, match="needs an integer"):
        edit.parse_value("ssh.port", "twenty")


def test_an_invalid_file_can_be_fixed_by_set(tmp_path: Path) -> None:
    p = tmp_path / "i.yaml"
    p.write_text("cluster: {name: c}\nnodes:\n  - name: m\n    address: 10.1.1.300  # typo\n    role: master\n")
    with pytest.raises(ProblemList):
        load(p)
    edit.set_value(p, "nodes.m.address", "10.1.1.30")
    assert p.read_text().endswith("address: 10.1.1.30  # typo\n    role: master\n")


def test_mode_kept_and_symlink_followed(inv: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.yaml"
    link.symlink_to(inv)
    edit.set_value(link, "cluster.name", "other")
    assert link.is_symlink()
    assert (inv.stat().st_mode & 0o777) == 0o640
    assert load(inv).cluster_name == "other"


def test_lock_names_the_holder(inv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edit, "LOCK_WAIT_S", 0.1)
    # flock locks belong to the open file description: a second FileLock in
    # this process conflicts like another process would.
    with FileLock(edit.lock_path(inv), what="test holder"):
        with pytest.raises(LockError, match=f"pid {os.getpid()}"):
            edit.set_value(inv, "cluster.name", "x")


def _add_many(path: str, worker: int, count: int) -> None:
    for i in range(count):
        edit.add_node(Path(path), NewNode(f"n{worker}-{i}", f"192.168.{10 + worker}.{i + 1}"))


def test_concurrent_edits_from_processes_lose_nothing(inv: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_many, args=(str(inv), w, 8)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = {n.name for n in load(inv).nodes}
    assert {f"n{w}-{i}" for w in range(4) for i in range(8)} <= names
    assert len(names) == 3 + 32
    # The user's text before the nodes section is untouched.
    assert inv.read_text().startswith(original().split("  - {name: rpi-node-2")[0])


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from ruamel.yaml import YAML  # noqa: E402


@settings(max_examples=400, deadline=None)
@given(value=st.text(max_size=40) | st.sampled_from(["yes", "2.0", "~", "null", "a: b", "#x", "- x", "'", '"', "1e3"]))
def test_render_scalar_round_trips(value: str) -> None:
    for style in (None, "'", '"'):
        doc = YAML(typ="safe", pure=True).load("k: " + render_scalar(value, style) + "\n")
        assert doc["k"] == value


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != ""))
def test_any_string_round_trips_through_set(inv: Path, value: str) -> None:
    """Whatever the string (quotes, colons, '#', newlines, unicode), it is written
    quoted as needed, reads back identical, and only its line changes."""
    shutil.copy(DATA / "commented.yaml", inv)
    edit.set_value(inv, "ssh.identity_file", value)
    doc = YAML(typ="safe", pure=True).load(inv.read_text())
    assert doc["ssh"]["identity_file"] == value
    before, after = original().split('"~/.ssh/id_ed25519"')
    text = inv.read_text()
    assert text.startswith(before) and text.endswith(after)


_BITS = st.sampled_from(
    [
        "cluster: {name: c}", "cluster:\n  name: c", "nodes:", "nodes: []", "nodes: [{name: m, address: 10.1.1.1, role: master}]",
        "  - name: m\n    address: 10.1.1.1\n    role: master", "  - {name: w, address: 10.1.1.2, role: worker}",
        "- name: x", "  -\n    name: y", "ssh:", "ssh: {port: 22}", "ssh:\n  port: 22", "network:\n  mtu:",
        "images: {etcd: {repository: e, tag: '1'}}", "# comment", "", "  # indented comment", "labels: {a: b}",
        "&a nodes: *a", "nodes: !!str x", "? complex\n: key", "nodes:\n  - m\n  - 1",
    ]
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(_BITS, max_size=8).map("\n".join), which=st.integers(0, 4))
def test_edits_on_odd_files_never_traceback(tmp_path: Path, text: str, which: int) -> None:
    from piprov.errors import PiprovError

    p = tmp_path / "odd.yaml"
    p.write_text(text)
    actions = [
        lambda: edit.set_value(p, "ssh.port", 2200),
        lambda: edit.set_value(p, "nodes.m.address", "10.1.1.9"),
        lambda: edit.add_node(p, NewNode("n9", "10.1.1.99")),
        lambda: edit.remove_node(p, "w"),
        lambda: edit.set_value(p, "network.mtu", 1400),
    ]
    try:
        actions[which]()
    except PiprovError:
        assert p.read_text() == text  # refused: nothing written


def test_set_a_block_mapping_keeps_it_in_block_style(inv: Path) -> None:
    edit.set_value(inv, "nodes.rpi-node-1.labels", {"shelf": "bottom", "fan": "broken"})
    changed(inv, "    labels:\n      shelf: top   # keep\n", "    labels:\n      shelf: bottom\n      fan: broken   # keep\n")
