"""The seed stack's component images for the virtual Pi lab.

``ensure_images(registry, cache_dir)`` builds (cached by a fingerprint of their
sources) and pushes to the lab registry, without any docker daemon:

==============================================================  =======================================
``{registry}/google_containers/etcd-amd64:3.4``                 Debian's real etcd 3.4 + etcdctl at /usr/local/bin
``{registry}/google_containers/flannel-amd64:v0.5.5``           flanneld stand-in at /opt/bin/flanneld
``{registry}/google_containers/hyperkube-amd64:v1.1.2``         hyperkube stand-in at /hyperkube
``{registry}/google_containers/hyperkube-amd64:v1.1.3``         the same layers, reporting v1.1.3 (upgrade tests)
``{registry}/google_containers/pause-amd64:2.0``                /pause (pod infra container)
``{registry}/google_containers/busybox-amd64:1.35``             busybox-static + applet links (workload: httpd)
==============================================================  =======================================

Layers are shared between images (same digests), so a node pulls each once:
busybox (every image) < python runtime (etcd, flannel, hyperkube) < etcd or stand-ins.
The stand-ins live in ``standins/`` and are test infrastructure: the product
package ``piprov`` never imports this package.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .build import (BuildError, busybox_layer, etcd_layer, image_blobs, layer_blob, python_layer,
                    sources_fingerprint, standins_layer)
from .registry import Registry, RegistryError

__all__ = ["ensure_images", "build_images", "image_refs", "BuildError", "RegistryError", "BuiltImage", "IMAGES"]

log = logging.getLogger(__name__)

# logical name -> (repository under the registry, tag)
IMAGES: dict[str, tuple[str, str]] = {
    "etcd": ("google_containers/etcd-amd64", "3.4"),
    "flannel": ("google_containers/flannel-amd64", "v0.5.5"),
    "hyperkube": ("google_containers/hyperkube-amd64", "v1.1.2"),
    "hyperkube-next": ("google_containers/hyperkube-amd64", "v1.1.3"),
    "pause": ("google_containers/pause-amd64", "2.0"),
    "busybox": ("google_containers/busybox-amd64", "1.35"),
}


def image_refs(registry: str) -> dict[str, str]:
    """Full references of the lab images, by logical name (see IMAGES)."""
    return {name: f"{registry}/{repo}:{tag}" for name, (repo, tag) in IMAGES.items()}


@dataclass(frozen=True)
class BuiltImage:
    name: str
    repo: str
    tag: str
    manifest: bytes
    blobs: tuple[tuple[str, str], ...]  # (digest, path in the cache)


def build_images(cache_dir: Path) -> list[BuiltImage]:
    """Build every image into cache_dir (blobs + an index), or load the cached build."""
    cache_dir = Path(cache_dir)
    index = cache_dir / f"images-{sources_fingerprint()}.json"
    if index.exists():
        data = json.loads(index.read_text())
        built = [BuiltImage(d["name"], d["repo"], d["tag"], d["manifest"].encode(),
                            tuple((b[0], b[1]) for b in d["blobs"])) for d in data]
        if all(Path(p).exists() for img in built for _, p in img.blobs):
            index.touch()  # in use: keeps it from being pruned by builds of other sources
            return built
    start = time.monotonic()
    cache_dir.mkdir(parents=True, exist_ok=True)
    bb = layer_blob(cache_dir, busybox_layer())
    py = layer_blob(cache_dir, python_layer())
    etcd = layer_blob(cache_dir, etcd_layer())
    si = layer_blob(cache_dir, standins_layer())
    env_py = ["PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"]
    label = {"io.piprov.lab": "stand-in images built by piprov_lab.images"}
    specs = {
        "etcd": ([bb, py, etcd], ["/usr/local/bin/etcd"], []),
        # The stand-in follows the start-up behaviour of the flannel version of its tag.
        "flannel": ([bb, py, si], ["/opt/bin/flanneld"], env_py + [f"FLANNEL_VERSION={IMAGES['flannel'][1]}"]),
        "hyperkube": ([bb, py, si], ["/hyperkube"], env_py + ["KUBE_VERSION=v1.1.2"]),
        "hyperkube-next": ([bb, py, si], ["/hyperkube"], env_py + ["KUBE_VERSION=v1.1.3"]),
        "pause": ([bb], ["/pause"], []),
        "busybox": ([bb], ["/bin/sh"], []),
    }
    built = []
    for name, (layers, cmd, env) in specs.items():
        cblob, manifest = image_blobs(cache_dir, layers, cmd, env, label)
        repo, tag = IMAGES[name]
        blobs = tuple((b.digest, str(b.path)) for b, _ in layers) + ((cblob.digest, str(cblob.path)),)
        built.append(BuiltImage(name, repo, tag, manifest, blobs))
    tmp = index.with_name(f"{index.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps([{"name": b.name, "repo": b.repo, "tag": b.tag, "manifest": b.manifest.decode(),
                                "blobs": [list(x) for x in b.blobs]} for b in built], indent=1))
    tmp.rename(index)
    log.info("built lab images in %.1fs (%s)", time.monotonic() - start, index.name)
    _prune(cache_dir, keep=index, built=built)
    return built


def _prune(cache_dir: Path, keep: Path, built: list[BuiltImage], min_age: float = 24 * 3600) -> None:
    """Drop builds of older sources (and their blobs) unused for a day.

    Other checkouts (CI's clone, a developer's tree) may share this cache with
    other sources: a day's grace keeps their builds while they are in use.
    """
    now = time.time()
    live = {p for img in built for _, p in img.blobs}
    for index in cache_dir.glob("images-*.json"):
        if index == keep:
            continue
        if now - index.stat().st_mtime < min_age:
            for d in json.loads(index.read_text()):
                live.update(b[1] for b in d["blobs"])
            continue
        index.unlink(missing_ok=True)
    for blob in (cache_dir / "blobs").glob("sha256-*"):
        if str(blob) not in live and now - blob.stat().st_mtime > min_age:
            blob.unlink(missing_ok=True)


def ensure_images(registry: str, cache_dir: Path) -> None:
    """Make sure the registry at ``registry`` ("host:port", plain HTTP) serves every lab image.

    Builds what is missing or outdated (seconds when cached) and pushes only the
    blobs and manifests the registry lacks. Raises BuildError or RegistryError.
    """
    import hashlib

    built = build_images(Path(cache_dir))
    reg = Registry(registry)
    try:
        reg.ping()
        for img in built:
            want = "sha256:" + hashlib.sha256(img.manifest).hexdigest()
            if reg.manifest_digest(img.repo, img.tag) == want:
                continue
            for digest, path in img.blobs:
                reg.push_blob(img.repo, digest, Path(path))
            reg.push_manifest(img.repo, img.tag, img.manifest)
            log.info("pushed %s/%s:%s", registry, img.repo, img.tag)
    finally:
        reg.close()
