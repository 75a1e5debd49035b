"""Rendering: master and worker on every arch, the flags the lab verified, no sleep anywhere."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from piprov import resources
from piprov.errors import PiprovError, RenderError
from piprov.graph import ComponentGraph, load_graph
from piprov.graph.dag import Vertex, node_dag
from piprov.inventory.model import ImageSettings, ImageSpec, Inventory, NetworkSettings, Node, SshSettings
from piprov.plan.desired import DesiredNode
from piprov.render import desired_state, facts_command_for

MACHINES = {"armv7l": "arm", "aarch64": "arm64", "x86_64": "amd64"}
REGISTRY = "10.77.0.1:5000"


def make_inventory(mtu: int | None = None) -> Inventory:
    ssh = SshSettings()
    return Inventory(
        path=Path("inventory.yaml"),
        cluster_name="pi-cluster",
        ssh=ssh,
        images=ImageSettings(
            registry=REGISTRY,
            insecure_registries=(REGISTRY, "10.77.0.2:5000"),
            specs=load_graph().image_defaults(),
            arch_overrides={"arm64": {"hyperkube": ImageSpec("hyperkube", "v1.1.3")}},
        ),
        network=NetworkSettings(mtu=mtu),
        nodes=(
            Node("rpi-master", "192.168.1.100", "master", ssh),
            Node("rpi-node-1", "192.168.1.101", "worker", ssh),
        ),
        known_hosts=Path("known_hosts"),
    )


@pytest.fixture(scope="module")
def graph() -> ComponentGraph:
    return load_graph()


def unit_file(text: str) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit file as {section: [(key, value)]}, continuation lines joined."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            current = sections.setdefault(m.group(1), [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None and re.fullmatch(r"[A-Za-z]+", key), f"bad unit line {line!r}"
        current.append((key, re.sub(r"\s+", " ", value.strip())))
    return sections


def values(sections: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in sections.get(section, []) if k == key]


def rendered(graph: ComponentGraph, role: str, machine: str, mtu: int | None = None) -> DesiredNode:
    name = "rpi-master" if role == "master" else "rpi-node-1"
    return desired_state(make_inventory(mtu), graph, name, machine)


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("role", ["master", "worker"])
def test_render_per_role_and_arch(graph: ComponentGraph, role: str, machine: str) -> None:
    d = rendered(graph, role, machine)
    arch = MACHINES[machine]
    assert d.arch == arch
    hyperkube_tag = "v1.1.3" if arch == "arm64" else "v1.1.2"
    texts = {f.path: f.content.decode() for f in d.files}
    assert len(texts) == len(d.files), "a path is rendered twice"

    for path, text in texts.items():
        # No readiness guessed by sleeping, in any file: no `sleep` command at
        # all, but for the check interval of a wait that checks each round
        # (`while kill -0 $MAINPID; do <check> && exit 0; sleep ...; done`).
        # Comments may say the word.
        commands = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        unguessed = re.sub(r"while kill -0 \$MAINPID[^;]*; do [^;]* && exit 0; sleep [^;]*; done", "", commands)
        assert not re.search(r"sleep [0-9]", unguessed), path
        assert not re.search(r"(?:^|[\s;&|('\"])sleep(?:\s|$)", unguessed, re.M), path
        assert "{{" not in text and "{%" not in text, path
        assert text.endswith("\n"), path
        for ref in re.findall(rf"{re.escape(REGISTRY)}/[\w.-]+:[\w.-]+", text):
            assert re.search(rf"-{arch}:", ref), f"{path}: {ref} is not for {arch}"

    for f in d.files:
        if not f.is_unit_file:
            continue
        unit = f.path.rsplit("/", 1)[1]
        # systemd expands %x specifiers in unit files: a stray % would be rewritten.
        assert "%" not in texts[f.path].replace("%%", ""), unit
        u = unit_file(texts[f.path])
        assert values(u, "Install", "WantedBy"), f"{unit} is not enabled at boot"
        comp = graph.component(f.component)
        deps = graph.unit_dependencies(comp, role=role, unit=unit)
        for key, units in (("After", deps.after), ("Requires", deps.requires), ("BindsTo", deps.binds_to),
                           ("Wants", deps.wants)):
            assert values(u, "Unit", key) == ([" ".join(units)] if units else []), (unit, key)
        if values(u, "Service", "Type") == ["oneshot"]:
            # The firewall and the image pull: done once, kept while active; Restart= is refused
            # for a oneshot before systemd 244. The firewall's ExecStop= takes its rules away.
            assert values(u, "Service", "RemainAfterExit") == ["yes"], unit
            assert bool(values(u, "Service", "ExecStop")) == (unit == "piprov-firewall.service"), unit
            assert not values(u, "Service", "Restart"), unit
        elif unit.endswith(".service"):
            assert values(u, "Service", "Restart") == ["always"], unit
            assert values(u, "Service", "RestartSec"), unit
            # Never dead for good; the spelling systemd 215 knows (see _start_limit.j2).
            assert values(u, "Service", "StartLimitInterval") == ["0"], unit
            assert not values(u, "Unit", "StartLimitIntervalSec"), unit
            # systemd 215/216 ignore a time span of "infinity" (see k8s-flannel.service.j2).
            for key in ("TimeoutStartSec", "TimeoutStopSec", "TimeoutSec", "RestartSec"):
                assert "infinity" not in values(u, "Service", key), (unit, key)
            for cmd in values(u, "Service", "ExecStart"):
                assert cmd.split()[0].lstrip("-") in ("/usr/bin/dockerd", "/usr/bin/docker"), cmd

    boot = unit_file(texts["/etc/systemd/system/docker-bootstrap.service"])
    (cmd,) = values(boot, "Service", "ExecStart")
    assert cmd.startswith(
        "/usr/bin/dockerd -H fd:// -p /var/run/docker-bootstrap.pid --data-root=/var/lib/docker-bootstrap "
        "--exec-root=/var/run/docker-bootstrap --iptables=false --ip-masq=false --bridge=none"
    )
    main = unit_file(texts["/etc/systemd/system/docker.service"])
    (cmd,) = values(main, "Service", "ExecStart")
    assert cmd.startswith("/usr/bin/dockerd -H fd:// --bridge=cbr0 --mtu=${FLANNEL_MTU}")
    assert "--bip" not in texts["/etc/systemd/system/docker.service"]
    for daemon in (boot, main):
        flags = values(daemon, "Service", "ExecStart")[0]
        assert f"--insecure-registry={REGISTRY}" in flags and "--insecure-registry=10.77.0.2:5000" in flags
    (pre,) = values(main, "Service", "ExecStartPre")
    assert "ip link add cbr0 type bridge" in pre and "${FLANNEL_SUBNET}" in pre
    assert values(main, "Service", "EnvironmentFile") == ["/etc/kubernetes/subnet.env"]

    flannel = texts["/etc/systemd/system/k8s-flannel.service"]
    fl = unit_file(flannel)
    (cmd,) = values(fl, "Service", "ExecStart")
    assert cmd == (
        "/usr/bin/docker -H unix:///var/run/docker-bootstrap.sock run --rm --name k8s-flannel --net=host "
        "--privileged -v /run/flannel:/run/flannel -v /dev/net:/dev/net -v /etc/kubernetes/pki:/etc/kubernetes/pki:ro "
        f"{REGISTRY}/flannel-{arch}:0.5.5 /opt/bin/flanneld --etcd-endpoints=https://${{K8S_MASTER_IP}}:4001 "
        "--etcd-certfile=/etc/kubernetes/pki/flannel.crt --etcd-keyfile=/etc/kubernetes/pki/flannel.key "
        f"--etcd-cafile=/etc/kubernetes/pki/ca.crt --iface={d.node.address} --ip-masq"
    )
    assert any("/etc/kubernetes/subnet.env" in v for v in values(fl, "Service", "ExecStartPost"))
    assert texts["/etc/kubernetes/k8s.conf"].splitlines()[-1] == "K8S_MASTER_IP=192.168.1.100"

    kubelet_unit = "k8s-master.service" if role == "master" else "k8s-worker.service"
    kl = unit_file(texts[f"/etc/systemd/system/{kubelet_unit}"])
    (cmd,) = values(kl, "Service", "ExecStart")
    assert "--net=host --pid=host --privileged" in cmd
    for mount in ("/sys:/sys:ro", "/var/run:/var/run:rw", "/var/lib/docker:/var/lib/docker:rw",
                  "/var/lib/kubelet:/var/lib/kubelet:rw", "/etc/kubernetes:/etc/kubernetes:ro"):
        assert f"-v {mount}" in cmd
    assert f"{REGISTRY}/hyperkube-{arch}:{hyperkube_tag} /hyperkube kubelet" in cmd
    assert f"--hostname-override={d.node.address}" in cmd
    assert f"--pod-infra-container-image={REGISTRY}/pause-{arch}:2.0" in cmd
    proxy = values(unit_file(texts["/etc/systemd/system/k8s-proxy.service"]), "Service", "ExecStart")[0]

    if role == "master":
        assert "--api-servers=http://127.0.0.1:8080" in cmd and "--config=/etc/kubernetes/manifests" in cmd
        assert proxy.endswith("/hyperkube proxy --kubeconfig=/etc/kubernetes/proxy.kubeconfig")
        etcd = values(unit_file(texts["/etc/systemd/system/k8s-etcd.service"]), "Service", "ExecStart")[0]
        assert f"{REGISTRY}/etcd-{arch}:2.1.1 /usr/local/bin/etcd --name=etcd" in etcd
        assert "--advertise-client-urls=https://192.168.1.100:4001" in etcd
        assert "--listen-client-urls=https://192.168.1.100:4001,http://127.0.0.1:4001" in etcd
        assert "--enable-v2" not in etcd  # etcd 2.1.1 has no such flag
        assert set(d.units) == {"firewall", "docker-bootstrap", "etcd", "flannel", "docker", "kube-master"}
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            pod = json.loads(texts[f"/etc/kubernetes/manifests/{name}.json"])
            assert pod["kind"] == "Pod" and pod["metadata"]["name"] == name
            assert pod["spec"]["hostNetwork"] is True
            (container,) = pod["spec"]["containers"]
            assert container["image"] == f"{REGISTRY}/hyperkube-{arch}:{hyperkube_tag}"
            assert container["command"][0] == "/hyperkube"
        api = json.loads(texts["/etc/kubernetes/manifests/kube-apiserver.json"])["spec"]["containers"][0]
        assert "--etcd-servers=http://127.0.0.1:4001" in api["command"]
        assert json.loads(d.etcd_keys["/coreos.com/network/config"]) == {
            "Network": "10.0.0.0/16",
            "SubnetLen": 24,
            "Backend": {"Type": "host-gw"},
        }
        assert d.etcdctl is not None and d.etcdctl.endswith("etcdctl --no-sync --peers=http://127.0.0.1:4001")
    else:
        assert "--api-servers=https://192.168.1.100:6443" in cmd and "--config" not in cmd
        assert proxy.endswith("/hyperkube proxy --kubeconfig=/etc/kubernetes/proxy.kubeconfig")
        assert set(d.units) == {"firewall", "docker-bootstrap", "flannel", "docker", "images", "kube-worker"}
        assert not any("manifests" in p for p in texts)
        assert d.etcd_keys == {} and d.etcdctl is None


def test_render_is_deterministic(graph: ComponentGraph) -> None:
    a = rendered(graph, "master", "armv7l")
    b = rendered(graph, "master", "armv7l")
    assert [(f.path, f.sha256) for f in a.files] == [(f.path, f.sha256) for f in b.files]


def test_mtu_setting_reaches_bridge_and_daemon(graph: ComponentGraph) -> None:
    d = rendered(graph, "worker", "armv7l", mtu=1400)
    text = next(f for f in d.files if f.path == "/etc/systemd/system/docker.service").content.decode()
    assert "--mtu=1400" in text and "ip link set cbr0 mtu 1400 up" in text
    assert "${FLANNEL_MTU}" not in text


def test_desired_node_metadata(graph: ComponentGraph) -> None:
    d = rendered(graph, "worker", "x86_64")
    assert d.hostname == "rpi-node-1" and d.name == "rpi-node-1"
    assert d.components == ["firewall", "docker-bootstrap", "flannel", "docker", "images", "kube-worker"]
    assert d.units["docker"] == ["docker.socket", "docker.service"]
    assert [f.path for f in d.files_for("flannel")] == [
        "/etc/kubernetes/k8s.conf",
        "/etc/systemd/system/k8s-flannel.service",
    ]
    kubeconfigs = {"/etc/kubernetes/kubelet.kubeconfig", "/etc/kubernetes/proxy.kubeconfig"}
    assert all(f.mode == (0o600 if f.path in kubeconfigs else 0o644) for f in d.files if f.path.startswith("/etc/"))
    assert all(f.owner == "root" and f.group == "root" for f in d.files)
    checks = node_dag(graph, make_inventory(None)).health[Vertex("rpi-node-1", "kube-worker")]
    assert checks[-1].target == "https://192.168.1.100:6443/api/v1/nodes/192.168.1.101"


def test_unsupported_arch_is_an_error(graph: ComponentGraph) -> None:
    with pytest.raises(PiprovError, match="unsupported architecture 'mips'"):
        rendered(graph, "worker", "mips")


def test_node_arch_override_wins(graph: ComponentGraph) -> None:
    from piprov.render import node_image_arch

    node = Node("n", "10.0.0.9", "worker", SshSettings(), arch="aarch64")
    assert node_image_arch(node, "armv7l") == "arm64"
    assert node_image_arch(Node("n", "10.0.0.9", "worker", SshSettings()), "armv6l") == "arm"


def _broken_copy(tmp_path: Path, template: str, text: str) -> tuple[ComponentGraph, Path]:
    src = resources.data_dir()
    shutil.copytree(src / "playbooks", tmp_path / "playbooks")
    shutil.copytree(src / "templates", tmp_path / "templates")
    (tmp_path / "templates" / template).write_text(text)
    return load_graph(tmp_path / "playbooks"), tmp_path / "templates"


def test_undefined_variable_names_template_and_line(tmp_path: Path) -> None:
    graph, templates = _broken_copy(tmp_path, "k8s.conf.j2", "# line 1\n# line 2\nX={{ master.adress }}\n")
    with pytest.raises(RenderError) as e:
        desired_state(make_inventory(), graph, "rpi-node-1", "armv7l", templates_dir=templates)
    assert "k8s.conf.j2:3" in str(e.value) and "adress" in str(e.value)


def test_syntax_error_names_template_and_line(tmp_path: Path) -> None:
    graph, templates = _broken_copy(tmp_path, "k8s.conf.j2", "ok\n{% if %}\n")
    with pytest.raises(RenderError) as e:
        desired_state(make_inventory(), graph, "rpi-node-1", "armv7l", templates_dir=templates)
    assert "k8s.conf.j2:2: syntax error" in str(e.value)


def test_error_in_included_template_names_it(tmp_path: Path) -> None:
    graph, templates = _broken_copy(tmp_path, "_header.j2", "# {{ no_such_thing }}\n")
    with pytest.raises(RenderError) as e:
        desired_state(make_inventory(), graph, "rpi-node-1", "armv7l", templates_dir=templates)
    assert "no_such_thing" in str(e.value) and ":1" in str(e.value)


def test_data_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(resources.DATA_DIR_ENV, str(tmp_path))
    assert resources.data_dir() == tmp_path
    with pytest.raises(PiprovError, match="playbooks/ directory is missing"):
        resources.playbooks_dir()
    (tmp_path / "templates").mkdir()
    assert resources.templates_dir() == tmp_path / "templates"


def test_facts_command_for_asks_what_the_plan_needs(graph: ComponentGraph) -> None:
    inv = make_inventory()
    master = facts_command_for(inv, graph, "rpi-master")
    worker = facts_command_for(inv, graph, "rpi-node-1")
    files = {name: next(line.split()[1:] for line in cmd.splitlines() if line.startswith("fs "))
             for name, cmd in (("master", master), ("worker", worker))}
    assert "/etc/kubernetes/manifests/kube-apiserver.json" in files["master"]
    assert "/etc/kubernetes/manifests/kube-apiserver.json" not in files["worker"]
    units = {name: next(line.split()[1:] for line in cmd.splitlines() if line.startswith("u "))
             for name, cmd in (("master", master), ("worker", worker))}
    assert "k8s-etcd.service" in units["master"] and "k8s-worker.service" in units["worker"]
    # etcd's keys are read from the controller (kube.etcd.read_keys), not on the node.
    assert "/coreos" not in master and "/coreos" not in worker
    assert graph.etcd_key_names("master") == ["/coreos.com/network/config"] and graph.etcd_key_names("worker") == []
    assert units["worker"].count("k8s-proxy.service") == 1


def test_binaries_from_facts_reach_the_units(graph: ComponentGraph) -> None:
    d = desired_state(make_inventory(), graph, "rpi-node-1", "x86_64", binaries={"dockerd": "/usr/sbin/dockerd"})
    texts = {f.path: f.content.decode() for f in d.files}
    assert "ExecStart=/usr/sbin/dockerd -H fd://" in texts["/etc/systemd/system/docker.service"]
    assert "ExecStart=/usr/sbin/dockerd -H fd://" in texts["/etc/systemd/system/docker-bootstrap.service"]
    assert "ExecStart=/usr/bin/docker -H unix:///var/run/docker.sock run" in texts["/etc/systemd/system/k8s-worker.service"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze (package systemd)")
@pytest.mark.parametrize("role", ["master", "worker"])
def test_units_pass_systemd_analyze_verify(graph: ComponentGraph, role: str, tmp_path: Path) -> None:
    """systemd's own parser reads every rendered unit without a complaint."""
    binaries = {b: p for b in ("docker", "dockerd") if (p := shutil.which(b, path="/usr/sbin:/usr/bin:/sbin:/bin"))}
    if len(binaries) < 2:
        pytest.skip("needs docker and dockerd installed (verify checks that ExecStart= programs exist)")
    d = desired_state(make_inventory(), graph, "rpi-master" if role == "master" else "rpi-node-1", "x86_64",
                      binaries=binaries)
    paths = []
    for f in d.files:
        if f.is_unit_file:
            p = tmp_path / f.path.rsplit("/", 1)[1]
            p.write_bytes(f.content)
            paths.append(str(p))
    res = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *paths],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_LOG_LEVEL": "notice"},
    )
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), res.stdout + res.stderr


@pytest.mark.parametrize("role", ["master", "worker"])
def test_each_unit_checks_its_own_precondition_first(graph: ComponentGraph, role: str) -> None:
    # With Wants= edges a unit may start before what it needs: its first
    # ExecStartPre fails fast until it holds, and Restart= retries it.
    d = rendered(graph, role, "armv7l")
    texts = {f.path.rsplit("/", 1)[1]: f.content.decode() for f in d.files if f.is_unit_file}
    needs = {
        "k8s-etcd.service": "-H unix:///var/run/docker-bootstrap.sock version",
        "k8s-flannel.service": "-H unix:///var/run/docker-bootstrap.sock version",
        "docker.service": "cmp -s /run/flannel/subnet.env /etc/kubernetes/subnet.env ||",
        "k8s-master.service": "-H unix:///var/run/docker.sock version",
        "k8s-worker.service": "-H unix:///var/run/docker.sock version",
        "k8s-proxy.service": "-H unix:///var/run/docker.sock version",
    }
    for unit, check in needs.items():
        if unit not in texts:
            continue
        first = values(unit_file(texts[unit]), "Service", "ExecStartPre")[0]
        assert check in first and not first.startswith("-"), (unit, first)
