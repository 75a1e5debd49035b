"""The hyperkube side of issue #16 as rendered, per profile (seed 1.1, last-hyperkube 1.18).

What must hold on the nodes: the insecure port on loopback only, the secure port
with the master's certificate and the cluster CA, the workers' kubelet and proxy on
https://master:6443 with their client certificates (kubeconfig files, 0600),
the kubelet's read-only port closed, 1.18's kubelet API authenticated and the
apiserver's kubelet and etcd client certificates where the release has the flags.
Every flag against the support matrix: tests/unit/test_versions_render.py.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from piprov.graph import ComponentGraph, Vertex, load_graph, node_dag
from piprov.inventory import Inventory, load
from piprov.render import desired_state

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory.example.yaml"
PROFILES = {"seed": "v1.1.2", "last-hyperkube": "v1.18.20"}
PKI = "/etc/kubernetes/pki"


@pytest.fixture(scope="module")
def graph() -> ComponentGraph:
    return load_graph()


def _inventory(tmp: Path, hyperkube: str, secure_port: int | None = None) -> Inventory:
    text = EXAMPLE.read_text()
    tags = {"hyperkube": hyperkube}
    if hyperkube.startswith("v1.18"):
        tags |= {"etcd": "3.4.23", "flannel": "v0.12.0", "pause": "3.2"}
    for image, tag in tags.items():
        text, n = re.subn(rf'^(  {image}: +{{repository: {image}, +tag: )"[^"]*"', rf'\g<1>"{tag}"', text, flags=re.M)
        assert n == 1, image
    if secure_port is not None:
        text, n = re.subn(r"apiserver_secure_port: 6443", f"apiserver_secure_port: {secure_port}", text)
        assert n == 1
    path = tmp / "inventory.yaml"
    path.write_text(text)
    return load(path)


def _files(graph: ComponentGraph, inv: Inventory, role: str) -> dict[str, Any]:
    node = inv.master if role == "master" else inv.workers[0]
    desired = desired_state(inv, graph, node, "armv7l", binaries={"docker": "/usr/bin/docker"}, docker="20.10.24")
    return {f.path: f for f in desired.files}


def _exec_start(text: str) -> list[str]:
    joined = text.replace("\\\n", " ")
    line = next(x for x in joined.splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.partition("=")[2])


def _apiserver(files: dict[str, Any]) -> list[str]:
    pod = json.loads(files["/etc/kubernetes/manifests/kube-apiserver.json"].content)
    return list(pod["spec"]["containers"][0]["command"])


@pytest.mark.parametrize("profile", PROFILES)
def test_apiserver_serves_tls_and_keeps_the_insecure_port_on_loopback(profile: str, graph: ComponentGraph,
                                                                      tmp_path: Path) -> None:
    files = _files(graph, _inventory(tmp_path, PROFILES[profile]), "master")
    cmd = _apiserver(files)
    for flag in ("--insecure-bind-address=127.0.0.1", "--insecure-port=8080", "--bind-address=0.0.0.0",
                 "--secure-port=6443", f"--tls-cert-file={PKI}/apiserver.crt",
                 f"--tls-private-key-file={PKI}/apiserver.key", f"--client-ca-file={PKI}/ca.crt"):
        assert flag in cmd, (profile, flag)
    pod = json.loads(files["/etc/kubernetes/manifests/kube-apiserver.json"].content)
    (mount,) = pod["spec"]["containers"][0]["volumeMounts"]
    (volume,) = pod["spec"]["volumes"]
    assert mount == {"name": "pki", "mountPath": PKI, "readOnly": True}
    assert volume == {"name": "pki", "hostPath": {"path": PKI}}
    if profile == "seed":
        # 1.1: no etcd TLS flags, no --anonymous-auth, no kubelet authentication to present a certificate to.
        assert "--etcd-servers=http://127.0.0.1:4001" in cmd
        assert not [w for w in cmd if w.startswith(("--etcd-c", "--etcd-k", "--anonymous-auth", "--kubelet-client"))]
    else:
        assert "--etcd-servers=https://192.0.2.100:4001" in cmd
        for flag in (f"--etcd-cafile={PKI}/ca.crt", f"--etcd-certfile={PKI}/apiserver-etcd-client.crt",
                     f"--etcd-keyfile={PKI}/apiserver-etcd-client.key", "--anonymous-auth=false",
                     f"--kubelet-client-certificate={PKI}/apiserver-kubelet-client.crt",
                     f"--kubelet-client-key={PKI}/apiserver-kubelet-client.key"):
            assert flag in cmd, flag


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("role", ["master", "worker"])
def test_kubelet_flags(profile: str, role: str, graph: ComponentGraph, tmp_path: Path) -> None:
    files = _files(graph, _inventory(tmp_path, PROFILES[profile]), role)
    unit = files[f"/etc/systemd/system/k8s-{role}.service"].content.decode()
    cmd = _exec_start(unit)
    assert "--kubeconfig=/etc/kubernetes/kubelet.kubeconfig" in cmd and "--read-only-port=0" in cmd
    assert "/etc/kubernetes:/etc/kubernetes:ro" in cmd  # the kubeconfig and pki/
    server = "http://127.0.0.1:8080" if role == "master" else "https://192.0.2.100:6443"
    if profile == "seed":
        # 1.1 names the server on the command line; the kubeconfig gives the credentials.
        assert f"--api-servers={server}" in cmd
        assert not [w for w in cmd if w.startswith(("--anonymous-auth", "--client-ca-file"))]
    else:
        assert not [w for w in cmd if w.startswith("--api-servers")]
        assert "--anonymous-auth=false" in cmd and f"--client-ca-file={PKI}/ca.crt" in cmd


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("role", ["master", "worker"])
def test_kubeconfigs_and_proxy(profile: str, role: str, graph: ComponentGraph, tmp_path: Path) -> None:
    files = _files(graph, _inventory(tmp_path, PROFILES[profile], secure_port=7443), role)
    server = "http://127.0.0.1:8080" if role == "master" else "https://192.0.2.100:7443"
    for path, user, cert in (("/etc/kubernetes/kubelet.kubeconfig", "kubelet", "kubelet"),
                             ("/etc/kubernetes/proxy.kubeconfig", "kube-proxy", "kube-proxy")):
        f = files[path]
        assert f.mode == 0o600 and f.owner == "root", path
        doc = yaml.safe_load(f.content)
        (cluster,) = doc["clusters"]
        (u,) = doc["users"]
        assert cluster["cluster"] == {"server": server, "certificate-authority": f"{PKI}/ca.crt"}
        assert u == {"name": user, "user": {"client-certificate": f"{PKI}/{cert}.crt",
                                            "client-key": f"{PKI}/{cert}.key"}}
        assert doc["current-context"] == user
        assert b"PRIVATE KEY" not in f.content  # paths only, never key material
    proxy = _exec_start(files["/etc/systemd/system/k8s-proxy.service"].content.decode())
    assert proxy[-1] == "--kubeconfig=/etc/kubernetes/proxy.kubeconfig"
    assert "/etc/kubernetes:/etc/kubernetes:ro" in proxy
    assert not [w for w in proxy if w.startswith("--master")]


def test_health_targets_use_the_secure_port(graph: ComponentGraph, tmp_path: Path) -> None:
    inv = _inventory(tmp_path, "v1.1.2", secure_port=7443)
    health = node_dag(graph, inv).health
    master = [h.target for h in health[Vertex(inv.master.name, "kube-master")] if h.probe in ("http", "node_ready")]
    worker = [h.target for h in health[Vertex(inv.workers[0].name, "kube-worker")] if h.probe == "node_ready"]
    assert master == ["https://192.0.2.100:7443/healthz", "https://192.0.2.100:7443/api/v1/nodes/192.0.2.100"]
    assert worker == [f"https://192.0.2.100:7443/api/v1/nodes/{inv.workers[0].address}"]


def test_inventory_secure_port_default_and_clashes(tmp_path: Path) -> None:
    from piprov.errors import PiprovError

    inv = load(EXAMPLE)
    assert inv.network.apiserver_secure_port == 6443 and inv.network.apiserver_port == 8080
    text = EXAMPLE.read_text().replace("  apiserver_secure_port: 6443", "  apiserver_secure_port: 8080")
    (tmp_path / "clash.yaml").write_text(text)
    with pytest.raises(PiprovError, match="apiserver_port and apiserver_secure_port are both 8080"):
        load(tmp_path / "clash.yaml")
    # Not given: the default 6443 still clashes with an etcd_port of 6443.
    text = re.sub(r"  apiserver_secure_port: .*\n", "", EXAMPLE.read_text()).replace("etcd_port: 4001", "etcd_port: 6443")
    (tmp_path / "etcd.yaml").write_text(text)
    with pytest.raises(PiprovError, match="etcd_port and apiserver_secure_port are both 6443"):
        load(tmp_path / "etcd.yaml")
