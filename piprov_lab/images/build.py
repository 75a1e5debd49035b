"""Image layers built from files on this machine (no docker daemon, no pulls).

Layers are deterministic tarballs (sorted entries, fixed mtimes and owners, gzip
with a zero timestamp), so the same inputs give the same digests: the registry
and every node's docker daemon store a shared layer once.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
STANDINS = HERE / "standins"
PYTHON = Path("/usr/bin/python3.11")
PYLIB = Path("/usr/lib/python3.11")
ETCD = Path("/usr/bin/etcd")
ETCDCTL = Path("/usr/bin/etcdctl")
BUSYBOX = Path("/bin/busybox")
MTIME = 1451606400  # 2016-01-01: any fixed time keeps digests stable

# Parts of the standard library the stand-ins never import: left out to keep the
# shared layer small (tests, GUI, packaging tools, docs).
STDLIB_SKIP = re.compile(
    r"(^|/)(__pycache__|test|tests|idlelib|tkinter|turtledemo|ensurepip|lib2to3|pydoc_data|"
    r"config-3\.11-[^/]*|site-packages|dist-packages|distutils|venv|sqlite3|curses|dbm|"
    r"msilib|turtle\.py|pydoc\.py)(/|$)"
)
# Shared objects the python layer carries; lib-dynload modules needing others are left out.
# OpenSSL is carried for _ssl (and _hashlib): the stand-ins serve and speak TLS as the real
# apiserver, kubelet, proxy and flanneld do (issue #16).
TLS_LIBS = {"libssl.so.3", "libcrypto.so.3"}
BASE_LIBS = {"libc.so.6", "libm.so.6", "libz.so.1", "libexpat.so.1", "ld-linux-x86-64.so.2"} | TLS_LIBS


class BuildError(Exception):
    pass


@dataclass
class Layer:
    name: str
    files: dict[str, tuple[str, object]] = field(default_factory=dict)  # path -> (kind, data)

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in self.files:
                self.files[p] = ("dir", mode if i == len(parts) else 0o755)

    def _parents(self, path: str) -> None:
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent:
            self.add_dir(parent)

    def add_file(self, path: str, src: Path, mode: int | None = None) -> None:
        path = path.strip("/")
        self._parents(path)
        self.files[path] = ("file", (src, mode if mode is not None else stat.S_IMODE(src.stat().st_mode)))

    def add_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None:
        path = path.strip("/")
        self._parents(path)
        self.files[path] = ("bytes", (data, mode))

    def add_symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self._parents(path)
        self.files[path] = ("link", target)

    def tar(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
            for path in sorted(self.files):
                kind, data = self.files[path]
                info = tarfile.TarInfo(path)
                info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
                if kind == "dir":
                    info.type, info.mode = tarfile.DIRTYPE, int(data)  # type: ignore[call-overload]
                    tf.addfile(info)
                elif kind == "link":
                    info.type, info.linkname, info.mode = tarfile.SYMTYPE, str(data), 0o777
                    tf.addfile(info)
                else:
                    if kind == "file":
                        src, mode = data  # type: ignore[misc]
                        content = Path(src).read_bytes()
                    else:
                        content, mode = data  # type: ignore[misc]
                    info.size, info.mode = len(content), int(mode)
                    tf.addfile(info, io.BytesIO(content))
        return buf.getvalue()


def _ldd(binary: Path) -> list[Path]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    libs = []
    for line in out.stdout.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


def _add_lib(layer: Layer, lib: Path) -> None:
    """A shared library at its real path; /lib is Debian's merged-/usr link to usr/lib."""
    real = lib.resolve()
    layer.add_file(str(real), real)
    if lib.name != real.name:  # the soname link (libz.so.1 -> libz.so.1.2.13)
        layer.add_symlink(str(real.parent / lib.name), real.name)


