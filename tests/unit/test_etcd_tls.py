"""etcd and flannel over TLS with client certificates (issue #16), both profiles.

The rendered units say what the contract (TLS-PLAN.md) says; then the rendered
etcd command line itself runs — the real etcd 3.4 for last-hyperkube, the 2.1.1
wrapper around it for the seed — with test certificates in place of
/etc/kubernetes/pki and 127.0.0.2 in place of the master's address: a client
without a certificate, or with one from another CA, gets no answer; one with a
CA-signed certificate gets /health; the rendered etcdctl writes a key and the
flanneld stand-in's etcd client (its --etcd-* flags) reads it.
"""

from __future__ import annotations

import http.client
import os
import shlex
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from piprov.graph import load_graph
from piprov.graph.versions import load_matrix
from piprov.render import DesiredNode, desired_state
from piprov_lab.images import testsupport
from test_versions_render import _inventory, _sets
from tls_certs import Pair, CertSet, make_pki

testsupport.standins_on_path()
from standins import etcd21, flanneld, goflag  # noqa: E402
from standins.etcd2 import Etcd2, EtcdUnreachable  # noqa: E402

PKI = "/etc/kubernetes/pki"
# The profiles' own etcd (the image tag), not the other lines a profile allows.
PROFILES = {name: tags for name, tags in _sets(load_matrix()) if tags["etcd"] in ("2.1.1", "3.4.23")}


def _desired(profile: str, role: str, tmp: Path) -> DesiredNode:
    tmp.mkdir(parents=True, exist_ok=True)
    inv = _inventory(tmp, PROFILES[profile])
    node = inv.master if role == "master" else inv.workers[0]
    return desired_state(inv, load_graph(), node, "armv7l", binaries={"docker": "/usr/bin/docker"}, docker="17.05.0-ce")


def _unit(d: DesiredNode, name: str) -> str:
    return next(f.content.decode() for f in d.files if f.path.endswith(name)).replace("\\\n", " ")


def _exec_start(d: DesiredNode, name: str) -> list[str]:
    line = next(x for x in _unit(d, name).splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.partition("=")[2])


# -- the rendered units --------------------------------------------------------------------


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_etcd_serves_the_lan_only_over_tls_with_client_certificates(profile: str, tmp_path: Path) -> None:
    d = _desired(profile, "master", tmp_path)
    words = _exec_start(d, "k8s-etcd.service")
    args = words[words.index("/usr/local/bin/etcd") + 1:]
    master = "192.0.2.100"
    listen = next(a for a in args if a.startswith("--listen-client-urls=")).partition("=")[2].split(",")
    plain = {"seed": ["http://127.0.0.1:4001"], "last-hyperkube": []}[profile]  # 1.1's apiserver: no etcd TLS
    assert listen == [f"https://{master}:4001", *plain]
    assert f"--advertise-client-urls=https://{master}:4001" in args
    for flag in ("--client-cert-auth", f"--trusted-ca-file={PKI}/ca.crt", f"--cert-file={PKI}/etcd-server.crt",
                 f"--key-file={PKI}/etcd-server.key"):
        assert flag in args, flag
    assert "--ca-file" not in " ".join(args)  # 2.x's deprecated spelling is not used
    assert f"{PKI}:{PKI}:ro" in words[:words.index("/usr/local/bin/etcd")]
    probe = next(c.target for c in load_graph().component("etcd").health if c.probe == "http")
    assert probe == "https://{{ master.address }}:{{ network.etcd_port }}/health"


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("role", ["master", "worker"])
def test_flannel_speaks_tls_to_etcd_with_its_certificate(profile: str, role: str, tmp_path: Path) -> None:
    words = _exec_start(_desired(profile, role, tmp_path), "k8s-flannel.service")
    args = words[words.index("/opt/bin/flanneld") + 1:]
    assert args[:4] == ["--etcd-endpoints=https://${K8S_MASTER_IP}:4001", f"--etcd-certfile={PKI}/flannel.crt",
                        f"--etcd-keyfile={PKI}/flannel.key", f"--etcd-cafile={PKI}/ca.crt"]
    assert f"{PKI}:{PKI}:ro" in words[:words.index("/opt/bin/flanneld")]


