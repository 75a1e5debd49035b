"""The flanneld stand-in against a real etcd on loopback (no root: routes go to a fake router)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from piprov_lab.images import testsupport

testsupport.standins_on_path()
from standins import flanneld  # noqa: E402
from standins.etcd2 import Etcd2  # noqa: E402

CONFIG = '{"Network": "10.0.0.0/16", "SubnetLen": 24, "Backend": {"Type": "host-gw"}}'

pytestmark = pytest.mark.skipif(testsupport.etcd_binary() is None, reason="etcd not installed (scripts/setup.sh)")


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    e = testsupport.start_etcd(tmp_path_factory.mktemp("etcd") / "data")
    yield e.url
    e.stop()


_prefix_counter = iter(range(10**6))


@pytest.fixture
def prefix(etcd: str) -> str:
    """A fresh flannel keyspace per test, with the network config written."""
    p = f"/test{next(_prefix_counter)}/network"
    Etcd2([etcd]).set(f"{p}/config", CONFIG)
    return p


class Router:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.table: dict[str, str] = {}

    def __call__(self, action: str, subnet: str, gw: str) -> None:
        self.calls.append((action, subnet, gw))
        if action == "replace":
            self.table[subnet] = gw
        else:
            self.table.pop(subnet, None)


def daemon(etcd: str, prefix: str, ip: str, tmp: Path, ttl: int = 3600) -> tuple[flanneld.Flanneld, Router]:
    router = Router()
    d = flanneld.Flanneld(Etcd2([etcd]), prefix, ip, None, True, str(tmp / f"{ip}.env"), ttl, router=router)
    d.load_config()
    d.acquire_lease()
    d.write_env()
    d.resync()
    return d, router


def read_env(path: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in Path(path).read_text().split())


def test_each_node_leases_a_distinct_subnet_and_writes_subnet_env(etcd: str, prefix: str, tmp_path: Path) -> None:
    daemons = [daemon(etcd, prefix, f"192.0.2.{i}", tmp_path)[0] for i in range(1, 6)]
    subnets = {str(d.subnet) for d in daemons}
    assert len(subnets) == 5
    env = read_env(daemons[0].subnet_file)
    assert env["FLANNEL_NETWORK"] == "10.0.0.0/16"
    assert env["FLANNEL_SUBNET"] == str(next(daemons[0].subnet.hosts())) + "/24"  # type: ignore[union-attr]
    assert env["FLANNEL_MTU"] == "1500" and env["FLANNEL_IPMASQ"] == "true"
    nodes, _ = Etcd2([etcd]).list(f"{prefix}/subnets")
    leases = {n.key.rsplit("/", 1)[1]: json.loads(n.value or "") for n in nodes}
    assert {v["PublicIP"] for v in leases.values()} == {f"192.0.2.{i}" for i in range(1, 6)}
    assert all(n.ttl and 3500 < n.ttl <= 3600 for n in nodes)
    assert not any(f.name.startswith(".") for f in tmp_path.iterdir()), "temp files left behind"


def test_restart_reuses_the_lease_of_its_public_ip(etcd: str, prefix: str, tmp_path: Path) -> None:
    first, _ = daemon(etcd, prefix, "192.0.2.7", tmp_path)
    daemon(etcd, prefix, "192.0.2.8", tmp_path)
    again, _ = daemon(etcd, prefix, "192.0.2.7", tmp_path)
    assert again.subnet == first.subnet
    nodes, _ = Etcd2([etcd]).list(f"{prefix}/subnets")
    assert len(nodes) == 2


def test_lost_lease_is_taken_again_from_the_old_subnet_file(etcd: str, prefix: str, tmp_path: Path) -> None:
    first, _ = daemon(etcd, prefix, "192.0.2.9", tmp_path)
    Etcd2([etcd]).delete(flanneld.subnet_key(prefix, first.subnet))  # type: ignore[arg-type]
    again, _ = daemon(etcd, prefix, "192.0.2.9", tmp_path)
    assert again.subnet == first.subnet


def test_host_gw_routes_follow_leases_as_they_come_and_go(etcd: str, prefix: str, tmp_path: Path) -> None:
    a, router = daemon(etcd, prefix, "192.0.2.1", tmp_path)
    b, _ = daemon(etcd, prefix, "192.0.2.2", tmp_path)
    for _ in range(3):
        a.step(wait=1.0)
    assert router.table == {str(b.subnet): "192.0.2.2"}
    assert str(a.subnet) not in router.table, "no route to its own subnet"
    # A short-lived lease appears, then expires: its route comes and goes.
    short = next(n for n in ("10.0.250.0/24", "10.0.251.0/24", "10.0.252.0/24") if n not in (str(a.subnet), str(b.subnet)))
    Etcd2([etcd]).create(f"{prefix}/subnets/{short.replace('/', '-')}", json.dumps({"PublicIP": "192.0.2.3"}), ttl=1)
    a.step(wait=2.0)
    assert router.table.get(short) == "192.0.2.3"
    deadline = time.monotonic() + 10
    while short in router.table and time.monotonic() < deadline:
        a.step(wait=1.0)
    assert short not in router.table
    assert ("del", short, "192.0.2.3") in router.calls
    # A deleted lease (node removed) loses its route too.
    Etcd2([etcd]).delete(flanneld.subnet_key(prefix, b.subnet))  # type: ignore[arg-type]
    a.step(wait=2.0)
    assert router.table == {}


def test_lease_is_renewed_before_it_expires(etcd: str, prefix: str, tmp_path: Path) -> None:
    d, _ = daemon(etcd, prefix, "192.0.2.4", tmp_path, ttl=2)
    key = flanneld.subnet_key(prefix, d.subnet)  # type: ignore[arg-type]
    for _ in range(8):  # 4 s: past the TTL, kept alive by renewals
        d.step(wait=0.5)
    node = Etcd2([etcd]).get(key)
    assert json.loads(node.value or "")["PublicIP"] == "192.0.2.4"
    assert node.ttl is not None and node.ttl >= 1


@pytest.mark.parametrize("raw, err", [
    ('{"Network": "10.0.0.0/16", "SubnetLen": 8}', "SubnetLen 8"),
    ('{"SubnetLen": 24}', "invalid network config"),
    ("not json", "invalid network config"),
])
def test_bad_config_is_a_fatal_error(raw: str, err: str) -> None:
    with pytest.raises(flanneld.FatalError, match=err):
        flanneld.NetConfig.parse(raw)


def test_config_defaults_follow_flannel() -> None:
    cfg = flanneld.NetConfig.parse('{"Network": "10.1.0.0/16"}')
    assert cfg.subnet_len == 24 and cfg.backend == "udp"
    assert str(cfg.subnet_min) == "10.1.1.0" and str(cfg.subnet_max) == "10.1.255.0"


def _run_main(args: list[str], timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    code = ("import sys; sys.path.insert(0, %r); from standins.flanneld import main; "
            "main(router=lambda *a: None)" % str(testsupport.IMAGES_DIR))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "FLANNEL_VERSION": "v0.5.5", **env})


def test_missing_config_exits_non_zero_with_a_clear_line(etcd: str, tmp_path: Path) -> None:
    proc = _run_main([f"--etcd-endpoints={etcd}", "--etcd-prefix=/nothing/here", "--iface=127.0.0.1",
                      f"--subnet-file={tmp_path}/s.env"])
    assert proc.returncode == 1
    assert "failed to retrieve network config: 100: Key not found (/nothing/here/config)" in proc.stderr


def test_unreachable_etcd_exits_non_zero_after_a_bounded_retry(tmp_path: Path) -> None:
    port = testsupport.free_port()
    t0 = time.monotonic()
    proc = _run_main([f"--etcd-endpoints=http://127.0.0.1:{port}", "--iface=127.0.0.1",
                      f"--subnet-file={tmp_path}/s.env", "--v=3"], STANDIN_ETCD_TIMEOUT="2")
    assert proc.returncode == 1 and time.monotonic() - t0 < 15
    last = proc.stderr.strip().splitlines()[-1]
    assert "etcd unreachable after 2s, giving up" in last, proc.stderr


@pytest.mark.parametrize("version", ["v0.5.5", "0.5.5", "v0.12.0"])
def test_main_writes_subnet_env_and_keeps_running(etcd: str, prefix: str, tmp_path: Path, version: str) -> None:
    import os

    env_file = tmp_path / "run" / "flannel" / "subnet.env"
    proc = _popen_main([f"--etcd-endpoints=http://127.0.0.1:1,{etcd}", f"--etcd-prefix={prefix}",
                        "--iface=127.0.0.1", f"--subnet-file={env_file}"],
                       env={**os.environ, "FLANNEL_VERSION": version})
    try:
        deadline = time.monotonic() + 15
        while not env_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert read_env(str(env_file))["FLANNEL_IPMASQ"] == "false"
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0  # SIGTERM is a clean stop; the lease stays for the next start
    q = urllib.parse.quote(f"{prefix}/subnets")
    body = json.loads(urllib.request.urlopen(f"{etcd}/v2/keys{q}?recursive=true").read())
    assert json.loads(body["node"]["nodes"][0]["value"])["PublicIP"] == "127.0.0.1"


# -- start-up as flannel v0.5.5 (see the stand-in's docstring for the source lines) --------------

ABSENT_IP = "198.51.100.77"  # TEST-NET-2: an address no interface of this machine has


def _popen_main(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    import os

    code = ("import sys; sys.path.insert(0, %r); from standins.flanneld import main; "
            "main(router=lambda *a: None)" % str(testsupport.IMAGES_DIR))
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env if env is not None else {**os.environ, "FLANNEL_VERSION": "v0.5.5"})


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    return err


def test_lookup_iface_matches_addresses_and_names_as_flannel() -> None:
    assert flanneld.lookup_iface("127.0.0.1") == ("lo", "127.0.0.1")
    assert flanneld.lookup_iface("lo") == ("lo", "127.0.0.1")
    with pytest.raises(flanneld.IfaceError, match=f"^Error looking up interface {ABSENT_IP}: No interface with given IP found$"):
        flanneld.lookup_iface(ABSENT_IP)
    with pytest.raises(flanneld.IfaceError, match="^Error looking up interface nosuch0: no such network interface$"):
        flanneld.lookup_iface("nosuch0")


@pytest.mark.parametrize("iface, line", [
    (ABSENT_IP, f"Error looking up interface {ABSENT_IP}: No interface with given IP found"),
    ("nosuch0", "Error looking up interface nosuch0: no such network interface"),
])
def test_iface_not_on_the_node_logs_and_idles_without_exiting(etcd: str, prefix: str, tmp_path: Path,
                                                              iface: str, line: str) -> None:
    """flannel v0.5.5: lookupIface fails, initAndRun returns, main waits for a signal (main.go:167-171, 288)."""
    env_file = tmp_path / "subnet.env"
    proc = _popen_main([f"--etcd-endpoints={etcd}", f"--etcd-prefix={prefix}", f"--iface={iface}",
                        f"--subnet-file={env_file}"])
    time.sleep(3)
    assert proc.poll() is None, "flannel v0.5.5 does not exit when --iface matches nothing"
    err = _stop(proc)
    assert proc.returncode == 0  # SIGTERM: "Exiting...", status 0 (main.go:292-295)
    assert line in err and "Exiting..." in err.splitlines()[-1], err
    assert not env_file.exists(), "no lease, no subnet file"
    nodes, _ = Etcd2([etcd]).list(f"{prefix}/subnets")
    assert nodes == [], "it never reached etcd"


class LateEtcd:
    """A port where etcd "comes up" late: once ``open()`` is called, connections to it are
    forwarded to the test etcd (which holds the config: this stand-in exits when it is missing)."""

    def __init__(self, etcd: str) -> None:
        self.port = testsupport.free_port()
        self.target = urllib.parse.urlsplit(etcd).port
        self.server: socket.socket | None = None

    def open(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
                up = socket.create_connection(("127.0.0.1", self.target or 0))
            except OSError:
                return
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            a.close()
            b.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def test_etcd_unreachable_at_start_is_retried_every_second_until_it_answers(etcd: str, prefix: str,
                                                                             tmp_path: Path) -> None:
    """flannel v0.5.5 network.go:87-100: each start-up step loops on a 1 s sleep for ever."""
    late = LateEtcd(etcd)
    env_file = tmp_path / "subnet.env"
    proc = _popen_main([f"--etcd-endpoints=http://127.0.0.1:{late.port}", f"--etcd-prefix={prefix}",
                        "--iface=127.0.0.1", f"--subnet-file={env_file}"])
    try:
        time.sleep(4)
        assert proc.poll() is None, "no --etcd-timeout: it must not give up"
        late.open()
        deadline = time.monotonic() + 20
        while not env_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert env_file.exists() and read_env(str(env_file))["FLANNEL_NETWORK"] == "10.0.0.0/16"
        assert proc.poll() is None
    finally:
        err = _stop(proc)
        late.close()
    failures = [ln for ln in err.splitlines()
                if "Failed to retrieve network config: client: etcd cluster is unavailable or misconfigured" in ln]
    assert 3 <= len(failures) <= 6, err  # about one a second for the 4 s etcd was away
    assert "Subnet lease acquired: 10.0." in err, err


def test_version_comes_from_the_image_tag(tmp_path: Path) -> None:
    import os

    env = dict(os.environ, FLANNEL_VERSION="v0.5.5")
    proc = _popen_main(["--version"], env=env)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and err.strip() == "0.5.5"
    env["FLANNEL_VERSION"] = "v0.7.1"
    proc = _popen_main(["--iface=127.0.0.1", f"--subnet-file={tmp_path}/s.env"], env=env)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1 and "not v0.7.1" in err.splitlines()[-1], err


# -- per version: flag sets and v0.12.0's start-up (sources in the stand-in's docstring) ---------

def _env(version: str, **more: str) -> dict[str, str]:
    import os

    return {**os.environ, "FLANNEL_VERSION": version, **more}


@pytest.mark.parametrize("version, flag, status", [
    ("v0.5.5", "--kube-subnet-mgr", 2),  # came with v0.7; Go 1.4 flag.ExitOnError: 2
    ("v0.5.5", "--iface-regex=eth.*", 2),
    ("v0.5.5", "--no-such-flag", 2),
    ("v0.12.0", "--logtostderr", 0),  # glog's, not copied into v0.12's FlagSet; its usage() exits 0
    ("v0.12.0", "--subnet-dir=/x", 0),
    ("v0.12.0", "--networks=a", 0),
])
def test_unknown_flag_is_named_and_exits_as_that_version(version: str, flag: str, status: int) -> None:
    proc = _popen_main([flag, "--iface=127.0.0.1"], env=_env(version))
    _, err = proc.communicate(timeout=10)
    name = flag.lstrip("-").split("=")[0]
    assert proc.returncode == status, err
    assert err.splitlines()[0] == f"flag provided but not defined: -{name}", err
    assert "Usage" in err.splitlines()[1]


@pytest.mark.parametrize("version, flags", [
    ("v0.5.5", flanneld.FLAGS_055), ("v0.12.0", flanneld.FLAGS_012),
])
def test_each_flag_of_the_version_parses(version: str, flags: list[object]) -> None:
    from standins import goflag

    argv = []
    names = {f.name for f in flanneld.flags_of(version)} - {"help"}  # v0.5.5 --help: usage, exit 0
    for f in flanneld.flags_of(version):
        if f.name in names:
            argv.append(f"--{f.name}" if f.is_bool else f"-{f.name}=1")
    opts = flanneld.parse_args(version, argv)
    assert set(opts.given) == names
    assert flanneld.flags_of(version) is flags and all(isinstance(f, goflag.GoFlag) for f in flags)


def test_go_flag_rules() -> None:
    from standins import goflag

    flags = [goflag.string("a"), goflag.boolean("b"), goflag.integer("n", 3)]
    p = goflag.parse(["-a", "-b", "--b=false", "-n=0x10", "pos", "-a=x"], flags)
    assert p["a"] == "-b" and p["b"] is False and p["n"] == 16 and p.args == ["pos", "-a=x"]
    assert goflag.parse(["--", "-a"], flags).args == ["-a"]
    for argv, msg in ([["-a"], "flag needs an argument: -a"], [["---a"], "bad flag syntax: ---a"],
                      [["-b=yes"], 'invalid boolean value "yes" for flag -b'], [["-zz"], "flag provided but not defined: -zz"]):
        with pytest.raises(goflag.FlagError, match=msg):
            goflag.parse(argv, flags)
    with pytest.raises(goflag.HelpRequested):
        goflag.parse(["-h"], flags)
    p = goflag.parse(["-a=cli"], flags)
    goflag.from_env(p, flags, "X", {"X_A": "env", "X_N": "7"})
    assert p["a"] == "cli" and p["n"] == 7


@pytest.mark.parametrize("version, shown", [("v0.12.0", "v0.12.0"), ("0.5.5", "0.5.5")])
def test_version_flag_per_version(version: str, shown: str) -> None:
    proc = _popen_main(["--version"], env=_env(version))
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and err.strip() == shown


@pytest.mark.parametrize("iface, line", [
    (ABSENT_IP, f"error looking up interface {ABSENT_IP}: No interface with given IP found"),
    ("nosuch0", "error looking up interface nosuch0: route ip+net: no such network interface"),
])
def test_v012_iface_not_on_the_node_exits_1(etcd: str, prefix: str, tmp_path: Path, iface: str, line: str) -> None:
    """v0.12.0 main.go:207-238: unlike v0.5.5 it exits 1 (a unit's Restart= tries again)."""
    proc = _popen_main([f"--etcd-endpoints={etcd}", f"--etcd-prefix={prefix}", f"--iface={iface}",
                        f"--subnet-file={tmp_path}/s.env"], env=_env("v0.12.0"))
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1, err
    assert f"Could not find valid interface matching {iface}: {line}" in err
    assert err.strip().splitlines()[-1].endswith(
        "Failed to find interface to use that matches the interfaces and/or regexes provided")


def test_v012_tries_each_iface_in_turn(etcd: str, prefix: str, tmp_path: Path) -> None:
    env_file = tmp_path / "s.env"
    proc = _popen_main([f"--etcd-endpoints={etcd}", f"--etcd-prefix={prefix}", f"--iface={ABSENT_IP}",
                        "--iface=127.0.0.1", f"--subnet-file={env_file}"], env=_env("v0.12.0"))
    try:
        deadline = time.monotonic() + 15
        while not env_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert read_env(str(env_file))["FLANNEL_SUBNET"].startswith("10.0.")
    finally:
        err = _stop(proc)
    assert proc.returncode == 0 and "Exiting cleanly..." in err.splitlines()[-1], err


def test_v012_missing_config_is_retried_every_second(etcd: str, tmp_path: Path) -> None:
    """v0.12.0 getConfig (main.go:381-400) retries any error for ever; v0.5.5's stand-in exits 1."""
    proc = _run_main([f"--etcd-endpoints={etcd}", "--etcd-prefix=/nothing/here", "--iface=127.0.0.1",
                      f"--subnet-file={tmp_path}/s.env"], FLANNEL_VERSION="v0.12.0", STANDIN_ETCD_TIMEOUT="3")
    lines = [ln for ln in proc.stderr.splitlines() if "Couldn't fetch network config: 100: Key not found (/nothing" in ln]
    assert 3 <= len(lines) <= 5, proc.stderr
    assert proc.stdout.count("timed out") >= 2
    assert proc.returncode == 1  # only because STANDIN_ETCD_TIMEOUT bounds it


def test_v012_unreachable_etcd_is_retried_with_the_go_client_text(tmp_path: Path) -> None:
    port = testsupport.free_port()
    proc = _run_main([f"--etcd-endpoints=http://127.0.0.1:{port}", "--iface=127.0.0.1",
                      f"--subnet-file={tmp_path}/s.env"], FLANNEL_VERSION="v0.12.0", STANDIN_ETCD_TIMEOUT="2")
    assert ("Couldn't fetch network config: client: etcd cluster is unavailable or misconfigured; error #0:"
            in proc.stderr), proc.stderr


def test_v012_revoked_lease_shuts_down(etcd: str, prefix: str, tmp_path: Path) -> None:
    env_file = tmp_path / "s.env"
    proc = _popen_main([f"--etcd-endpoints={etcd}", f"--etcd-prefix={prefix}", "--iface=127.0.0.1",
                        f"--subnet-file={env_file}"], env=_env("v0.12.0"))
    deadline = time.monotonic() + 15
    while not env_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    subnet = read_env(str(env_file))["FLANNEL_SUBNET"]
    net = subnet.rsplit(".", 1)[0] + ".0-24"
    Etcd2([etcd]).delete(f"{prefix}/subnets/{net}")
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0 and "Lease has been revoked. Shutting down daemon." in err, err


def test_v012_renew_margin_is_checked_and_healthz_served(etcd: str, prefix: str, tmp_path: Path) -> None:
    proc = _run_main(["--subnet-lease-renew-margin=1440", "--iface=127.0.0.1"], FLANNEL_VERSION="v0.12.0")
    assert proc.returncode == 1 and "Invalid subnet-lease-renew-margin option" in proc.stderr
    port = testsupport.free_port()
    p = _popen_main([f"--etcd-endpoints={etcd}", f"--etcd-prefix={prefix}", "--iface=127.0.0.1",
                     f"--subnet-file={tmp_path}/s.env", "--healthz-ip=127.0.0.1", f"--healthz-port={port}"],
                    env=_env("v0.12.0"))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert body == b"flanneld is running"
    finally:
        _stop(p)
