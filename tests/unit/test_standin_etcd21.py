"""The etcd 2.1.1 wrapper and etcdctl 2.1.1 wrapper: flag sets and translation (no root);
one end-to-end run over Debian's real etcd 3.4 when it is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from piprov_lab.images import IMAGES, PROFILES, profile_images, testsupport

testsupport.standins_on_path()
from standins import etcd21, etcdctl21  # noqa: E402

SEED_ARGS = ["--name=etcd", "--data-dir=/var/etcd/data", "--listen-client-urls=http://0.0.0.0:4001",
             "--advertise-client-urls=http://10.0.0.1:4001", "--listen-peer-urls=http://127.0.0.1:7001",
             "--initial-advertise-peer-urls=http://127.0.0.1:7001", "--initial-cluster=etcd=http://127.0.0.1:7001"]


def _run(mod: str, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    code = f"import sys; sys.path.insert(0, {str(testsupport.IMAGES_DIR)!r}); from standins.{mod} import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **env})


def test_seed_flags_translate_to_etcd34_with_the_v2_api() -> None:
    opts = etcd21.parse_config(SEED_ARGS, env={})
    argv = etcd21.real_argv(opts, 40123)
    assert argv[0] == etcd21.REAL_ETCD and "--enable-v2=true" in argv
    assert "--listen-client-urls=http://127.0.0.1:40123" in argv  # the wrapper's proxy holds :4001
    assert "--advertise-client-urls=http://10.0.0.1:4001" in argv
    assert "--initial-cluster=etcd=http://127.0.0.1:7001" in argv and "--name=etcd" in argv
    assert opts["listen-client-urls"] == ["http://0.0.0.0:4001"]


@pytest.mark.parametrize("flag", ["--enable-v2=true", "--log-level=info", "--listen-metrics-urls=http://a:1",
                                  "--auto-compaction-retention=1", "--logger=zap"])
def test_flags_etcd_2_1_1_lacks_exit_2_naming_them(flag: str) -> None:
    proc = _run("etcd21", SEED_ARGS + [flag])
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == f"flag provided but not defined: -{flag[2:].split('=')[0]}"
    assert proc.stdout.startswith("usage: etcd [flags]")


@pytest.mark.parametrize("args, text", [
    (["--name=etcd", "stray"], "error verifying flags, 'stray' is not a valid flag. See 'etcd --help'."),
    (["--listen-client-urls=http://0.0.0.0:4001"], "-advertise-client-urls is required when -listen-client-urls"),
    (["--initial-cluster=a=http://x:1", "--discovery=http://d"], "multiple discovery or bootstrap flags"),
    (["--heartbeat-interval=500"], "-election-timeout[1000ms] should be at least as 5 times"),
])
def test_config_errors_exit_1(args: list[str], text: str) -> None:
    proc = _run("etcd21", args)
    assert proc.returncode == 1 and text in proc.stderr, proc.stderr


@pytest.mark.parametrize("args, text", [
    (["--listen-client-urls=http://0.0.0.0"], 'URL address does not have the form "host:port"'),
    (["--listen-peer-urls=unix://x:1"], "URL scheme must be http or https"),
    (["--peers=a:1"], 'flag "-peers" is no longer supported.'),
    (["--initial-cluster-state=maybe"], "invalid value"),
])
def test_bad_values_exit_2(args: list[str], text: str) -> None:
    proc = _run("etcd21", args)
    assert proc.returncode == 2 and text in proc.stderr, proc.stderr


def test_env_fills_unset_flags_and_version_prints_2_1_1() -> None:
    opts = etcd21.parse_config(["--name=x"], env={"ETCD_NAME": "ignored", "ETCD_DATA_DIR": "/d"})
    assert opts["name"] == "x" and opts["data-dir"] == "/d"
    assert etcd21.real_argv(etcd21.parse_config([], env={}), 1)[2] == "--data-dir=default.etcd"
    proc = _run("etcd21", ["--version"])
    assert proc.returncode == 0 and proc.stdout.splitlines()[0] == "etcd Version: 2.1.1"


def test_ignored_and_unsupported_flags() -> None:
    opts = etcd21.parse_config(["--v", "--snapshot"], env={})
    assert opts.given == ["v", "snapshot"]
    with pytest.raises(etcd21.ConfigError, match="-peer-cert-file is not implemented"):
        etcd21.real_argv(etcd21.parse_config(["--peer-cert-file=/c"], env={}), 1)


def test_client_mux_paths_and_version_answer() -> None:
    for path in ("/v2/keys/a?wait=true", "/v2/keys", "/v2/members", "/v2/stats/self", "/health", "/version"):
        assert etcd21.served(path), path
    for path in ("/v3/kv/range", "/v3beta/watch", "/v2/keysx", "/readyz", "/"):
        assert not etcd21.served(path), path
    assert json.loads(etcd21.version_body({"etcdserver": "3.4.23", "etcdcluster": "3.4.0"})) == {
        "etcdserver": "2.1.1", "etcdcluster": "2.1.0"}
    assert json.loads(etcd21.version_body({"etcdcluster": "not_decided"}))["etcdcluster"] == "not_decided"


@pytest.mark.parametrize("argv, expect", [
    (["--peers=10.0.0.1:4001", "get", "/k"], ["--endpoints=http://10.0.0.1:4001", "--output=simple", "get", "/k"]),
    (["-C", "http://127.0.0.1:4001", "-o", "json", "set", "/k", "v"],
     ["--endpoints=http://127.0.0.1:4001", "--output=json", "set", "/k", "v"]),
    (["--no-sync", "ls", "--recursive", "/"],
     ["--endpoints=http://127.0.0.1:4001,http://127.0.0.1:2379", "--output=simple", "--no-sync", "ls", "--recursive", "/"]),
])
def test_etcdctl_2_1_1_surface_translates(argv: list[str], expect: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETCDCTL_PEERS", raising=False)
    cmd, text = etcdctl21.translate(argv)
    assert text == "" and cmd == [etcdctl21.REAL_ETCDCTL, *expect]


@pytest.mark.parametrize("argv, first", [
    (["--endpoints=http://127.0.0.1:4001", "get", "/k"], "Incorrect Usage."),  # --endpoints: etcdctl 2.2+
    (["--timeout=1s", "get", "/k"], "Incorrect Usage."),
    (["put", "a", "b"], "No help topic for 'put'"),  # v3 commands
    (["endpoint", "health"], "No help topic for 'endpoint'"),
    (["--version"], "etcdctl version 2.1.1"),
])
def test_etcdctl_refuses_what_2_1_1_did_not_have(argv: list[str], first: str) -> None:
    cmd, text = etcdctl21.translate(argv)
    assert cmd is None and text.splitlines()[0] == first
    proc = _run("etcdctl21", argv, ETCDCTL_API="3")
    assert proc.returncode == 0 and proc.stdout.splitlines()[0] == first  # 2.1.1 exits 0 here (main.go:59)


def test_image_set_covers_both_profiles() -> None:
    tags = {(repo.rsplit("/", 1)[1], tag) for repo, tag in IMAGES.values()}
    for want in [("etcd-amd64", "2.1.1"), ("etcd-amd64", "3.4.23"), ("flannel-amd64", "0.5.5"),
                 ("flannel-amd64", "v0.5.5"), ("flannel-amd64", "v0.12.0"), ("hyperkube-amd64", "v1.1.2"),
                 ("hyperkube-amd64", "v1.1.3"), ("hyperkube-amd64", "v1.18.20"), ("pause-amd64", "2.0"),
                 ("pause-amd64", "3.2")]:
        assert want in tags
    assert {c: t for c, (_, t) in profile_images("seed").items()} == {
        "etcd": "2.1.1", "flannel": "0.5.5", "hyperkube": "v1.1.2", "pause": "2.0"}
    assert {c: t for c, (_, t) in profile_images("last-hyperkube").items()} == {
        "etcd": "3.4.23", "flannel": "v0.12.0", "hyperkube": "v1.18.20", "pause": "3.2"}
    assert set(PROFILES) == {"seed", "last-hyperkube"}
    with pytest.raises(KeyError, match="unknown lab profile 'x'"):
        profile_images("x")


@pytest.mark.skipif(testsupport.etcd_binary() is None, reason="etcd not installed (scripts/setup.sh)")
def test_wrapper_serves_v2_keys_from_the_real_etcd(tmp_path: Path) -> None:
    port, peer = testsupport.free_port(), testsupport.free_port()
    env = {**os.environ, "STANDIN_REAL_ETCD": str(testsupport.etcd_binary())}
    code = f"import sys; sys.path.insert(0, {str(testsupport.IMAGES_DIR)!r}); from standins.etcd21 import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, "--name=etcd", f"--data-dir={tmp_path}/d",
                             f"--listen-client-urls=http://127.0.0.1:{port}",
                             f"--advertise-client-urls=http://127.0.0.1:{port}",
                             f"--listen-peer-urls=http://127.0.0.1:{peer}",
                             f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                             f"--initial-cluster=etcd=http://127.0.0.1:{peer}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                version = json.loads(urllib.request.urlopen(f"{base}/version", timeout=2).read())
                if version["etcdcluster"] != "not_decided":
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        assert version == {"etcdserver": "2.1.1", "etcdcluster": "2.1.0"}
        req = urllib.request.Request(f"{base}/v2/keys/coreos.com/network/config", data=b"value=x", method="PUT")
        assert json.loads(urllib.request.urlopen(req, timeout=5).read())["node"]["value"] == "x"
        got = json.loads(urllib.request.urlopen(f"{base}/v2/keys/coreos.com/network/config", timeout=5).read())
        assert got["node"]["value"] == "x"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(f"{base}/v3/kv/range", data=b"{}"), timeout=5)
        assert e.value.code == 404
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == -15, err  # etcd re-raises SIGTERM after its cleanup (pkg/osutil)