def test_etcdctl_uses_the_loopback_listener_or_a_client_certificate(tmp_path: Path) -> None:
    seed = _desired("seed", "master", tmp_path / "a").etcdctl
    assert seed is not None and seed.endswith("exec k8s-etcd etcdctl --no-sync --peers=http://127.0.0.1:4001")
    last = _desired("last-hyperkube", "master", tmp_path / "b").etcdctl
    assert last is not None and last.endswith(
        "exec k8s-etcd env ETCDCTL_API=2 etcdctl --no-sync --endpoints=https://192.0.2.100:4001 "
        f"--cert-file={PKI}/apiserver-etcd-client.crt --key-file={PKI}/apiserver-etcd-client.key "
        f"--ca-file={PKI}/ca.crt")


# -- the stand-ins' flag sets --------------------------------------------------------------


def test_wrapper_reads_2_1_1_tls_flags_as_2_1_1_does(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, ["127.0.0.1"])
    base = ["--listen-client-urls=https://10.0.0.1:4001", "--advertise-client-urls=https://10.0.0.1:4001"]
    tls = [f"--cert-file={pki.server.cert}", f"--key-file={pki.server.key}"]

    def server(*extra: str) -> ssl.SSLContext | None:
        opts = etcd21.parse_config(base + list(extra), env={})
        ctx = etcd21.server_tls(opts)
        argv = etcd21.real_argv(opts, 40001)  # the real etcd behind: plain, loopback only
        assert "--listen-client-urls=http://127.0.0.1:40001" in argv and not any("file=" in a for a in argv)
        return ctx

    def cas(ctx: ssl.SSLContext | None) -> list[object]:
        assert ctx is not None and ctx.maximum_version == ssl.TLSVersion.TLSv1_2  # Go 1.4.2: no TLS 1.3
        return [c["subject"] for c in ctx.get_ca_certs()]

    ctx = server(*tls, "--client-cert-auth", f"--trusted-ca-file={pki.ca}")
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and cas(ctx) == [((("commonName", "test-ca"),),)]
    # 2.1.1's deprecated --ca-file asks for client certificates by itself (listener.go:139-142).
    ctx = server(*tls, f"--ca-file={pki.ca}")
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and len(cas(ctx)) == 1
    # --trusted-ca-file alone: 2.1.1 asks for no client certificate.
    ctx = server(*tls, f"--trusted-ca-file={pki.ca}")
    assert ctx is not None and ctx.verify_mode == ssl.CERT_NONE
    with pytest.raises(etcd21.StartError, match=r"must both be present\[key: , cert: /p/s.crt\]"):
        server("--cert-file=/p/s.crt")
    with pytest.raises(etcd21.StartError, match=f"^open {tmp_path}/no.key: no such file or directory$"):
        server(f"--cert-file={pki.server.cert}", f"--key-file={tmp_path}/no.key")
    # https:// without a certificate is plain in 2.1.1 (keepalive_listener.go:31); http:// never has TLS.
    assert server() is None
    http_only = ["--listen-client-urls=http://10.0.0.1:4001", "--advertise-client-urls=http://10.0.0.1:4001", *tls]
    assert etcd21.server_tls(etcd21.parse_config(http_only, env={})) is None
    with pytest.raises(etcd21.ConfigError, match="-peer-cert-file is not implemented"):
        etcd21.real_argv(etcd21.parse_config(["--peer-cert-file=/c"], env={}), 1)


