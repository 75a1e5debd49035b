"""The cluster PKI: the CA next to the inventory, leaves kept or re-issued, keys private, secrets out of plans."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import stat
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from piprov.cli import app
from piprov.cli.views import plan_json, print_plan
from piprov.facts import FileFacts, NodeFacts
from piprov.graph import ComponentGraph, load_graph
from piprov.inventory.model import ImageSettings, Inventory, NetworkSettings, Node, SshSettings
from piprov.pki import PASSPHRASE_ENV, ClusterPki, PkiError, cluster_pki, expiry_warnings, pki_dir
from piprov.pki.store import Clock
from piprov.plan import Plan, plan_node
from piprov.render import desired_state

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
PKI = "/etc/kubernetes/pki"


@pytest.fixture(scope="module")
def graph() -> ComponentGraph:
    return load_graph()


def make_inventory(path: Path, master_address: str = "192.168.1.100") -> Inventory:
    ssh = SshSettings()
    nodes = (Node("rpi-master", master_address, "master", ssh), Node("rpi-node-1", "192.168.1.101", "worker", ssh))
    return Inventory(path=path, cluster_name="pi-cluster", ssh=ssh, images=ImageSettings(),
                     network=NetworkSettings(), nodes=nodes, known_hosts=path.parent / "known_hosts")


def at(when: dt.datetime) -> Clock:
    return lambda: when


@pytest.fixture
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Inventory:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    return make_inventory(tmp_path / "inventory.yaml")


def files_of(pki: ClusterPki, inv: Inventory, node: str) -> dict[str, bytes]:
    return {f.path: f.content for f in pki.node_files(inv, inv.node(node))}


def cert(files: dict[str, bytes], name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(files[f"{PKI}/{name}.crt"])


def test_the_ca_is_made_once_next_to_the_inventory(inv: Inventory, graph: ComponentGraph) -> None:
    first = cluster_pki(inv, graph=graph, clock=at(NOW))
    again = cluster_pki(inv, graph=graph, clock=at(NOW + dt.timedelta(days=3)))
    d = pki_dir(inv)
    assert d == inv.path.parent / "inventory.yaml.pki"
    assert first.ca_cert_pem == again.ca_cert_pem == (d / "ca.crt").read_bytes()
    ca = x509.load_pem_x509_certificate(first.ca_cert_pem)
    assert ca.not_valid_before_utc == NOW - dt.timedelta(hours=24)
    assert ca.not_valid_after_utc == NOW + dt.timedelta(days=3650)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_keys_are_private_on_the_controller(inv: Inventory, graph: ComponentGraph) -> None:
    pki = cluster_pki(inv, graph=graph, clock=at(NOW))
    pki.node_files(inv, inv.master)
    pki.controller_tls()
    d = pki_dir(inv)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "rpi-master").stat().st_mode) == 0o700
    keys = [d / "ca.key", d / "admin.key", *(d / "rpi-master").glob("*.key")]
    assert len(keys) == 2 + 8
    assert {oct(stat.S_IMODE(k.stat().st_mode)) for k in keys} == {"0o600"}
    assert {oct(stat.S_IMODE(c.stat().st_mode)) for c in (d / "rpi-master").glob("*.crt")} == {"0o644"}


def test_node_files_as_the_contract_says(inv: Inventory, graph: ComponentGraph) -> None:
    pki = cluster_pki(inv, graph=graph, clock=at(NOW))
    master = {f.path: f for f in pki.node_files(inv, inv.master)}
    worker = {f.path: f for f in pki.node_files(inv, inv.node("rpi-node-1"))}
    every = {"ca.crt", "kubelet.crt", "kubelet.key", "kubelet-serving.crt", "kubelet-serving.key", "kube-proxy.crt",
             "kube-proxy.key", "flannel.crt", "flannel.key"}
    only_master = {"etcd-server", "apiserver", "apiserver-etcd-client", "apiserver-kubelet-client"}
    assert {p.rsplit("/", 1)[1] for p in worker} == every
    assert {p.rsplit("/", 1)[1] for p in master} == every | {f"{n}.{e}" for n in only_master for e in ("crt", "key")}
    for f in [*master.values(), *worker.values()]:
        assert (f.mode, f.owner, f.group) == ((0o600 if f.path.endswith(".key") else 0o644), "root", "root")
    owner = {p.rsplit("/", 1)[1]: (f.component, f.restarts) for p, f in master.items()}
    assert owner["ca.crt"] == ("etcd", ("k8s-etcd.service",))
    assert owner["etcd-server.key"] == ("etcd", ("k8s-etcd.service",))
    assert owner["flannel.crt"] == ("flannel", ("k8s-flannel.service",))
    assert owner["kubelet.crt"] == ("kube-master", ("k8s-master.service",))
    assert owner["kubelet-serving.key"] == ("kube-master", ("k8s-master.service",))
    assert owner["kube-proxy.key"] == ("kube-master", ("k8s-proxy.service",))
    # A static pod: its manifest changes with the certificate (pki.<name>), a kubelet restart would not do.
    assert owner["apiserver.crt"] == owner["apiserver-kubelet-client.key"] == ("kube-master", ())
    # Written in etcd's step: the etcdctl of etcd's keys presents it on 1.18 (no loopback listener).
    assert owner["apiserver-etcd-client.key"] == ("etcd", ())
    w = {p.rsplit("/", 1)[1]: (f.component, f.restarts) for p, f in worker.items()}
    assert w["ca.crt"] == ("flannel", ("k8s-flannel.service",))
    assert w["kubelet.key"] == ("kube-worker", ("k8s-worker.service",))
    assert w["kube-proxy.crt"] == ("kube-worker", ("k8s-proxy.service",))
    kubelet = x509.load_pem_x509_certificate(worker[f"{PKI}/kubelet.crt"].content)
    assert kubelet.subject.rfc4514_string() == "CN=system:node:192.168.1.101,O=system:nodes"
    flannel = x509.load_pem_x509_certificate(worker[f"{PKI}/flannel.crt"].content)
    assert flannel.subject.rfc4514_string() == "CN=flannel:rpi-node-1"
    # The kubelet's 10250 serves a certificate of the cluster CA, for the address the apiserver dials.
    serving = x509.load_pem_x509_certificate(worker[f"{PKI}/kubelet-serving.crt"].content)
    assert w["kubelet-serving.crt"] == ("kube-worker", ("k8s-worker.service",))
    assert [str(a) for a in serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            .get_values_for_type(x509.IPAddress)] == ["192.168.1.101"]


def test_the_apiserver_serves_every_name_it_is_reached_by(inv: Inventory, graph: ComponentGraph) -> None:
    files = files_of(cluster_pki(inv, graph=graph, clock=at(NOW)), inv, "rpi-master")
    api = cert(files, "apiserver")
    sans = api.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(str(i) for i in sans.get_values_for_type(x509.IPAddress)) == ["10.254.0.1", "127.0.0.1",
                                                                                 "192.168.1.100"]
    assert sans.get_values_for_type(x509.DNSName) == [
        "rpi-master", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local"]
    etcd = cert(files, "etcd-server").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(str(i) for i in etcd.get_values_for_type(x509.IPAddress)) == ["127.0.0.1", "192.168.1.100"]
    assert etcd.get_values_for_type(x509.DNSName) == ["rpi-master", "localhost"]
    assert api.not_valid_after_utc == NOW + dt.timedelta(days=365)
    assert api.not_valid_before_utc == NOW - dt.timedelta(hours=24)


def test_a_second_run_renders_the_same_bytes(inv: Inventory, graph: ComponentGraph) -> None:
    first = files_of(cluster_pki(inv, graph=graph, clock=at(NOW)), inv, "rpi-master")
    later = cluster_pki(inv, graph=graph, clock=at(NOW + dt.timedelta(days=300)))
    assert files_of(later, inv, "rpi-master") == first
    assert later.controller_tls() == later.controller_tls()


def test_a_leaf_near_its_end_is_reissued(inv: Inventory, graph: ComponentGraph) -> None:
    first = files_of(cluster_pki(inv, graph=graph, clock=at(NOW)), inv, "rpi-node-1")
    late = NOW + dt.timedelta(days=340)  # 25 days left
    again = files_of(cluster_pki(inv, graph=graph, clock=at(late)), inv, "rpi-node-1")
    assert again[f"{PKI}/ca.crt"] == first[f"{PKI}/ca.crt"]
    for name in ("kubelet", "kube-proxy", "flannel"):
        assert again[f"{PKI}/{name}.crt"] != first[f"{PKI}/{name}.crt"]
        assert again[f"{PKI}/{name}.key"] != first[f"{PKI}/{name}.key"]
        assert cert(again, name).not_valid_after_utc == late + dt.timedelta(days=365)


def test_a_changed_address_reissues_what_names_it(inv: Inventory, graph: ComponentGraph) -> None:
    pki = cluster_pki(inv, graph=graph, clock=at(NOW))
    first = files_of(pki, inv, "rpi-master")
    moved = make_inventory(inv.path, master_address="192.168.1.200")
    again = files_of(pki, moved, "rpi-master")
    changed = {p.rsplit("/", 1)[1] for p in first if first[p] != again[p]}
    # The apiserver's, etcd's and the kubelet's serving SANs, the kubelet's CN name the address; the others do not.
    assert changed == {f"{n}.{e}" for n in ("apiserver", "etcd-server", "kubelet", "kubelet-serving")
                       for e in ("crt", "key")}


def test_a_new_ca_reissues_every_leaf(inv: Inventory, graph: ComponentGraph) -> None:
    first = files_of(cluster_pki(inv, graph=graph, clock=at(NOW)), inv, "rpi-node-1")
    d = pki_dir(inv)
    (d / "ca.crt").unlink()
    (d / "ca.key").unlink()
    again = files_of(cluster_pki(inv, graph=graph, clock=at(NOW)), inv, "rpi-node-1")
    assert all(again[p] != first[p] for p in first)
    ca = x509.load_pem_x509_certificate(again[f"{PKI}/ca.crt"])
    cert(again, "kubelet").verify_directly_issued_by(ca)


def test_a_ca_key_without_its_certificate_is_refused(inv: Inventory, graph: ComponentGraph) -> None:
    cluster_pki(inv, graph=graph, clock=at(NOW))
    (pki_dir(inv) / "ca.crt").unlink()
    with pytest.raises(PkiError, match="ca.key exists but .*ca.crt does not"):
        cluster_pki(inv, graph=graph, clock=at(NOW))


def test_the_passphrase_protects_the_ca_key(inv: Inventory, graph: ComponentGraph,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "correct horse battery staple"
    monkeypatch.setenv(PASSPHRASE_ENV, secret)
    pki = cluster_pki(inv, graph=graph, clock=at(NOW))
    key = (pki_dir(inv) / "ca.key").read_bytes()
    assert key.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    issued = files_of(pki, inv, "rpi-master")
    # Issued leaves are reused without the passphrase; a new leaf needs it.
    monkeypatch.delenv(PASSPHRASE_ENV)
    assert files_of(cluster_pki(inv, graph=graph, clock=at(NOW)), inv, "rpi-master") == issued
    with pytest.raises(PkiError) as e:
        cluster_pki(inv, graph=graph, clock=at(NOW)).node_files(inv, inv.node("rpi-node-1"))
    assert f"ca.key is encrypted: set ${PASSPHRASE_ENV}" in str(e.value)
    assert str(pki_dir(inv) / "ca.key") in str(e.value)
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong horse")
    with pytest.raises(PkiError) as e:
        cluster_pki(inv, graph=graph, clock=at(NOW)).node_files(inv, inv.node("rpi-node-1"))
    assert "does not open it" in str(e.value) and str(pki_dir(inv) / "ca.key") in str(e.value)
    assert "wrong horse" not in str(e.value) and secret not in str(e.value)
    monkeypatch.setenv(PASSPHRASE_ENV, secret)
    assert cluster_pki(inv, graph=graph, clock=at(NOW)).node_files(inv, inv.node("rpi-node-1"))


def _serve_once(ctx: ssl.SSLContext, sock: socket.socket, seen: list[object]) -> None:
    conn, _ = sock.accept()
    with ctx.wrap_socket(conn, server_side=True) as tls:
        seen.append(tls.getpeercert())
        tls.sendall(b"ok")


def test_the_controller_trusts_the_apiserver_and_presents_admin(inv: Inventory, graph: ComponentGraph,
                                                                tmp_path: Path) -> None:
    # A real handshake, both ways: the apiserver's certificate against the CA
    # (by its IP SAN), the controller's admin certificate against --client-ca-file.
    pki = cluster_pki(inv, graph=graph)
    files = files_of(pki, make_inventory(inv.path, master_address="127.0.0.1"), "rpi-master")
    for name in ("apiserver.crt", "apiserver.key", "ca.crt"):
        (tmp_path / name).write_bytes(files[f"{PKI}/{name}"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "apiserver.crt", tmp_path / "apiserver.key")
    server.load_verify_locations(tmp_path / "ca.crt")
    server.verify_mode = ssl.CERT_REQUIRED
    seen: list[object] = []
    with socket.create_server(("127.0.0.1", 0)) as sock:
        t = threading.Thread(target=_serve_once, args=(server, sock, seen))
        t.start()
        with socket.create_connection(sock.getsockname()) as raw:
            with pki.controller_tls().context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.recv(2) == b"ok"
        t.join(10)
    subject = dict(x[0] for x in seen[0]["subject"])  # type: ignore[index]
    assert subject == {"organizationName": "system:masters", "commonName": "admin"}


# -- secrets stay out of plans -------------------------------------------------------------------


def _facts(node: Node, files: dict[str, FileFacts]) -> NodeFacts:
    return NodeFacts(host=node.address, machine="armv7l", hostname=node.name, os_id="raspbian", os_version="8",
                     files=files, units={}, etcd_keys={})


def _secret_words(pem: bytes) -> list[str]:
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


def test_a_plan_shows_no_key_material(inv: Inventory, graph: ComponentGraph,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    pki = cluster_pki(inv, graph=graph, clock=at(NOW))
    node = inv.master
    desired = desired_state(inv, graph, node, "armv7l", pki=pki)
    keys = [f for f in desired.files if f.path.endswith(".key")]
    assert keys and all(f.secret for f in keys)
    # Certificates are public, but a plan shows no PKI content at all: a changed one is just "changed".
    assert all(f.secret for f in desired.files if f.path.startswith(PKI + "/"))
    # One key on the node differs (a secret changed), the others are new.
    old = keys[0]
    facts = _facts(node, {old.path: FileFacts(old.path, True, "0" * 64, 0o600, "root", "root", 241, None)})
    plan = Plan([plan_node(desired, facts)])
    changed = next(f for c in plan.nodes[0].components for f in c.files if f.path == old.path)
    assert changed.reason == "secret changed" and changed.diff == ""
    assert old.path not in repr(changed.content) and "PRIVATE" not in repr(changed)
    print_plan(plan)
    text = capsys.readouterr().out
    as_json = json.dumps(plan_json(plan))
    assert f"{old.path}  (secret changed)" in text
    for shown in (text, as_json):
        assert "BEGIN" not in shown and "PRIVATE KEY" not in shown
        for f in keys:
            assert not any(word in shown for word in _secret_words(f.content))


def test_the_facts_never_read_a_key(graph: ComponentGraph, inv: Inventory) -> None:
    from piprov.render import facts_command_for

    script = facts_command_for(inv, graph, "rpi-node-1")
    lines = {ln.split(" ", 1)[0]: ln.split()[1:] for ln in script.splitlines() if ln.startswith(("hs ", "fs "))}
    for name in ("kubelet", "kubelet-serving", "kube-proxy", "flannel"):
        assert f"{PKI}/{name}.key" in lines["hs"] and f"{PKI}/{name}.key" not in lines["fs"]
        assert f"{PKI}/{name}.crt" in lines["fs"]


# -- piprov certs and the warning of status ------------------------------------------------------


def test_certs_lists_every_certificate(inv: Inventory, graph: ComponentGraph, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    EXAMPLE = Path(__file__).resolve().parents[2] / "inventory.example.yaml"

    path = tmp_path / "inventory.yaml"
    shutil.copy(EXAMPLE, path)
    from piprov.inventory import load

    real = load(path)
    pki = cluster_pki(real, graph=graph)
    for n in real.nodes:
        pki.node_files(real, n)
    pki.controller_tls()
    monkeypatch.setattr(app.out, "width", 1000)
    result = CliRunner().invoke(app.cli, ["certs", "-i", str(path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    certs = doc["certificates"]
    assert doc["pki"] == str(pki_dir(real))
    assert [(c["node"], c["name"]) for c in certs[:2]] == [(None, "ca"), (None, "admin")]
    assert {c["node"] for c in certs[2:]} == {n.name for n in real.nodes}
    assert len(certs) == 2 + 8 + 4 * len(real.workers)
    assert all(c["days_left"] in (364, 365) and not c["expiring"] for c in certs[1:])
    assert certs[0]["days_left"] in (3649, 3650)
    assert "PRIVATE" not in result.output
    text = CliRunner().invoke(app.cli, ["certs", "-i", str(path)])
    assert text.exit_code == 0 and "apiserver" in text.output and "CN=admin,O=system:masters" in text.output


def test_status_warns_of_a_certificate_about_to_expire(inv: Inventory, graph: ComponentGraph) -> None:
    pki = cluster_pki(inv, graph=graph, clock=at(NOW))
    pki.node_files(inv, inv.node("rpi-node-1"))
    assert expiry_warnings(inv, NOW + dt.timedelta(days=300)) == []
    soon = expiry_warnings(inv, NOW + dt.timedelta(days=350))
    assert len(soon) == 4 + 0  # the worker's four leaves; the CA has years left
    assert soon[0] == ("certificate rpi-node-1/flannel expires 2027-06-01 (15 days left): "
                       "`piprov up --rolling` re-issues it and rolls it out node by node")
    gone = expiry_warnings(inv, NOW + dt.timedelta(days=3700))
    assert any(w.startswith("certificate ca expired on ") for w in gone)


def test_no_pki_yet_lists_nothing(inv: Inventory) -> None:
    assert expiry_warnings(inv) == []
    assert not pki_dir(inv).exists()


def test_keys_never_reach_a_repr(inv: Inventory, graph: ComponentGraph) -> None:
    f = cluster_pki(inv, graph=graph).node_files(inv, inv.master)[2]
    assert f.path.endswith(".key") and b"PRIVATE KEY" in f.content
    assert "PRIVATE" not in repr(f) and "PRIVATE" not in repr(replace(f, mode=0o600))
