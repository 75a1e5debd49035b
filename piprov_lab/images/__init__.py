"""The component images of both supported profiles for the virtual Pi lab.

``ensure_images(registry, cache_dir)`` builds (cached by a fingerprint of their
sources) and pushes to the lab registry, without any docker daemon, every
supported tag of every component (``{registry}/google_containers/<repo>-amd64:<tag>``):

=================================  ====================================================================
``etcd-amd64:2.1.1``               etcd 2.1.1 wrapper (standins/etcd21.py) around the real etcd 3.4
``etcd-amd64:3.4.23``, ``:3.4``    Debian's real etcd 3.4.23 + etcdctl at /usr/local/bin
``flannel-amd64:0.5.5``/``v0.5.5`` flanneld stand-in, FLANNEL_VERSION=v0.5.5
``flannel-amd64:v0.12.0``          the same layers, FLANNEL_VERSION=v0.12.0
``hyperkube-amd64:v1.1.2``         hyperkube stand-in, KUBE_VERSION=v1.1.2 (also v1.1.3, v1.18.19, v1.18.20)
``pause-amd64:2.0``, ``:3.2``      /pause (pod infra container)
``busybox-amd64:1.35``             busybox-static + applet links (workload: httpd)
=================================  ====================================================================

Layers are shared between images (same digests), so a node pulls each once:
busybox (every image) < python runtime (etcd, flannel, hyperkube) < etcd or stand-ins;
tags of one component differ only in their config (the version in Env).
``PROFILES`` says which image each component of a lab profile uses. The stand-ins
live in ``standins/`` and are test infrastructure: the product package ``piprov``
never imports this package.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .build import (Blob, BuildError, busybox_layer, etcd21_layer, etcd_layer, image_blobs, layer_blob, python_layer,
                    sources_fingerprint, standins_layer)
from .registry import Registry, RegistryError

__all__ = ["ensure_images", "build_images", "image_refs", "BuildError", "RegistryError", "BuiltImage", "IMAGES",
           "PROFILES", "DEFAULT_PROFILE", "profile_images"]

log = logging.getLogger(__name__)

_ETCD, _FLANNEL = "google_containers/etcd-amd64", "google_containers/flannel-amd64"
_KUBE, _PAUSE = "google_containers/hyperkube-amd64", "google_containers/pause-amd64"

# logical name -> (repository under the registry, tag). The unsuffixed names are the
# ones older tests use ("etcd" is the real etcd 3.4 they run with --enable-v2).
IMAGES: dict[str, tuple[str, str]] = {
    "etcd": (_ETCD, "3.4.23"),
    "etcd-3.4": (_ETCD, "3.4"),
    "etcd-2.1.1": (_ETCD, "2.1.1"),
    "flannel": (_FLANNEL, "v0.5.5"),
    "flannel-0.5.5": (_FLANNEL, "0.5.5"),
    "flannel-v0.12.0": (_FLANNEL, "v0.12.0"),
    "hyperkube": (_KUBE, "v1.1.2"),
    "hyperkube-next": (_KUBE, "v1.1.3"),
    "hyperkube-v1.18.20": (_KUBE, "v1.18.20"),
    "hyperkube-v1.18.19": (_KUBE, "v1.18.19"),  # a second 1.18 tag, for the rolling tests
    "pause": (_PAUSE, "2.0"),
    "pause-3.2": (_PAUSE, "3.2"),
    "busybox": ("google_containers/busybox-amd64", "1.35"),
}

# Lab profile -> component -> logical image name (the tags of docs PROFILES.md / issue #13):
# the seed's 2016 stack, and the last Kubernetes line that shipped a hyperkube image
# (1.18; dropped in 1.19, kubernetes/kubernetes#88676) with the etcd and flannel of its time.
PROFILES: dict[str, dict[str, str]] = {
    "seed": {"etcd": "etcd-2.1.1", "flannel": "flannel-0.5.5", "hyperkube": "hyperkube", "pause": "pause"},
    "last-hyperkube": {"etcd": "etcd", "flannel": "flannel-v0.12.0", "hyperkube": "hyperkube-v1.18.20",
                       "pause": "pause-3.2"},
}
DEFAULT_PROFILE = "seed"


def profile_images(profile: str) -> dict[str, tuple[str, str]]:
    """component -> (repository, tag) of a profile; KeyError names the profile when unknown."""
    if profile not in PROFILES:
        raise KeyError(f"unknown lab profile {profile!r}: one of {', '.join(PROFILES)}")
    return {comp: IMAGES[name] for comp, name in PROFILES[profile].items()}


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
    e21 = layer_blob(cache_dir, etcd21_layer())
    env_py = ["PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"]
    label = {"io.piprov.lab": "stand-in images built by piprov_lab.images"}
    specs: dict[str, tuple[list[tuple[Blob, str]], list[str], list[str]]] = {}
    for name, (_, tag) in IMAGES.items():
        if name.startswith("etcd"):
            # 2.1.1: the wrapper's launchers over the real etcd's links (standins/etcd21.py).
            specs[name] = (([bb, py, etcd, si, e21], ["/usr/local/bin/etcd"], env_py) if tag.startswith("2.")
                           else ([bb, py, etcd], ["/usr/local/bin/etcd"], []))
        elif name.startswith("flannel"):
            # The stand-in follows the flannel version of its tag ("0.5.5" is v0.5.5).
            specs[name] = ([bb, py, si], ["/opt/bin/flanneld"], env_py + [f"FLANNEL_VERSION=v{tag.lstrip('v')}"])
        elif name.startswith("hyperkube"):
            specs[name] = ([bb, py, si], ["/hyperkube"], env_py + [f"KUBE_VERSION={tag}"])
        elif name.startswith("pause"):
            specs[name] = ([bb], ["/pause"], [])
        else:
            specs[name] = ([bb], ["/bin/sh"], [])
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