def _run(mod: str, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    code = f"import sys; sys.path.insert(0, {str(testsupport.IMAGES_DIR)!r}); from standins.{mod} import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **env})


@pytest.mark.parametrize("flag", ["--client-crl-file=/c", "--auto-tls", "--client-cert-allowed-hostname=x",
                                  "--peer-auto-tls"])
def test_wrapper_refuses_tls_flags_etcd_2_1_1_lacks(flag: str) -> None:
    proc = _run("etcd21", [flag])
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == f"flag provided but not defined: -{flag[2:].split('=')[0]}"


def test_wrapper_exits_1_on_a_certificate_without_its_key() -> None:
    proc = _run("etcd21", ["--listen-client-urls=https://127.0.0.1:1", "--advertise-client-urls=https://127.0.0.1:1",
                           "--cert-file=/nonexistent.crt"])
    assert proc.returncode == 1
    assert "KeyFile and CertFile must both be present[key: , cert: /nonexistent.crt]" in proc.stderr


@pytest.mark.parametrize("version, flag", [("v0.5.5", "--etcd-username=u"), ("v0.5.5", "--etcd-password=p"),
                                           ("v0.12.0", "--remote-cafile=/c"), ("v0.12.0", "--etcd-ca-file=/c")])
def test_flanneld_refuses_etcd_flags_its_release_lacks(version: str, flag: str) -> None:
    proc = _run("flanneld", [flag, "--version"], FLANNEL_VERSION=version)
    assert proc.returncode == (2 if version == "v0.5.5" else 0)  # v0.12.0's usage() exits 0 (main.go:156-160)
    assert f"flag provided but not defined: -{flag[2:].split('=')[0]}" in proc.stderr
    assert "Usage" in proc.stderr


@pytest.mark.parametrize("version", ["v0.5.5", "v0.12.0"])
def test_flanneld_etcd_tls_errors_as_flannel(version: str, tmp_path: Path) -> None:
    def tls(*argv: str) -> ssl.SSLContext:
        return flanneld.etcd_tls(goflag.parse(list(argv), flanneld.flags_of(version)))

    with pytest.raises(flanneld.FatalError, match=r"^Failed to create SubnetManager: KeyFile and CertFile must "
                                                  r"both be present\[key: /k, cert: \]$"):
        tls("--etcd-keyfile=/k")
    with pytest.raises(flanneld.FatalError, match=f"open {tmp_path}/none.crt: no such file or directory"):
        tls(f"--etcd-certfile={tmp_path}/none.crt", "--etcd-keyfile=/k")
    pki = make_pki(tmp_path / "pki", ["127.0.0.1"])
    ctx = tls(f"--etcd-certfile={pki.client.cert}", f"--etcd-keyfile={pki.client.key}", f"--etcd-cafile={pki.ca}")
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "test-ca"),),)]  # only the CA given


# -- the rendered etcd, run ----------------------------------------------------------------

needs_etcd = pytest.mark.skipif(testsupport.etcd_binary() is None or shutil.which("etcdctl") is None,
                                reason="etcd not installed (scripts/setup.sh)")
ADDR = "127.0.0.2"  # the master's address here: loopback, but not 127.0.0.1 (etcd's plain listener)


def _local_argv(args: list[str], tmp: Path, port: int, peer: int) -> list[str]:
    """The rendered etcd flags with this machine's paths, address and ports."""
    out = []
    for a in args:
        a = a.replace(PKI, str(tmp / "pki")).replace("/var/etcd/data", str(tmp / "data"))
        out.append(a.replace("192.0.2.100", ADDR).replace(":4001", f":{port}").replace(":7001", f":{peer}"))
    return out


def _get(url_path: str, port: int, pki: CertSet, cert: Pair | None, host: str = ADDR) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    conn = http.client.HTTPSConnection(host, port, timeout=10, context=ctx)
    try:
        conn.request("GET", url_path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture(params=sorted(PROFILES))
def etcd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, int, CertSet, DesiredNode]]:
    """(profile, client port, certificates, the master's desired state) with the rendered etcd running."""
    if testsupport.etcd_binary() is None or shutil.which("etcdctl") is None:
        pytest.skip("etcd not installed (scripts/setup.sh)")
    profile = str(request.param)
    d = _desired(profile, "master", tmp_path / "inv")
    pki = make_pki(tmp_path / "pki", [ADDR, "127.0.0.1"])
    for name in ("flannel", "apiserver-etcd-client"):
        shutil.copy(pki.client.cert, tmp_path / "pki" / f"{name}.crt")
        shutil.copy(pki.client.key, tmp_path / "pki" / f"{name}.key")
    words = _exec_start(d, "k8s-etcd.service")
    port, peer = testsupport.free_port(), testsupport.free_port()
    args = _local_argv(words[words.index("/usr/local/bin/etcd") + 1:], tmp_path, port, peer)
    real = str(testsupport.etcd_binary())
    code = f"import sys; sys.path.insert(0, {str(testsupport.IMAGES_DIR)!r}); from standins.etcd21 import main; main()"
    cmd = [sys.executable, "-c", code, *args] if profile == "seed" else [real, *args]
    proc = subprocess.Popen(cmd, env={**os.environ, "STANDIN_REAL_ETCD": real}, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "etcd.log", "wb"))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get("/health", port, pki, pki.client)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "etcd.log").read_text()
            time.sleep(0.2)
        yield profile, port, pki, d
    finally:
        proc.terminate()
        proc.wait(20)


