"""etcd and flanneld of each profile over TLS, in the lab's own images (issue #16).

On a fresh 1-node lab, before piprov: test certificates at /etc/kubernetes/pki, a
docker daemon of the test's own, and the RENDERED k8s-etcd and k8s-flannel command
lines of the profile (only the daemon socket changed; flannel detached). The
rendered etcdctl writes flannel's network config, flanneld leases a subnet over
TLS with its certificate; from the controller, no certificate (or one from
another CA) gets no answer and plain http on the LAN address none either.
The whole cluster with the real PKI (helper `pki`) is the integration's e2e.
"""

from __future__ import annotations

import shlex
import ssl
import sys
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest

from labkit import wait_for

from piprov.graph import load_graph
from piprov.inventory import load
from piprov.render import DesiredNode, desired_state
from piprov_lab.lab import Lab

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from tls_certs import CertSet, Pair, make_pki  # noqa: E402

SOCK = "/var/run/docker-etls.sock"
BOOTSTRAP = "unix:///var/run/docker-bootstrap.sock"
PKI = "/etc/kubernetes/pki"


@pytest.fixture(scope="module", params=["seed", "last-hyperkube"])
def lab(request: pytest.FixtureRequest, lab_factory: Callable[..., Lab]) -> Iterator[tuple[str, Lab]]:
    profile = str(request.param)
    lab = lab_factory(f"etls-{profile[:4]}", nodes=1, profile=profile)
    yield profile, lab
    lab.down()


def _desired(lab: Lab, tmp: Path) -> DesiredNode:
    inv_path = tmp / "inventory.yaml"
    inv_path.write_text(lab.inventory_yaml())
    inv = load(inv_path)
    return desired_state(inv, load_graph(), inv.master, "x86_64", binaries={"docker": "docker"},
                         docker="20.10.24+dfsg1")


def _run_line(d: DesiredNode, unit: str, master_ip: str) -> str:
    """The unit's ExecStart on this test's daemon, detached."""
    text = next(f.content.decode() for f in d.files if f.path.endswith(unit)).replace("\\\n", " ")
    words = shlex.split(next(x for x in text.splitlines() if x.startswith("ExecStart=")).partition("=")[2])
    assert words[1:3] == ["-H", BOOTSTRAP] and words[3] == "run", words
    words = ["docker", "-H", f"unix://{SOCK}", "run", "-d", *words[4:]]
    return shlex.join(words).replace("${K8S_MASTER_IP}", master_ip)


def _get(url: str, pki: CertSet, cert: Pair | None) -> int:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
    with opener.open(url, timeout=5) as r:
        return int(r.status)


def test_rendered_etcd_and_flannel_speak_tls_with_client_certificates(lab: tuple[str, Lab], tmp_path: Path) -> None:
    profile, lb = lab
    m, ip = lb.nodes[0].name, lb.nodes[0].ip
    pki = make_pki(tmp_path / "pki", [ip, "127.0.0.1"])
    files = {"ca.crt": (pki.ca, 0o644), "etcd-server.crt": (pki.server.cert, 0o644),
             "etcd-server.key": (pki.server.key, 0o600)}
    for name in ("flannel", "apiserver-etcd-client"):
        files |= {f"{name}.crt": (pki.client.cert, 0o644), f"{name}.key": (pki.client.key, 0o600)}
    lb.exec(m, f"mkdir -p {PKI}")
    for name, (src, mode) in files.items():
        lb.put_file(m, f"{PKI}/{name}", src.read_bytes(), mode)
    d = _desired(lb, tmp_path)
    lb.exec(m, f"systemd-run --unit=etls-docker --collect dockerd -H unix://{SOCK} -p /var/run/docker-etls.pid "
               "--data-root=/var/lib/docker-etls --exec-root=/var/run/docker-etls --iptables=false "
               f"--ip-masq=false --bridge=none --insecure-registry={lb.registry}")
    wait_for("a docker daemon", lambda: lb.exec(m, f"docker -H unix://{SOCK} version", check=False).returncode == 0
             or None, 30, 0.2)
    try:
        lb.exec(m, _run_line(d, "k8s-etcd.service", ip))
        health = f"https://{ip}:4001/health"
        wait_for("etcd /health over TLS", lambda: _probe(health, pki, pki.client), 60, 0.5)
        for cert in (None, pki.stranger):
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                _get(health, pki, cert)
        with pytest.raises(OSError):  # no plain listener on the LAN address
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"http://{ip}:4001/health", timeout=5)
        assert d.etcdctl is not None
        ctl = d.etcdctl.replace(BOOTSTRAP, f"unix://{SOCK}")
        cfg = '{"Network": "10.0.0.0/16", "SubnetLen": 24, "Backend": {"Type": "host-gw"}}'
        lb.exec(m, f"{ctl} set /coreos.com/network/config '{cfg}'")
        lb.exec(m, "mkdir -p /run/flannel && rm -f /run/flannel/subnet.env")
        lb.exec(m, _run_line(d, "k8s-flannel.service", ip))
        env = wait_for("flannel's subnet.env", lambda: lb.exec(m, "cat /run/flannel/subnet.env", check=False).stdout
                       or None, 60, 0.5)
        assert "FLANNEL_NETWORK=10.0.0.0/16" in env, env
        leases = lb.exec(m, f"{ctl} ls /coreos.com/network/subnets").stdout
        assert leases.strip().startswith("/coreos.com/network/subnets/10.0."), leases
    finally:
        logs = lb.exec(m, f"for c in k8s-etcd k8s-flannel; do docker -H unix://{SOCK} logs --tail 20 $c; done 2>&1",
                       check=False).stdout
        print(logs)
        lb.exec(m, f"docker -H unix://{SOCK} rm -f k8s-flannel k8s-etcd; systemctl stop etls-docker; "
                   f"rm -rf /var/lib/docker-etls /var/run/docker-etls /run/flannel {PKI} /var/lib/kubernetes/etcd",
                check=False)


def _probe(url: str, pki: CertSet, cert: Pair) -> bool | None:
    try:
        return _get(url, pki, cert) == 200 or None
    except OSError:
        return None
