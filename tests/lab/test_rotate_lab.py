"""`piprov certs rotate` on a live 3-node lab: new leaves everywhere and in use, the workload serving throughout.

pi1 = rpi-master, pi2 and pi3 = rpi-node-1 and -2, built with `piprov up`,
running the lab's httpd RC (3 replicas). The sampler of the rolling tests
counts ready replicas while the rotation drains and restarts node by node.

Both profiles, and on both the sampler never sees fewer than 1 ready. On
last-hyperkube (1.18) the RC has a PodDisruptionBudget that allows one
unavailable, and the drain evicts through it. The seed's 1.1 has no evictions
and no budgets: kubectl 1.2's drain deleted every pod of the node at once, and
with two workers the second drain took every replica (they all moved there in
the first; a run saw 0 ready for ~4 s). piprov's drain keeps a budget itself
there (piprov/kube/budget.py): the RC's pods go one at a time, each once the
RC has its 3 replicas Ready again.

The CA stays the same, so the certificates issued before stay valid: what is
asserted is that the new ones are the ones in use.
"""

from __future__ import annotations

import itertools
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from cryptography import x509

from labkit import create_workload, wait_for
from test_rolling_lab import Cluster, Sampler

from piprov_lab.lab import Lab

pytestmark = pytest.mark.lab

PKI = "/etc/kubernetes/pki"
NODES = {"pi1": "rpi-master", "pi2": "rpi-node-1", "pi3": "rpi-node-2"}


class Rotating(Cluster):
    def __init__(self, lab: Lab, inventory: Path, cache: Path, profile: str) -> None:
        super().__init__(lab, inventory, cache)
        self.profile = profile


@pytest.fixture(scope="module", params=["seed", "last-hyperkube"])
def cluster(request: pytest.FixtureRequest, lab_factory: Callable[..., Lab],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rotating]:
    profile = request.param
    lab = lab_factory(f"rot-{profile[:4]}", nodes=3, profile=profile)
    tmp = tmp_path_factory.mktemp("rotate")
    inv = tmp / "inventory.yaml"
    inv.write_text(lab.inventory_yaml())
    c = Rotating(lab, inv, tmp / "kubectl-cache", profile)
    p = c.piprov("up")
    assert p.returncode == 0, p.stderr[-3000:]
    create_workload(c, 3, budget=None if profile == "seed" else 1)  # 1.1: piprov's drain keeps the budget
    c.wait_replicas(3)
    yield c
    lab.down()


def node_serials(cluster: Cluster, node: str) -> dict[str, int]:
    """Every certificate under the node's PKI directory but the CA's, by file name, read on the node."""
    names = cluster.lab.exec(node, f"cd {PKI} && ls *.crt").stdout.split()
    out = {}
    for name in names:
        pem = cluster.lab.exec(node, f"cat {PKI}/{name}").stdout.encode()
        out[name] = x509.load_pem_x509_certificate(pem).serial_number
    ca = out.pop("ca.crt")
    out["(ca)"] = ca
    return out


def served(ip: str, port: int, ctx: ssl.SSLContext) -> bytes:
    """The certificate the server at ip:port presents (DER), in a handshake with the admin certificate."""
    with socket.create_connection((ip, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=ip) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der_of(path: Path) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)


def test_certs_rotate_renews_every_leaf_and_keeps_the_workload_serving(cluster: Rotating) -> None:
    from piprov.inventory import load
    from piprov.kube.client import client_tls, forget_client_tls

    from piprov.pki import pki_dir

    pki = pki_dir(load(cluster.inventory))  # the lab's inventory may name its own cluster.pki_dir
    before = {n: node_serials(cluster, n) for n in NODES}
    admin_before = der_of(pki / "admin.crt")
    assert served(cluster.master_ip, 6443, cluster.tls) == der_of(pki / "rpi-master" / "apiserver.crt")
    start = time.monotonic()
    with Sampler(cluster) as s:
        p = cluster.piprov("certs", "rotate", "--json")
    took = time.monotonic() - start
    runs = [(k, len(list(g))) for k, g in itertools.groupby(s.samples)]
    print(f"certs rotate took {took:.1f} s; ready replicas (value, samples in a row): {runs}")
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(p.stdout)
    assert [b["nodes"] for b in report["batches"]] == [["rpi-master"], ["rpi-node-1"], ["rpi-node-2"]]
    assert all(b["status"] == "done" and b["drain"] for b in report["batches"]), report["batches"]
    text = " ".join(p.stderr.split())
    assert "re-issued" in text and "from the same CA" in text and "BEGIN" not in text
    # The workload kept serving throughout (as the rolling tests assert it).
    assert s.samples and max(s.samples) == 3, s.samples
    assert min(s.samples) >= 1, runs
    wait_for("every node Ready", lambda: all(cluster.ready(n.ip) for n in cluster.lab.nodes), 120)
    assert not any(cluster.unschedulable(n.ip) for n in cluster.lab.nodes)
    # Every leaf on every node is new; the CA is not; each node holds what the controller issued.
    for node, name in NODES.items():
        after = node_serials(cluster, node)
        assert set(after) == set(before[node]), node
        assert after.pop("(ca)") == before[node]["(ca)"], node
        for crt, serial in after.items():
            assert serial != before[node][crt], f"{node}: {crt} not re-issued"
            assert serial == x509.load_pem_x509_certificate((pki / name / crt).read_bytes()).serial_number
    # The new ones are in use: the apiserver serves its new certificate (its pod is replaced by the
    # kubelet once the manifest's checksums changed), etcd its new one, and the new admin gets in.
    assert der_of(pki / "admin.crt") != admin_before
    inventory = load(cluster.inventory)
    forget_client_tls(inventory)
    fresh = client_tls(inventory)
    new_api = der_of(pki / "rpi-master" / "apiserver.crt")
    wait_for("the apiserver serving its new certificate",
             lambda: served(cluster.master_ip, 6443, fresh) == new_api, 60)
    assert served(cluster.master_ip, 4001, fresh) == der_of(pki / "rpi-master" / "etcd-server.crt")
    cluster.tls = fresh  # the cached admin context of this process: the new certificate from here on
    assert cluster.ready(cluster.master_ip)
    cluster.wait_replicas(3)
    plan = cluster.piprov("plan")
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-2000:]