@needs_etcd
def test_etcd_refuses_clients_without_a_cluster_certificate(etcd: tuple[str, int, CertSet, DesiredNode]) -> None:
    profile, port, pki, _ = etcd
    status, body = _get("/health", port, pki, pki.client)
    assert status == 200 and b'"health":"true"' in body.replace(b" ", b"")
    for cert in (None, pki.stranger):  # no certificate; one from another CA
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _get("/health", port, pki, cert)
    conn = http.client.HTTPConnection(ADDR, port, timeout=10)  # plain http on the LAN address: no answer
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        conn.request("GET", "/health")
        conn.getresponse().read()
    conn.close()
    if profile == "seed":  # 2.1.1's surface over TLS, and the 1.1 apiserver's plain loopback listener
        assert _get("/version", port, pki, pki.client) == (200, b'{"etcdserver":"2.1.1","etcdcluster":"2.1.0"}')
        assert _get("/v3/kv/range", port, pki, pki.client)[0] == 404
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        plain.request("GET", "/version")
        assert plain.getresponse().read() == b'{"etcdserver":"2.1.1","etcdcluster":"2.1.0"}'
        plain.close()
    else:
        with pytest.raises(ConnectionRefusedError):
            http.client.HTTPConnection("127.0.0.1", port, timeout=10).connect()


@needs_etcd
def test_rendered_etcdctl_writes_and_flanneld_reads_over_tls(etcd: tuple[str, int, CertSet, DesiredNode],
                                                              tmp_path: Path) -> None:
    profile, port, pki, d = etcd
    assert d.etcdctl is not None
    words = d.etcdctl.split()
    flags = _local_argv(words[words.index("etcdctl") + 1:], pki.ca.parent.parent, port, 0)
    if profile == "seed":
        env = {"STANDIN_REAL_ETCDCTL": str(shutil.which("etcdctl"))}
        proc = _run("etcdctl21", [*flags, "set", "/coreos.com/network/config", '{"Network":"10.1.0.0/16"}'], **env)
    else:
        proc = subprocess.run(["etcdctl", *flags, "set", "/coreos.com/network/config", '{"Network":"10.1.0.0/16"}'],
                              capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "2"})
    assert proc.returncode == 0, proc.stderr
    flannel = _exec_start(_desired(profile, "worker", tmp_path / "w"), "k8s-flannel.service")
    fargs = [a.replace("${K8S_MASTER_IP}", ADDR) for a in flannel[flannel.index("/opt/bin/flanneld") + 1:]]
    fargs = _local_argv(fargs, pki.ca.parent.parent, port, 0)
    version = "v" + PROFILES[profile]["flannel"].lstrip("v")
    opts = goflag.parse(fargs, flanneld.flags_of(version))
    client = Etcd2(opts["etcd-endpoints"].split(","), tls=flanneld.etcd_tls(opts))
    assert client.get("/coreos.com/network/config").value == '{"Network":"10.1.0.0/16"}'
    with pytest.raises(EtcdUnreachable):  # the same endpoint without flannel's certificate
        Etcd2(opts["etcd-endpoints"].split(","), tls=ssl.create_default_context(cafile=str(pki.ca))).get("/x")
