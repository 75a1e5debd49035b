"""`piprov certs rotate`: every leaf re-issued from the same CA, planned as "secret changed", restarting its users."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509

from piprov.cli.app import run
from piprov.facts import FileFacts, NodeFacts, UnitFacts
from piprov.graph import ComponentGraph, load_graph
from piprov.inventory.model import Inventory, Node
from piprov.kube import client
from piprov.pki import PASSPHRASE_ENV, ClusterPki, PkiError, cluster_pki, pki_dir
from piprov.plan import NodePlan, plan_node
from piprov.render import desired_state
from test_pki import NOW, PKI, at, make_inventory

# What uses each certificate, by the templates that name its path (k8s-etcd.service.j2,
# k8s-flannel.service.j2, the kubeconfigs, the kubelet units): a re-issued one must restart it.
MASTER_RESTARTS = {"k8s-etcd.service", "k8s-flannel.service", "k8s-master.service", "k8s-proxy.service"}
WORKER_RESTARTS = {"k8s-flannel.service", "k8s-worker.service", "k8s-proxy.service"}
# Read by the apiserver (a static pod): its manifest carries their checksums instead.
APISERVER_LEAVES = ("apiserver", "apiserver-etcd-client", "apiserver-kubelet-client")
MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.json"


@pytest.fixture(scope="module")
def graph() -> ComponentGraph:
    return load_graph()


@pytest.fixture
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Inventory:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    return make_inventory(tmp_path / "inventory.yaml")


def leaves(inv: Inventory) -> dict[str, x509.Certificate]:
    """Every leaf on the controller, by node/name (admin by its name alone)."""
    d = pki_dir(inv)
    out = {p.relative_to(d).with_suffix("").as_posix(): x509.load_pem_x509_certificate(p.read_bytes())
           for p in d.rglob("*.crt")}
    out.pop("ca")
    return out


def sans(c: x509.Certificate) -> list[str]:
    try:
        return sorted(str(n) for n in c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def issue_everything(pki: ClusterPki, inv: Inventory) -> None:
    for n in inv.nodes:
        pki.node_files(inv, n)
    pki.controller_tls()


def test_rotate_reissues_every_leaf_from_the_same_ca(inv: Inventory, graph: ComponentGraph) -> None:
    pki = cluster_pki(inv, graph=graph, clock=at(NOW))
    issue_everything(pki, inv)
    d = pki_dir(inv)
    ca_before = (d / "ca.crt").read_bytes(), (d / "ca.key").read_bytes()
    before = leaves(inv)
    later = cluster_pki(inv, graph=graph, clock=at(NOW + dt.timedelta(days=40)))
    renewed = later.rotate(inv)
    after = leaves(inv)
    assert set(after) == set(before) and "admin" in after and "rpi-master/apiserver" in after
    assert len(renewed) == len(before)
    assert {(r.node + "/" if r.node else "") + r.name for r in renewed} == set(before)
    for name, old in before.items():
        new = after[name]
        assert new.serial_number != old.serial_number, name
        assert new.public_key() != old.public_key(), name
        assert new.subject == old.subject and sans(new) == sans(old), name
        assert new.not_valid_before_utc == NOW + dt.timedelta(days=39), name  # issued now, back-dated a day
    assert {r.old_serial for r in renewed} == {c.serial_number for c in before.values()}
    assert {r.new_serial for r in renewed} == {c.serial_number for c in after.values()}
    assert ((d / "ca.crt").read_bytes(), (d / "ca.key").read_bytes()) == ca_before


def test_rotate_node_reissues_only_that_nodes_leaves(inv: Inventory, graph: ComponentGraph) -> None:
    pki = cluster_pki(inv, graph=graph, clock=at(NOW))
    issue_everything(pki, inv)
    before = leaves(inv)
    renewed = pki.rotate(inv, ["192.168.1.101"])  # by address, as inventory.node takes it
    after = leaves(inv)
    assert {r.node for r in renewed} == {"rpi-node-1"}
    for name in before:
        assert (after[name].serial_number != before[name].serial_number) == name.startswith("rpi-node-1/"), name
    with pytest.raises(Exception, match="rpi-node-9"):
        pki.rotate(inv, ["rpi-node-9"])


def test_rotate_needs_the_passphrase_and_changes_nothing_without_it(
        inv: Inventory, graph: ComponentGraph, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse")
    issue_everything(cluster_pki(inv, graph=graph, clock=at(NOW)), inv)
    before = {k: v.serial_number for k, v in leaves(inv).items()}
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(PkiError, match=PASSPHRASE_ENV):
        cluster_pki(inv, graph=graph, clock=at(NOW)).rotate(inv)
    assert {k: v.serial_number for k, v in leaves(inv).items()} == before
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse")
    cluster_pki(inv, graph=graph, clock=at(NOW)).rotate(inv)
    assert all(v.serial_number != before[k] for k, v in leaves(inv).items())


# -- the plan after a rotation ---------------------------------------------------------------------------


def on_node(pki: ClusterPki, inv: Inventory, node: Node, graph: ComponentGraph) -> NodeFacts:
    """The node as `up` left it: every desired file in place, every unit running."""
    desired = desired_state(inv, graph, node, "armv7l", pki=pki)
    files = {f.path: FileFacts(f.path, True, f.sha256, f.mode, f.owner, f.group, len(f.content),
                               None if f.secret else f.content) for f in desired.files}
    units = {u: UnitFacts(u, active="active", enabled="enabled") for c in graph.for_role(node.role) for u in c.units}
    return NodeFacts(host=node.address, machine="armv7l", hostname=node.name, os_id="raspbian", os_version="8",
                     files=files, units=units, etcd_keys={})


def plan_of(pki: ClusterPki, inv: Inventory, node: Node, graph: ComponentGraph, facts: NodeFacts) -> NodePlan:
    return plan_node(desired_state(inv, graph, node, "armv7l", pki=pki), facts)


def touched(np: NodePlan) -> set[str]:
    """The files a plan writes and the units it restarts (the hostname files and etcd's keys are not
    in these facts: the node here is only its components' files and units)."""
    return {f.path for c in np.components for f in c.files} | {u for c in np.components for u in c.restart}


def test_a_rotation_is_planned_as_secrets_changed_restarting_what_uses_them(
        inv: Inventory, graph: ComponentGraph) -> None:
    pki = cluster_pki(inv, graph=graph, clock=at(NOW))
    issue_everything(pki, inv)
    nodes = {n.name: on_node(pki, inv, n, graph) for n in inv.nodes}
    for n in inv.nodes:
        assert not touched(plan_of(pki, inv, n, graph, nodes[n.name])), n.name
    pki.rotate(inv)
    for n, expected in ((inv.master, MASTER_RESTARTS), (inv.node("rpi-node-1"), WORKER_RESTARTS)):
        np = plan_of(cluster_pki(inv, graph=graph, clock=at(NOW)), inv, n, graph, nodes[n.name])
        changed = {f.path: f for c in np.components for f in c.files}
        pki_files = {p for p in changed if p.startswith(PKI + "/")}
        expected_files = {f.path for f in desired_state(inv, graph, n, "armv7l", pki=pki).files
                          if f.path.startswith(PKI + "/") and f.path != f"{PKI}/ca.crt"}
        assert pki_files == expected_files, n.name  # every leaf and key, not the CA
        assert all(changed[p].reason == "secret changed" and changed[p].diff == "" for p in pki_files)
        assert {u for c in np.components for u in c.restart} >= expected, n.name
        if n.role == "master":
            # No unit restarts the apiserver: its manifest changes, and the kubelet replaces the pod.
            assert MANIFEST in changed
            for name in APISERVER_LEAVES:
                assert f"{PKI}/{name}.crt" in pki_files


def test_after_the_rollout_a_second_plan_changes_nothing(inv: Inventory, graph: ComponentGraph) -> None:
    pki = cluster_pki(inv, graph=graph, clock=at(NOW))
    issue_everything(pki, inv)
    pki.rotate(inv)
    # The rollout wrote what the plan after the rotation wanted; a fresh run (new PKI object,
    # a later clock) must accept those leaves as they are.
    rolled = {n.name: on_node(cluster_pki(inv, graph=graph, clock=at(NOW)), inv, n, graph) for n in inv.nodes}
    again = cluster_pki(inv, graph=graph, clock=at(NOW + dt.timedelta(days=100)))
    for n in inv.nodes:
        assert not touched(plan_of(again, inv, n, graph, rolled[n.name])), n.name


# -- the controller's own TLS, and the command ------------------------------------------------------------


def test_forget_client_tls_makes_the_next_request_read_the_new_admin(inv: Inventory, graph: ComponentGraph) -> None:
    cluster_pki(inv, graph=graph).controller_tls()
    first = client.client_tls(inv)
    assert client.client_tls(inv) is first  # cached per process
    client.forget_client_tls(inv)
    assert client.client_tls(inv) is not first
    client.forget_client_tls(inv)
    client.forget_client_tls(inv)  # nothing cached: no error


def test_certs_rotate_reissues_then_runs_the_rolling_rollout(inv: Inventory, graph: ComponentGraph,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from piprov.cli import rolling_cmd

    issue_everything(cluster_pki(inv, graph=graph), inv)
    before = {k: v.serial_number for k, v in leaves(inv).items()}
    seen: dict[str, object] = {}

    def fake_rolling_up(path: Path, **kw: object) -> None:
        seen.update(kw, path=path)
        cached = client.client_tls(inv)
        before_hook = kw["before"]
        assert callable(before_hook)
        seen["extra"] = before_hook(inv, graph)
        seen["fresh_tls"] = client.client_tls(inv) is not cached

    monkeypatch.setattr(rolling_cmd, "rolling_up", fake_rolling_up)
    assert run(["certs", "rotate", "-i", str(inv.path), "--batch", "2", "--json"]) == 0
    assert seen["path"] == inv.path and seen["batch"] == 2 and seen["as_json"] is True
    assert seen["fresh_tls"] is True
    assert all(v.serial_number != before[k] for k, v in leaves(inv).items())
    # --json carries what was re-issued (names and new serials, never key material).
    extra = seen["extra"]
    assert isinstance(extra, dict) and len(extra["reissued"]) == len(before)
    assert {f"{v.serial_number:x}" for v in leaves(inv).values()} <= {r["serial"] for r in extra["reissued"]}
    text = " ".join(capsys.readouterr().err.split())
    assert f"re-issued {len(before)} certificates" in text and "BEGIN" not in text


def test_certs_rotate_help_teaches_what_changes_and_where_the_ca_is(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["certs", "rotate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in ("same CA", "up --rolling", "cluster stays up", "docs/security.md", "--node NAME", "--batch N"):
        assert words in text


def test_rolling_up_runs_its_before_hook_under_the_lock_once_connected(monkeypatch: pytest.MonkeyPatch) -> None:
    # The re-issue must come after every node is reached (a failed connect re-issues nothing) and
    # before the API client and the facts (they must see the new certificates).
    import contextlib

    from piprov.cli import rolling_cmd
    EXAMPLE = Path(__file__).resolve().parents[2] / "inventory.example.yaml"

    calls: list[str] = []

    class Stop(Exception):
        pass

    @contextlib.contextmanager
    def step(name: str) -> Iterator[None]:
        calls.append(name)
        try:
            yield
        finally:
            calls.append("/" + name)

    class FakeFleet:
        @staticmethod
        def connect(inventory: Inventory, policy: object = None) -> contextlib.AbstractContextManager[None]:
            return step("connect")

    def facts(*_: object) -> None:
        calls.append("facts")
        raise Stop

    monkeypatch.setattr(rolling_cmd, "check_images", lambda *_: None)
    monkeypatch.setattr(rolling_cmd, "refuse_documentation_address", lambda *_: calls.append("refuse"))
    monkeypatch.setattr(rolling_cmd, "run_lock", lambda _: step("lock"))
    monkeypatch.setattr(rolling_cmd, "Fleet", FakeFleet)
    monkeypatch.setattr(rolling_cmd, "api_for", lambda _: calls.append("api"))
    monkeypatch.setattr(rolling_cmd, "facts_plan", facts)
    with pytest.raises(Stop):
        rolling_cmd.rolling_up(EXAMPLE, policy=None, as_json=False, batch=None, max_unavailable=None,
                               health_timeout=None, before=lambda inv, graph: calls.append("before"))
    assert calls == ["refuse", "lock", "connect", "before", "api", "facts", "/connect", "/lock"]
