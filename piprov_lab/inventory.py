"""The inventory a lab writes (`piprov lab inventory`): its nodes, its registry, and the
image tags of the lab's profile (`piprov lab up --profile seed|last-hyperkube`)."""

from __future__ import annotations

import importlib
from pathlib import Path

from piprov_lab.errors import LabError
from piprov_lab.state import LabState

REGISTRY_PORT = 5000
DEFAULT_PROFILE = "seed"
# Used when piprov_lab.images (the stand-ins' package, test infrastructure) is not there.
_FALLBACK = {"seed": {"etcd": ("google_containers/etcd", "2.1.1"), "flannel": ("google_containers/flannel", "0.5.5"),
                      "hyperkube": ("google_containers/hyperkube", "v1.1.2"),
                      "pause": ("google_containers/pause", "2.0")}}  # fmt: skip


def profiles() -> list[str]:
    images = _images_module()
    return list(getattr(images, "PROFILES", _FALLBACK)) if images else list(_FALLBACK)


def _images_module() -> object | None:
    try:
        return importlib.import_module("piprov_lab.images")
    except ImportError:
        return None


def check_profile(profile: str) -> None:
    if profile not in profiles():
        raise LabError(f"unknown lab profile {profile!r}", hint=f"use one of: {', '.join(profiles())}")


def lab_images(profile: str = DEFAULT_PROFILE) -> dict[str, tuple[str, str]]:
    """component -> (repository without the -arch suffix, tag) as the lab registry serves them."""
    check_profile(profile)
    images = _images_module()
    served: dict[str, tuple[str, str]] = getattr(images, "profile_images")(profile) if images else {}
    specs = dict(_FALLBACK.get(profile, {}))
    for comp, (repo, tag) in served.items():
        specs[comp] = (repo.removesuffix("-amd64"), tag)  # google_containers/etcd: the -<arch> comes from the node
    return specs


def inventory_name(index: int) -> str:
    return "rpi-master" if index == 1 else f"rpi-node-{index - 1}"


def inventory_yaml(name: str, s: LabState, identity_file: Path, known_hosts: Path) -> str:
    """An inventory (format of inventory.example.yaml) pointing at this lab's nodes."""
    reg = f"{s.bridge_ip}:{REGISTRY_PORT}"
    lines = [
        f"# piprov inventory for the virtual Pi lab {name!r} (from `piprov lab inventory`),",
        f"# profile {s.profile!r} (`piprov lab up --profile`).",
        "# Host keys: the lab pinned each node's key in this known_hosts when it made the node,",
        "# so strict checking works; after `piprov lab replace` it still holds the old key",
        "# (a re-flashed card): `piprov node forget-key NODE`, then --trust-new-hosts.",
        "",
        "cluster:",
        f"  name: lab-{name}",
        # One CA per lab, whichever copy of this inventory a test runs with:
        # a second CA would re-issue every certificate (a change, restarts).
        f"  pki_dir: {known_hosts.parent.parent / 'pki'}",
        "",
        "ssh:",
        "  user: pirate",
        "  port: 22",
        f"  identity_file: {identity_file}",
        "  host_key_policy: strict",
        f"  known_hosts: {known_hosts}",
        "  connect_timeout: 10",
        "",
        "images:",
        f"  registry: {reg}",
        f'  insecure_registries: ["{reg}"]',
        *[f'  {c + ":":<10} {{repository: {r}, tag: "{t}"}}' for c, (r, t) in lab_images(s.profile).items()],
        "",
        "network:",
        "  flannel_network: 10.0.0.0/16",
        "  flannel_subnet_len: 24",
        "  flannel_backend: host-gw",
        "  etcd_port: 4001",
        "  apiserver_port: 8080",
        "  apiserver_secure_port: 6443",
        "",
        "nodes:",
    ]
    for n in s.nodes:
        role = "master" if n.index == 1 else "worker"
        lines += [f"  - name: {inventory_name(n.index)}", f"    address: {n.ip}", f"    role: {role}"]
        if n.user != "pirate":  # a raspios card: the user made in Imager
            lines += ["    ssh:", f"      user: {n.user}"]
    return "\n".join(lines) + "\n"
