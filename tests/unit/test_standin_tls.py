"""The hyperkube stand-ins' TLS and authentication (issue #16), per release, against real etcd.

The apiserver's secure port: 401 without credentials (1.1 text, 1.18 a Status),
200 with a client certificate from --client-ca-file's CA, the handshake refused
for another CA's; the insecure port on --insecure-bind-address; 1.18's etcd over
TLS with the apiserver's client certificate. The clients (kubelet, proxy,
scheduler, controller-manager) reach it with the credentials of their kubeconfig
(1.1's kubelet: the server from --api-servers). The kubelet's read-only port 0 is
closed. Flags a release lacks are refused as the Go binary does. Certificates are
made here with `cryptography`; no root, no docker.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from piprov_lab.images import testsupport

testsupport.standins_on_path()
from standins import apiserver, kubelet, proxy, release  # noqa: E402
from standins.common import FlagError, KubeClient, api_client_config, flags_for, parse_flags  # noqa: E402
from standins.etcd2 import EtcdUnreachable  # noqa: E402
from tls_certs import CA  # noqa: E402

V11, V118 = release.parse("v1.1.2"), release.parse("v1.18.20")
pytestmark = pytest.mark.skipif(testsupport.etcd_binary() is None, reason="etcd not installed (scripts/setup.sh)")


# -- certificates ------------------------------------------------------------------

@dataclass
class Pki:
    ca: CA
    rogue: CA
    server: tuple[str, str]
    admin: tuple[str, str]
    kubelet: tuple[str, str]
    proxy: tuple[str, str]
    stranger: tuple[str, str]  # a client certificate from another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    tmp = tmp_path_factory.mktemp("pki")
    ca, rogue = CA.make(tmp / "ca", "piprov-test-ca"), CA.make(tmp / "rogue", "someone-else")
    return Pki(ca, rogue, ca.issue("apiserver", "kube-apiserver", server=True), ca.issue("admin", "admin", "system:masters"),
               ca.issue("kubelet", "system:node:127.0.0.1", "system:nodes"), ca.issue("kube-proxy", "system:kube-proxy"),
               rogue.issue("stranger", "admin", "system:masters"))


def client_ctx(pki: Pki, cert: tuple[str, str] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.ca.file)
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


# -- an apiserver per release ----------------------------------------------------------

@dataclass
class Api:
    insecure: Any
    secure_url: str
    rel: release.Release


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("etcd")
    proc = testsupport.start_etcd(tmp / "data")
    try:
        yield proc.url
    finally:
        proc.stop()


def start_api(rel: release.Release, args: list[str]) -> Api:
    opts = parse_flags("apiserver", args + ["--service-cluster-ip-range=10.0.0.0/24"], flags_for("apiserver", rel))
    server = apiserver.serve(opts, rel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secure = server.secure
    url = f"https://127.0.0.1:{secure.server_address[1]}" if secure is not None else ""
    return Api(server, url, rel)


def tls_args(pki: Pki, port: int) -> list[str]:
    return ["--bind-address=127.0.0.1", f"--secure-port={port}", f"--tls-cert-file={pki.server[0]}",
            f"--tls-private-key-file={pki.server[1]}", f"--client-ca-file={pki.ca.file}"]


@pytest.fixture(scope="module", params=["v1.1.2", "v1.18.20"])
def api(request: pytest.FixtureRequest, pki: Pki, etcd: str) -> Iterator[Api]:
    rel = release.parse(request.param)
    extra = ["--anonymous-auth=false"] if rel.modern else []
    a = start_api(rel, [f"--etcd-servers={etcd}", "--insecure-bind-address=127.0.0.1",
                        f"--insecure-port={testsupport.free_port()}", *tls_args(pki, testsupport.free_port()), *extra])
    try:
        yield a
    finally:
        a.insecure.shutdown()
        a.insecure.secure.shutdown()


def get(url: str, ctx: ssl.SSLContext | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def test_secure_port_401_without_a_client_certificate(api: Api, pki: Pki) -> None:
    code, body, ctype = get(api.secure_url + "/api/v1/nodes", client_ctx(pki, None))
    assert code == 401
    if api.rel.modern:
        assert ctype == "application/json"
        assert json.loads(body) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    else:
        assert body == b"Unauthorized\n" and ctype.startswith("text/plain")


def test_secure_port_200_with_a_certificate_of_the_client_ca(api: Api, pki: Pki) -> None:
    for who in (pki.admin, pki.kubelet, pki.proxy):
        code, body, _ = get(api.secure_url + "/api/v1/nodes", client_ctx(pki, who))
        assert code == 200 and json.loads(body)["kind"] == "NodeList"
    code, body, _ = get(api.secure_url + "/healthz", client_ctx(pki, pki.admin))
    assert (code, body) == (200, b"ok")


def test_secure_port_refuses_another_cas_certificate(api: Api, pki: Pki) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        code, _, _ = get(api.secure_url + "/api/v1/nodes", client_ctx(pki, pki.stranger))
        assert code == 401  # (Go answers 401 here; either way no access) - reached only if the handshake passed


def test_secure_port_serves_the_given_certificate(api: Api, pki: Pki) -> None:
    # The client verifies the server against the CA and its SAN 127.0.0.1, as client-go does.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        get(api.secure_url + "/healthz", ssl.create_default_context(cafile=pki.rogue.file))


def test_insecure_port_is_bound_where_told(api: Api) -> None:
    host, port = api.insecure.server_address[:2]
    assert host == "127.0.0.1"
    code, _, _ = get(f"http://127.0.0.1:{port}/api/v1/nodes")
    assert code == 200  # no authentication on the insecure port, in both releases


def test_a_client_of_the_kubeconfig_reaches_the_secure_port(api: Api, pki: Pki, tmp_path: Path) -> None:
    """kube-proxy/scheduler/controller-manager: --kubeconfig (credentials and server), --master overriding it."""
    good = write_kubeconfig(tmp_path / "good", api.secure_url, pki, pki.proxy)
    rel = api.rel
    opts = parse_flags("proxy", [f"--kubeconfig={good}"], flags_for("proxy", rel))
    kc = api_client_config(opts, "proxy")
    assert (kc.server, kc.ca_file, kc.cert_file) == (api.secure_url, pki.ca.file, pki.proxy[0])
    assert proxy.check_api(KubeClient(kc.server, tls=kc.tls()), attempts=1)
    anonymous = write_kubeconfig(tmp_path / "anon", "https://192.0.2.1:1", pki, None)
    opts = parse_flags("proxy", [f"--kubeconfig={anonymous}", f"--master={api.secure_url}"], flags_for("proxy", rel))
    kc = api_client_config(opts, "proxy")
    assert kc.server == api.secure_url  # --master wins over the kubeconfig's server
    assert KubeClient(kc.server, tls=kc.tls()).request("GET", "/api")[0] == 401


def write_kubeconfig(path: Path, server: str, pki: Pki, cert: tuple[str, str] | None) -> Path:
    user: dict[str, str] = {"client-certificate": cert[0], "client-key": cert[1]} if cert else {}
    doc = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": pki.ca.file}}],
           "users": [{"name": "u", "user": user}],
           "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}], "current-context": "x"}
    path.write_text(json.dumps(doc))
    return path


def test_kubelet_takes_its_credentials_from_the_kubeconfig(api: Api, pki: Pki, tmp_path: Path) -> None:
    """1.1: --api-servers names the server, --kubeconfig the credentials (its server is ignored);
    1.18: both from --kubeconfig."""
    rel = api.rel
    if rel.modern:
        kc = write_kubeconfig(tmp_path / "kc", api.secure_url, pki, pki.kubelet)
        args = [f"--kubeconfig={kc}"]
    else:
        kc = write_kubeconfig(tmp_path / "kc", "https://192.0.2.1:1", pki, pki.kubelet)
        args = [f"--api-servers={api.secure_url}", f"--kubeconfig={kc}"]
    opts = kubelet.effective_options(parse_flags("kubelet", args + ["--hostname-override=127.0.0.1"],
                                                 flags_for("kubelet", rel)), rel)
    assert opts["api-servers"] == api.secure_url
    client = KubeClient(opts["api-servers"], tls=opts["api-tls"])
    assert client.request("GET", "/api/v1/nodes")[0] == 200
    # Without a kubeconfig the same kubelet has no certificate: 401.
    bare = [f"--api-servers={api.secure_url}"] if not rel.modern else [
        f"--kubeconfig={write_kubeconfig(tmp_path / 'bare', api.secure_url, pki, None)}"]
    opts = kubelet.effective_options(parse_flags("kubelet", bare, flags_for("kubelet", rel)), rel)
    tls = opts["api-tls"] or ssl.create_default_context(cafile=pki.ca.file)
    assert KubeClient(api.secure_url, tls=tls).request("GET", "/api/v1/nodes")[0] == 401


def test_1_1_kubelet_with_an_unreadable_explicit_kubeconfig_has_no_api_client(tmp_path: Path) -> None:
    opts = parse_flags("kubelet", ["--api-servers=https://192.0.2.1:6443", f"--kubeconfig={tmp_path / 'none'}"],
                       flags_for("kubelet", V11))
    assert kubelet.effective_options(opts, V11)["api-servers"] == ""


# -- what each release authenticates ----------------------------------------------------

def test_1_18_anonymous_auth_is_reset_under_always_allow(pki: Pki, etcd: str) -> None:
    """Without --anonymous-auth=false 1.18 still answers 401: AlwaysAllow resets anonymous to false."""
    a = start_api(V118, [f"--etcd-servers={etcd}", f"--insecure-port={testsupport.free_port()}",
                         *tls_args(pki, testsupport.free_port())])
    try:
        assert get(a.secure_url + "/api/v1/nodes", client_ctx(pki, None))[0] == 401
    finally:
        a.insecure.shutdown()
        a.insecure.secure.shutdown()


def test_1_1_without_any_authenticator_the_secure_port_is_open(pki: Pki, etcd: str) -> None:
    """1.1 installs no authentication filter when nothing is configured: why piprov passes --client-ca-file."""
    args = [a for a in tls_args(pki, testsupport.free_port()) if not a.startswith("--client-ca-file")]
    a = start_api(V11, [f"--etcd-servers={etcd}", f"--insecure-port={testsupport.free_port()}", *args])
    try:
        assert get(a.secure_url + "/api/v1/nodes", client_ctx(pki, None))[0] == 200
    finally:
        a.insecure.shutdown()
        a.insecure.secure.shutdown()


def test_token_auth_file(pki: Pki, etcd: str, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('s3cr3t,alice,1001,"admins"\n')
    a = start_api(V118, [f"--etcd-servers={etcd}", f"--insecure-port={testsupport.free_port()}",
                         *tls_args(pki, testsupport.free_port()), f"--token-auth-file={tokens}"])
    try:
        ctx = client_ctx(pki, None)
        assert get(a.secure_url + "/api/v1/nodes", ctx, {"Authorization": "Bearer s3cr3t"})[0] == 200
        assert get(a.secure_url + "/api/v1/nodes", ctx, {"Authorization": "Bearer wrong"})[0] == 401
    finally:
        a.insecure.shutdown()
        a.insecure.secure.shutdown()


@pytest.mark.parametrize(("rel", "server", "flag"), [
    (V11, "apiserver", "--etcd-cafile=/x"),          # etcd TLS flags came in 1.2
    (V11, "apiserver", "--etcd-certfile=/x"),
    (V11, "apiserver", "--anonymous-auth=false"),    # no anonymous user in 1.1
    (V11, "kubelet", "--anonymous-auth=false"),      # the 1.1 kubelet authenticates nobody
    (V11, "kubelet", "--client-ca-file=/x"),
    (V118, "kubelet", "--api-servers=https://m:6443"),
    (V118, "kubelet", "--auth-path=/x"),             # 1.1's deprecated credentials file is gone
])
def test_a_flag_the_release_lacks_is_refused(rel: release.Release, server: str, flag: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FlagError) as ei:
        parse_flags(server, [flag], flags_for(server, rel))
    assert ei.value.code == 1
    assert f"unknown flag: {flag.split('=')[0]}" in capsys.readouterr().err


@pytest.mark.parametrize(("rel", "server", "flags"), [
    (V11, "apiserver", ["--bind-address=0.0.0.0", "--secure-port=6443", "--tls-cert-file=/a", "--tls-private-key-file=/b",
                        "--client-ca-file=/c", "--insecure-bind-address=127.0.0.1", "--public-address-override=0.0.0.0"]),
    (V11, "kubelet", ["--kubeconfig=/k", "--api-servers=https://m:6443", "--read-only-port=0", "--auth-path=/a"]),
    (V11, "proxy", ["--kubeconfig=/k", "--master=https://m:6443"]),
    (V118, "apiserver", ["--etcd-cafile=/a", "--etcd-certfile=/b", "--etcd-keyfile=/c", "--anonymous-auth=false",
                         "--kubelet-client-certificate=/d", "--kubelet-client-key=/e", "--secure-port=6443"]),
    (V118, "kubelet", ["--kubeconfig=/k", "--read-only-port=0", "--anonymous-auth=false", "--client-ca-file=/c"]),
    (V118, "proxy", ["--kubeconfig=/k", "--master=https://m:6443"]),
])
def test_the_tls_flags_each_release_has_are_accepted(rel: release.Release, server: str, flags: list[str]) -> None:
    parse_flags(server, flags, flags_for(server, rel))


# -- 1.18: etcd over TLS ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("tlsetcd")
    cert, key = pki.ca.issue("etcd-server", "etcd", server=True)
    client, peer = testsupport.free_port(), testsupport.free_port()
    url = f"https://127.0.0.1:{client}"
    log = open(tmp / "etcd.log", "wb")
    proc = subprocess.Popen(
        [str(testsupport.etcd_binary()), "--name=t", f"--data-dir={tmp / 'data'}", "--enable-v2=true",
         f"--listen-client-urls={url}", f"--advertise-client-urls={url}", f"--cert-file={cert}", f"--key-file={key}",
         "--client-cert-auth=true", f"--trusted-ca-file={pki.ca.file}",
         f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
         f"--initial-cluster=t=http://127.0.0.1:{peer}"], stdout=log, stderr=subprocess.STDOUT)
    ctx = client_ctx(pki, pki.admin)
    for _ in range(200):
        try:
            if get(url + "/version", ctx)[0] == 200:
                break
        except OSError:
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_1_18_apiserver_reaches_etcd_with_its_client_certificate(pki: Pki, tls_etcd: str) -> None:
    cert, key = pki.ca.issue("apiserver-etcd-client", "kube-apiserver-etcd-client")
    a = start_api(V118, [f"--etcd-servers={tls_etcd}", f"--etcd-cafile={pki.ca.file}", f"--etcd-certfile={cert}",
                         f"--etcd-keyfile={key}", f"--insecure-port={testsupport.free_port()}",
                         *tls_args(pki, testsupport.free_port()), "--anonymous-auth=false"])
    try:
        code, body, _ = get(a.secure_url + "/api/v1/namespaces", client_ctx(pki, pki.admin))
        assert code == 200 and "kube-system" in {n["metadata"]["name"] for n in json.loads(body)["items"]}
    finally:
        a.insecure.shutdown()
        a.insecure.secure.shutdown()


def test_etcd_without_the_client_certificate_is_unreachable(pki: Pki, tls_etcd: str) -> None:
    opts = parse_flags("apiserver", [f"--etcd-servers={tls_etcd}", f"--etcd-cafile={pki.ca.file}"],
                       flags_for("apiserver", V118))
    with pytest.raises(EtcdUnreachable):
        apiserver.etcd_client(opts).version()


# -- the kubelet's read-only port --------------------------------------------------------------

class _Docker:
    def version(self) -> dict[str, str]:
        return {"Version": "20.10.24"}

    def info(self) -> dict[str, Any]:
        return {}

    def containers(self, label: str) -> list[dict[str, Any]]:
        return []


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("rel", [V11, V118], ids=["1.1", "1.18"])
def test_kubelet_read_only_port(rel: release.Release) -> None:
    ports = {n: testsupport.free_port() for n in ("healthz", "api", "ro", "ro2")}
    base = ["--address=127.0.0.1", f"--healthz-port={ports['healthz']}", f"--port={ports['api']}",
            "--hostname-override=127.0.0.1"]
    opts = parse_flags("kubelet", base + ["--read-only-port=0"], flags_for("kubelet", rel))
    k = kubelet.Kubelet(opts, _Docker(), rel)  # type: ignore[arg-type]
    served = kubelet.serve_ports(opts, k, lambda: True)
    assert [p for _, p in served] == [ports["healthz"], ports["api"]]
    assert _listening(ports["api"])
    assert not _listening(ports["ro"])
    # The default (10255, here another free port) serves /pods without authentication.
    opts = parse_flags("kubelet", [f"--read-only-port={ports['ro2']}", "--address=127.0.0.1",
                                   f"--healthz-port={testsupport.free_port()}", f"--port={testsupport.free_port()}"],
                       flags_for("kubelet", rel))
    kubelet.serve_ports(opts, kubelet.Kubelet(opts, _Docker(), rel), lambda: True)  # type: ignore[arg-type]
    code, body, _ = get(f"http://127.0.0.1:{ports['ro2']}/pods")
    assert code == 200 and json.loads(body)["kind"] == "PodList"
    assert flags_for("kubelet", rel) and next(f.default for f in flags_for("kubelet", rel) if f.name == "read-only-port") == 10255


# -- the kubelet's API port (10250) ----------------------------------------------------------

def _kubelet_api(rel: release.Release, extra: list[str], tmp: Path) -> tuple[int, Path]:
    port = testsupport.free_port()
    args = ["--address=127.0.0.1", f"--healthz-port={testsupport.free_port()}", f"--port={port}",
            "--read-only-port=0", "--hostname-override=127.0.0.1", f"--cert-dir={tmp / 'certs'}", *extra]
    opts = parse_flags("kubelet", args, flags_for("kubelet", rel))
    kubelet.serve_ports(opts, kubelet.Kubelet(opts, _Docker(), rel), lambda: True)  # type: ignore[arg-type]
    return port, tmp / "certs"


def _unverified(cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # as the apiserver dials kubelets
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def test_1_1_kubelet_api_is_tls_with_a_self_signed_certificate_and_no_authentication(tmp_path: Path) -> None:
    port, certs = _kubelet_api(V11, [], tmp_path)
    assert (certs / "kubelet.crt").exists() and (certs / "kubelet.key").stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate((certs / "kubelet.crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "127.0.0.1"
    assert get(f"https://127.0.0.1:{port}/healthz", _unverified()) == (200, b"ok", "")
    assert get(f"https://127.0.0.1:{port}/pods", _unverified())[0] == 200


def test_1_18_kubelet_api_authenticates_client_certificates(pki: Pki, tmp_path: Path) -> None:
    port, _ = _kubelet_api(V118, ["--anonymous-auth=false", f"--client-ca-file={pki.ca.file}"], tmp_path)
    url = f"https://127.0.0.1:{port}/pods"
    code, body, _ = get(url, _unverified())
    assert (code, body) == (401, b"Unauthorized\n")
    apiserver_client = pki.ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
    assert get(url, _unverified(apiserver_client))[0] == 200
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        get(url, _unverified(pki.stranger))
    # What the apiserver stand-in dials for pods/log: https, its kubelet client certificate, no verification.
    from standins.apisubres import Subresources
    sub = Subresources()
    sub.opts = {"kubelet-client-certificate": apiserver_client[0], "kubelet-client-key": apiserver_client[1]}  # type: ignore[attr-defined]
    conn = sub.kubelet_connection("127.0.0.1", port)
    conn.request("GET", "/healthz")
    assert conn.getresponse().read() == b"ok"


def test_1_18_kubelet_api_anonymous_by_default(tmp_path: Path) -> None:
    port, _ = _kubelet_api(V118, [], tmp_path)
    assert get(f"https://127.0.0.1:{port}/healthz", _unverified())[:2] == (200, b"ok")


# -- the rendered units and manifests, run by the stand-ins ---------------------------------------

def _rendered(tmp: Path, hyperkube: str, role: str) -> dict[str, Any]:
    from piprov.graph import load_graph
    from test_render_kubetls import _files, _inventory  # the profiles' inventories, as rendered there

    tmp.mkdir(parents=True, exist_ok=True)
    return _files(load_graph(), _inventory(tmp, hyperkube), role)


def _pki_paths(pki: Pki, tmp: Path) -> dict[str, str]:
    """The node's /etc/kubernetes/pki/* as this test's files (the names piprov.pki writes)."""
    ca = pki.ca
    files = {"ca.crt": pki.ca.file}
    for name, cn, org in (("apiserver-etcd-client", "kube-apiserver-etcd-client", None),
                          ("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")):
        files[f"{name}.crt"], files[f"{name}.key"] = ca.issue(name, cn, org)
    files["apiserver.crt"], files["apiserver.key"] = pki.server
    files["kubelet.crt"], files["kubelet.key"] = pki.kubelet
    files["kube-proxy.crt"], files["kube-proxy.key"] = pki.proxy
    return {f"/etc/kubernetes/pki/{k}": v for k, v in files.items()}


def _rewrite(words: list[str], subs: dict[str, str]) -> list[str]:
    out = []
    for w in words:
        for a, b in sorted(subs.items(), key=lambda kv: -len(kv[0])):
            w = w.replace(a, b)
        out.append(w)
    return out


@pytest.mark.parametrize("hyperkube", ["v1.1.2", "v1.18.20"])
def test_the_rendered_apiserver_and_worker_kubelet_and_proxy_work_together(hyperkube: str, pki: Pki, etcd: str,
                                                                          tls_etcd: str, tmp_path: Path) -> None:
    """What piprov renders for the master's apiserver and a worker's kubelet and proxy, with the
    pki paths and ports moved to this test's: the stand-ins accept every flag, the apiserver
    answers the worker's credentials on the secure port and 401 without them."""
    from standins.hyperkube import SERVERS
    rel = release.parse(hyperkube)
    secure, insecure = testsupport.free_port(), testsupport.free_port()
    subs = {**_pki_paths(pki, tmp_path), ":6443": f":{secure}", "--insecure-port=8080": f"--insecure-port={insecure}",
            "192.0.2.100": "127.0.0.1", "http://127.0.0.1:4001": etcd, "https://192.0.2.100:4001": tls_etcd,
            "--bind-address=0.0.0.0": "--bind-address=127.0.0.1", "--secure-port=6443": f"--secure-port={secure}"}
    master = _rendered(tmp_path / "m", hyperkube, "master")
    pod = json.loads(master["/etc/kubernetes/manifests/kube-apiserver.json"].content)
    cmd = _rewrite(pod["spec"]["containers"][0]["command"], subs)
    assert SERVERS[rel.line][cmd[1]] == "apiserver"
    a = start_api(rel, cmd[2:])
    try:
        assert a.secure_url == f"https://127.0.0.1:{secure}"
        assert get(a.secure_url + "/api/v1/nodes", client_ctx(pki, None))[0] == 401
        worker = _rendered(tmp_path / "w", hyperkube, "worker")
        for unit, kubeconfig, server in (("k8s-worker.service", "kubelet.kubeconfig", "kubelet"),
                                         ("k8s-proxy.service", "proxy.kubeconfig", "proxy")):
            (tmp_path / kubeconfig).write_text(
                _rewrite([worker[f"/etc/kubernetes/{kubeconfig}"].content.decode()], subs)[0])
            words = _exec_start(worker[f"/etc/systemd/system/{unit}"].content.decode())
            words = _rewrite(words[words.index("/hyperkube") + 2:], {**subs, f"/etc/kubernetes/{kubeconfig}":
                                                                            str(tmp_path / kubeconfig)})
            opts = parse_flags(server, words, flags_for(server, rel))
            if server == "kubelet":
                eff = kubelet.effective_options(opts, rel)
                client = KubeClient(eff["api-servers"], tls=eff["api-tls"])
            else:
                kc = api_client_config(opts, "proxy")
                client = KubeClient(kc.server, tls=kc.tls())
            assert client.master == a.secure_url, server
            assert client.request("GET", "/api/v1/nodes")[0] == 200, server
    finally:
        a.insecure.shutdown()
        a.insecure.secure.shutdown()


def _exec_start(text: str) -> list[str]:
    import shlex
    joined = text.replace("\\\n", " ")
    line = next(x for x in joined.splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.partition("=")[2])
