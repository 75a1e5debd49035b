"""The lab images: deterministic daemonless build, shared layers, push over the registry API v2.

No root and no docker daemon: the registry is Debian's docker-registry on a
loopback port, and the Python layer is smoke-tested by running its interpreter
through its own dynamic loader.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from piprov_lab.images import IMAGES, BuildError, build, build_images, ensure_images, image_refs, registry, testsupport

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
needs_inputs = pytest.mark.skipif(
    not all(p.exists() for p in (build.PYTHON, build.ETCD, build.BUSYBOX)),
    reason="python3.11, etcd and busybox-static are needed (scripts/setup.sh)")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="module")
def local_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(REGISTRY_BIN).exists():
        pytest.skip("docker-registry is not installed (scripts/setup.sh)")
    d = tmp_path_factory.mktemp("registry")
    addr = f"127.0.0.1:{testsupport.free_port()}"
    (d / "config.yml").write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                                  f"    rootdirectory: {d / 'data'}\nhttp:\n  addr: {addr}\n")
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(d / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            urllib.request.urlopen(f"http://{addr}/v2/", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("docker-registry did not start")
            time.sleep(0.1)
    yield addr
    proc.terminate()
    proc.wait(10)


def manifest(addr: str, repo: str, tag: str) -> dict:  # type: ignore[type-arg]
    req = urllib.request.Request(f"http://{addr}/v2/{repo}/manifests/{tag}",
                                 headers={"Accept": registry.MANIFEST_TYPE})
    return json.loads(urllib.request.urlopen(req).read())  # type: ignore[no-any-return]


@needs_inputs
def test_build_is_deterministic_and_cached(cache: Path, tmp_path: Path) -> None:
    first = build_images(cache)
    t0 = time.monotonic()
    again = build_images(cache)
    assert time.monotonic() - t0 < 1.0, "a cached build only reads its index"
    assert [i.manifest for i in first] == [i.manifest for i in again]
    fresh = build_images(tmp_path / "other")
    assert [i.manifest for i in fresh] == [i.manifest for i in first], "same inputs, same digests"
    by_name = {i.name: i for i in first}
    assert set(by_name) == set(IMAGES)
    layers = {n: [d for d, _ in i.blobs[:-1]] for n, i in by_name.items()}
    base = layers["busybox"][0]
    assert all(ls[0] == base for ls in layers.values()), "every image starts with the shared busybox layer"
    assert layers["etcd"][1] == layers["flannel"][1] == layers["hyperkube"][1], "one shared python layer"
    assert layers["hyperkube"] == layers["hyperkube-next"] == layers["flannel"], "stand-ins share their layers"
    assert by_name["hyperkube"].manifest != by_name["hyperkube-next"].manifest  # KUBE_VERSION differs


@needs_inputs
def test_layers_hold_what_the_units_run(cache: Path, tmp_path: Path) -> None:
    names: dict[str, set[str]] = {}
    for img in build_images(cache):
        found: set[str] = set()
        for _, path in img.blobs[:-1]:
            with tarfile.open(fileobj=gzip.open(path)) as tf:
                found |= set(tf.getnames())
        names[img.name] = found
    assert {"usr/local/bin/etcd", "usr/local/bin/etcdctl"} <= names["etcd"]
    assert {"opt/bin/flanneld", "opt/standins/standins/flanneld.py"} <= names["flannel"]
    assert {"hyperkube", "opt/standins/standins/kubelet.py", "opt/standins/yaml/__init__.py"} <= names["hyperkube"]
    assert {"pause", "bin/busybox", "bin/sh", "usr/bin/nc"} <= names["busybox"]
    assert not any("__pycache__" in n or "/test/" in n or "idlelib" in n for n in names["hyperkube"])


@needs_inputs
def test_python_layer_runs_the_stand_ins(cache: Path, tmp_path: Path) -> None:
    """Unpack busybox+python+stand-ins and import every stand-in with the image's own interpreter."""
    img = next(i for i in build_images(cache) if i.name == "hyperkube")
    root = tmp_path / "root"
    root.mkdir()
    for _, path in img.blobs[:-1]:
        with tarfile.open(fileobj=gzip.open(path)) as tf:
            # The extraction filter exists from Python 3.11.4; Debian 12 ships 3.11.2.
            tf.extractall(root, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
    loader = root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    code = ("import sys; sys.path.insert(0, %r); "
            "import standins.hyperkube, standins.apiserver, standins.kubelet, standins.scheduler, "
            "standins.controller_manager, standins.proxy, standins.flanneld, yaml, ssl; "
            "ssl.create_default_context(); print(yaml.safe_load('a: [1]'), ssl.OPENSSL_VERSION, sys.prefix)"
            ) % str(root / "opt/standins")
    proc = subprocess.run([str(loader), "--library-path", str(root / "usr/lib/x86_64-linux-gnu"),
                           str(root / "usr/bin/python3.11"), "-I", "-S", "-c", code],
                          env={"PYTHONHOME": str(root / "usr")}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "{'a': [1]}" in proc.stdout and "OpenSSL" in proc.stdout  # TLS for the stand-ins (issue #16)
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and not f.is_symlink())
    print(f"hyperkube image unpacked: {size / 1e6:.1f} MB")
    assert size < 40e6


@needs_inputs
def test_push_over_the_registry_api_and_skip_when_current(cache: Path, local_registry: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_images(local_registry, cache)
    refs = image_refs(local_registry)
    assert refs["hyperkube"] == f"{local_registry}/google_containers/hyperkube-amd64:v1.1.2"
    m = {name: manifest(local_registry, repo, tag) for name, (repo, tag) in IMAGES.items()}
    assert m["etcd"]["layers"][0]["digest"] == m["busybox"]["layers"][0]["digest"]
    cfg_digest = m["hyperkube-next"]["config"]["digest"]
    cfg = json.loads(urllib.request.urlopen(
        f"http://{local_registry}/v2/google_containers/hyperkube-amd64/blobs/{cfg_digest}").read())
    assert "KUBE_VERSION=v1.1.3" in cfg["config"]["Env"] and cfg["config"]["Cmd"] == ["/hyperkube"]
    pushed: list[str] = []
    monkeypatch.setattr(registry.Registry, "push_blob", lambda self, repo, digest, path: pushed.append(digest))
    ensure_images(local_registry, cache)
    assert pushed == [], "nothing is pushed when the registry already has every manifest"


def test_unreachable_registry_is_a_clear_error(cache: Path) -> None:
    if not all(p.exists() for p in (build.PYTHON, build.ETCD, build.BUSYBOX)):
        pytest.skip("build inputs missing")
    with pytest.raises(registry.RegistryError, match="unreachable"):
        ensure_images(f"127.0.0.1:{testsupport.free_port()}", cache)


def test_missing_inputs_are_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(build, "ETCD", tmp_path / "no-etcd")
    with pytest.raises(BuildError, match="etcd-server"):
        build.etcd_layer()