def busybox_layer() -> Layer:
    """busybox-static with its applet links, a minimal /etc, and /pause."""
    if not BUSYBOX.exists():
        raise BuildError(f"{BUSYBOX} is missing: install busybox-static (scripts/setup.sh does)")
    layer = Layer("busybox")
    layer.add_file("bin/busybox", BUSYBOX, 0o755)
    applets = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "bin/busybox":
            layer.add_symlink(applet, "/bin/busybox")
    layer.add_dir("tmp", 0o1777)
    for d in ("root", "proc", "sys", "dev", "etc", "run", "var/run", "www"):
        layer.add_dir(d)
    layer.add_bytes("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    layer.add_bytes("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    layer.add_bytes("etc/nsswitch.conf", b"hosts: files dns\n")
    # The pod infra container: holds the pod's namespaces and exits on TERM/INT, as pause does.
    layer.add_bytes("pause", b"#!/bin/sh\ntrap 'exit 0' TERM INT\nwhile :; do sleep 3600 & wait $!; done\n", 0o755)
    return layer


def python_layer() -> Layer:
    """Debian's python3.11 with the part of its standard library the stand-ins need."""
    if not PYTHON.exists():
        raise BuildError(f"{PYTHON} is missing: install python3 (scripts/setup.sh does)")
    layer = Layer("python")
    layer.add_file(str(PYTHON), PYTHON, 0o755)
    layer.add_symlink("usr/bin/python3", "python3.11")
    for lib in _ldd(PYTHON):
        _add_lib(layer, lib)
    layer.add_symlink("lib", "usr/lib")
    layer.add_symlink("lib64/ld-linux-x86-64.so.2", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    for root, dirs, files in os.walk(PYLIB):
        rel_root = os.path.relpath(root, PYLIB)
        dirs[:] = sorted(d for d in dirs if not STDLIB_SKIP.search(f"{rel_root}/{d}".lstrip("./")))
        for fn in sorted(files):
            rel = os.path.normpath(os.path.join(rel_root, fn))
            if STDLIB_SKIP.search(rel):
                continue
            src = Path(root) / fn
            if rel.startswith("lib-dynload/"):
                libs = _ldd(src)
                if fn.startswith(("_test", "xx")) or not all(lib.name in BASE_LIBS for lib in libs):
                    continue
                for lib in libs:
                    if lib.name in TLS_LIBS:
                        _add_lib(layer, lib)
            elif not fn.endswith(".py"):
                continue
            layer.add_file(f"usr/lib/python3.11/{rel}", src, 0o644)
    return layer


def etcd_layer() -> Layer:
    """Debian's real etcd 3.4 under /opt/etcd3/bin, linked from /usr/local/bin (where the
    units call it); the 2.1.1 image puts its wrappers over those links (etcd21_layer)."""
    for b in (ETCD, ETCDCTL):
        if not b.exists():
            raise BuildError(f"{b} is missing: install etcd-server and etcd-client (scripts/setup.sh does)")
    layer = Layer("etcd")
    for b in (ETCD, ETCDCTL):
        layer.add_file(f"opt/etcd3/bin/{b.name}", b, 0o755)
        layer.add_symlink(f"usr/local/bin/{b.name}", f"/opt/etcd3/bin/{b.name}")
    layer.add_dir("var/etcd/data", 0o700)
    for b in (ETCD, ETCDCTL):
        for lib in _ldd(b):
            if lib.name not in BASE_LIBS:
                _add_lib(layer, lib)
    return layer


LAUNCHER = ('#!/usr/bin/python3.11 -B\n"""{doc}"""\nimport sys\nsys.path.insert(0, "/opt/standins")\n'
            "from standins.{mod} import main\nmain()\n")


def etcd21_layer() -> Layer:
    """etcd 2.1.1's command lines over the real etcd 3.4: see standins/etcd21.py and etcdctl21.py."""
    layer = Layer("etcd21")
    for name, mod in (("etcd", "etcd21"), ("etcdctl", "etcdctl21")):
        doc = f"{name} 2.1.1 wrapper around the real etcd 3.4: see standins/{mod}.py"
        layer.add_bytes(f"usr/local/bin/{name}", LAUNCHER.format(doc=doc, mod=mod).encode(), 0o755)
    return layer


def _pyyaml_dir() -> Path | None:
    try:
        import yaml
    except ImportError:
        return None
    return Path(yaml.__file__).parent


def standins_layer() -> Layer:
    """The stand-in programs: /opt/bin/flanneld, /hyperkube, their package and PyYAML."""
    layer = Layer("standins")
    for src in sorted(STANDINS.glob("*.py")):
        layer.add_file(f"opt/standins/standins/{src.name}", src, 0o644)
    yaml_dir = _pyyaml_dir()
    if yaml_dir is not None:
        for src in sorted(yaml_dir.glob("*.py")):  # the pure-Python PyYAML: no libyaml needed
            layer.add_file(f"opt/standins/yaml/{src.name}", src, 0o644)
    launcher = LAUNCHER
    layer.add_bytes("opt/bin/flanneld", launcher.format(doc="flanneld stand-in: see standins/flanneld.py",
                                                        mod="flanneld").encode(), 0o755)
    layer.add_bytes("hyperkube", launcher.format(doc="hyperkube stand-in: see standins/hyperkube.py",
                                                 mod="hyperkube").encode(), 0o755)
    return layer


def sources_fingerprint() -> str:
    """Changes whenever anything that goes into an image changes."""
    h = hashlib.sha256()
    for p in sorted(HERE.glob("*.py")) + sorted(STANDINS.glob("*.py")):
        h.update(p.name.encode() + p.read_bytes())
    yaml_dir = _pyyaml_dir()
    inputs = [PYTHON, ETCD, ETCDCTL, BUSYBOX] + ([yaml_dir] if yaml_dir else []) + [PYLIB]
    for p in inputs:
        try:
            st = p.stat()
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"{p}:missing".encode())
    return h.hexdigest()[:16]


@dataclass
class Blob:
    digest: str
    size: int
    media_type: str
    path: Path


def store_blob(cache: Path, data: bytes, media_type: str) -> Blob:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = cache / "blobs" / digest.replace(":", "-")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.rename(path)
    return Blob(digest, len(data), media_type, path)


LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def layer_blob(cache: Path, layer: Layer) -> tuple[Blob, str]:
    """(compressed blob, diff_id) of a layer."""
    raw = layer.tar()
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    gz = gzip.compress(raw, compresslevel=6, mtime=0)
    return store_blob(cache, gz, LAYER_TYPE), diff_id


def image_blobs(cache: Path, layers: list[tuple[Blob, str]], cmd: list[str] | None,
                env: list[str], labels: dict[str, str]) -> tuple[Blob, bytes]:
    """The config blob and the schema2 manifest of an image made of layers."""
    config = {
        "architecture": "amd64", "os": "linux", "created": "2016-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + env,
                   "Cmd": cmd, "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
        "history": [{"created": "2016-01-01T00:00:00Z", "created_by": "piprov_lab.images"} for _ in layers],
    }
    cblob = store_blob(cache, json.dumps(config, sort_keys=True).encode(), CONFIG_TYPE)
    manifest = {
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "size": cblob.size, "digest": cblob.digest},
        "layers": [{"mediaType": LAYER_TYPE, "size": b.size, "digest": b.digest} for b, _ in layers],
    }
    return cblob, json.dumps(manifest, indent=2, sort_keys=True).encode()
