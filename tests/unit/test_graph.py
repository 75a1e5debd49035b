"""The component graph: validation cases from data/graph/, the seed stack, the node DAG."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from piprov.errors import GraphError
from piprov.graph import ComponentGraph, UnitDependencies, Vertex, components_dot, components_text, dag_dot, dag_text, load_graph, node_dag
from piprov.inventory.model import ImageSettings, Inventory, NetworkSettings, Node, SshSettings

DATA = Path(__file__).parent / "data" / "graph"
CASES = sorted(DATA.glob("*.yaml"))


def make_inventory(workers: int = 2) -> Inventory:
    ssh = SshSettings()
    nodes = [Node("rpi-master", "192.168.1.100", "master", ssh)]
    nodes += [Node(f"rpi-node-{i}", f"192.168.1.{100 + i}", "worker", ssh) for i in range(1, workers + 1)]
    return Inventory(
        path=Path("inventory.yaml"),
        cluster_name="pi-cluster",
        ssh=ssh,
        images=ImageSettings(),
        network=NetworkSettings(),
        nodes=tuple(nodes),
        known_hosts=Path("known_hosts"),
    )


@pytest.fixture(scope="module")
def graph() -> ComponentGraph:
    return load_graph()


@pytest.mark.parametrize("case", CASES, ids=[p.stem for p in CASES])
def test_invalid_playbook_is_an_error_naming_it(case: Path, tmp_path: Path) -> None:
    text = case.read_text()
    expected = re.search(r"^# error: (.*)$", text, re.M)
    line = re.search(r"^# line: (\d+)$", text, re.M)
    assert expected, f"{case.name} has no '# error:' line"
    playbooks = tmp_path / "playbooks"
    templates = tmp_path / "templates"
    playbooks.mkdir()
    templates.mkdir()
    (templates / "present.j2").write_text("x\n")
    shutil.copy(case, playbooks / "stack.yaml")
    with pytest.raises(GraphError) as e:
        load_graph(playbooks, templates_dir=templates)
    assert expected.group(1) in str(e.value)
    assert e.value.location is not None and e.value.location.file.endswith("stack.yaml")
    if line:
        assert e.value.location.line == int(line.group(1)), str(e.value)


def test_no_playbooks_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(GraphError, match="no playbooks"):
        load_graph(tmp_path)


def test_two_playbooks_make_one_graph(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    pb = tmp_path / "playbooks"
    pb.mkdir()
    h = "    health: [{probe: unit, target: x.service}]\n"
    (pb / "a.yaml").write_text("components:\n  - name: b\n    roles: [worker]\n    requires: [a]\n" + h)
    (pb / "b.yaml").write_text("vars: {x: 1}\ncomponents:\n  - name: a\n    roles: [worker, master]\n" + h)
    g = load_graph(pb)
    assert g.names == ["a", "b"]  # topological, across files
    assert g.vars == {"x": 1}


def test_seed_stack(graph: ComponentGraph) -> None:
    assert graph.names == ["firewall", "docker-bootstrap", "etcd", "flannel", "docker", "kube-master", "images",
                           "kube-worker", "etcd-backup"]
    assert [c.name for c in graph.for_role("master")] == [
        "firewall", "docker-bootstrap", "etcd", "flannel", "docker", "kube-master",
    ]
    assert [c.name for c in graph.for_role("worker")] == [
        "firewall", "docker-bootstrap", "flannel", "docker", "images", "kube-worker",
    ]
    assert graph.component("docker-bootstrap").units == ("docker-bootstrap.socket", "docker-bootstrap.service")
    assert graph.component("etcd").roles == ("master",)
    assert graph.component("etcd").etcd_keys is not None
    with pytest.raises(GraphError, match="no component named 'nope'"):
        graph.component("nope")


def test_every_component_has_a_health_gate_and_owns_its_unit_files(graph: ComponentGraph) -> None:
    for c in graph.components:
        assert c.health
        unit_files = {f.unit for f in c.files if f.unit}
        # A timer's service is started by its timer, never by piprov: a unit file, not a unit.
        timed = {u.removesuffix(".timer") + ".service" for u in c.units if u.endswith(".timer")}
        assert unit_files - timed == set(c.units), c.name


def test_restart_triggers(graph: ComponentGraph) -> None:
    flannel = graph.component("flannel").restart_triggers
    assert flannel["/etc/kubernetes/k8s.conf"] == ("k8s-flannel.service",)
    boot = graph.component("docker-bootstrap").restart_triggers
    assert boot["/etc/systemd/system/docker-bootstrap.socket"] == ("docker-bootstrap.socket", "docker-bootstrap.service")
    master = graph.component("kube-master").restart_triggers
    assert master["/etc/kubernetes/manifests/kube-apiserver.json"] == ()  # the kubelet watches the directory


def test_unit_dependencies_come_from_the_graph(graph: ComponentGraph) -> None:
    # Same-node component edges are Wants= + After= (playbooks/: edge: wants).
    assert graph.unit_dependencies("etcd") == UnitDependencies(
        after=["docker-bootstrap.socket", "docker-bootstrap.service"],
        wants=["docker-bootstrap.service"],
    )
    # The service's own socket stays Requires=: -H fd:// cannot run without it.
    assert graph.unit_dependencies("docker", unit="docker.service") == UnitDependencies(
        after=["docker.socket", "k8s-flannel.service"],
        requires=["docker.socket"],
        wants=["k8s-flannel.service"],
    )
    # A socket listens without waiting for anything.
    assert graph.unit_dependencies("docker", unit="docker.socket") == UnitDependencies()
    # The master's etcd: a network dependency. On the master it orders the start
    # (After=) without tying anything else; on workers, nothing.
    deps = graph.unit_dependencies("flannel", role="master")
    assert "k8s-etcd.service" in deps.after
    assert "k8s-etcd.service" not in deps.requires + deps.wants + deps.binds_to
    assert "k8s-etcd.service" not in graph.unit_dependencies("flannel", role="worker").after
    assert graph.unit_dependencies("docker-bootstrap", unit="docker-bootstrap.service") == UnitDependencies(
        after=["network-online.target", "docker-bootstrap.socket"],
        requires=["docker-bootstrap.socket"],
        wants=["network-online.target"],
    )


def test_restart_cascades_follow_the_cascade_edges(graph: ComponentGraph) -> None:
    got = [(c.name, on, why) for c, on, why in graph.restart_cascades("worker")]
    assert got == [
        ("flannel", ("docker-bootstrap.service",), "its container runs on that daemon and stops with it"),
        ("docker", ("k8s-flannel.service",), "the pod network it runs on may change"),
        ("kube-worker", ("docker.service",), "its containers run on that daemon"),
    ]
    assert [c.name for c, _, _ in graph.restart_cascades("master")] == ["etcd", "flannel", "docker", "kube-master"]


def test_managed_paths_and_units(graph: ComponentGraph) -> None:
    assert "/etc/kubernetes/manifests/kube-apiserver.json" in graph.managed_paths("master")
    assert "/etc/kubernetes/manifests/kube-apiserver.json" not in graph.managed_paths("worker")
    assert graph.managed_units("worker") == [
        "piprov-firewall.service", "docker-bootstrap.socket", "docker-bootstrap.service", "k8s-flannel.service",
        "docker.socket", "docker.service", "k8s-images.service", "k8s-worker.service", "k8s-proxy.service",
    ]


def test_node_dag(graph: ComponentGraph) -> None:
    dag = node_dag(graph, make_inventory(workers=2))
    order = dag.topological()
    assert len(order) == 6 + 6 * 2
    pos = {v: i for i, v in enumerate(order)}
    for e in dag.edges:
        assert pos[e.required] < pos[e.dependent]
    w1_flannel = Vertex("rpi-node-1", "flannel")
    assert set(dag.predecessors(w1_flannel)) == {
        Vertex("rpi-node-1", "docker-bootstrap"),
        Vertex("rpi-master", "etcd"),
        Vertex("rpi-node-1", "firewall"),
    }
    # The edge from the master's etcd carries etcd's health gate, rendered for the master.
    (edge,) = [e for e in dag.edges_into(w1_flannel) if e.required.component == "etcd"]
    assert [(h.probe, h.target) for h in edge.gate] == [
        ("unit", "k8s-etcd.service"),
        ("http", "https://192.168.1.100:4001/health"),
    ]
    assert dag.health[Vertex("rpi-node-2", "kube-worker")][-1].target == (
        "https://192.168.1.100:6443/api/v1/nodes/192.168.1.102"
    )
    assert set(dag.successors(Vertex("rpi-master", "kube-master"))) == {
        Vertex("rpi-node-1", "kube-worker"),
        Vertex("rpi-node-2", "kube-worker"),
    }
    # A failed etcd stops every flannel, docker and kubelet, but no docker-bootstrap.
    stopped = dag.descendants(Vertex("rpi-master", "etcd"))
    assert Vertex("rpi-node-2", "kube-worker") in stopped
    assert not any(v.component == "docker-bootstrap" for v in stopped)
    # Layer by layer: every firewall comes first, then every docker-bootstrap.
    assert [v.component for v in order[:6]] == ["firewall"] * 3 + ["docker-bootstrap"] * 3


def test_dag_renderings(graph: ComponentGraph) -> None:
    dag = node_dag(graph, make_inventory(workers=1))
    text = dag_text(dag)
    assert "rpi-node-1/flannel  <- rpi-node-1/docker-bootstrap, rpi-master/etcd" in text
    assert "node_ready https://192.168.1.100:6443/api/v1/nodes/192.168.1.101 (timeout 300s)" in text
    dot = dag_dot(dag)
    assert dot.startswith("digraph piprov {") and dot.rstrip().endswith("}")
    assert '"rpi-master/etcd" -> "rpi-node-1/flannel" [label="unit, http"];' in dot
    assert dot.count("subgraph cluster_") == 2


def test_master_only_inventory(graph: ComponentGraph) -> None:
    dag = node_dag(graph, make_inventory(workers=0))
    assert [v.component for v in dag.topological()] == [
        "firewall", "docker-bootstrap", "etcd", "flannel", "docker", "kube-master",
    ]


def test_component_graph_renderings(graph: ComponentGraph) -> None:
    text = components_text(graph)
    assert "flannel [master, worker] requires docker-bootstrap, etcd on master" in text
    assert "    units: docker-bootstrap.socket docker-bootstrap.service" in text
    dot = components_dot(graph)
    assert '"etcd" -> "flannel" [style=dashed, label="on master"];' in dot
    assert '"docker-bootstrap" -> "etcd";' in dot
    assert '"flannel" [label="flannel\\n(master, worker)"];' in dot


def test_critical_path(graph: ComponentGraph) -> None:
    dag = node_dag(graph, make_inventory(workers=2))
    waits = {v: 1.0 for v in dag.vertices}
    waits[Vertex("rpi-node-2", "docker")] = 10.0
    total, chain = dag.critical_path(waits)
    assert chain == [
        Vertex("rpi-master", "docker-bootstrap"),
        Vertex("rpi-master", "etcd"),
        Vertex("rpi-node-2", "flannel"),
        Vertex("rpi-node-2", "docker"),
        Vertex("rpi-node-2", "images"),
        Vertex("rpi-node-2", "kube-worker"),
    ]
    assert total == 15.0
    assert dag.critical_path({}) [0] == 0.0


def test_stack_knowledge(graph: ComponentGraph) -> None:
    # Every unit of the seed stack but the firewall's and the image pull's is disruptive: a restart
    # takes pods or the kubelet away. Re-applying the firewall's rules, or pulling an image again,
    # takes nothing away: no drain for them.
    assert graph.disruptive_units() == frozenset(u for c in graph.components if c.name not in ("firewall", "images", "etcd-backup")
                                                 for u in c.units)
    assert not graph.component("firewall").disruptive and not graph.component("images").disruptive
    assert graph.pod_network_prefix == "/coreos.com/network"
    assert graph.image_names() == ("etcd", "flannel", "hyperkube", "pause")
    assert graph.binaries() == {"docker": "/usr/bin/docker", "dockerd": "/usr/bin/dockerd",
                                "iptables": "/sbin/iptables", "ip6tables": "/sbin/ip6tables"}
    assert list(graph.binaries("worker")) == ["iptables", "ip6tables", "docker", "dockerd"]
    assert graph.component("kube-worker").images == ("hyperkube", "pause")
