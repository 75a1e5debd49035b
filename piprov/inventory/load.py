"""Load and validate the inventory file.

The file is read by :mod:`piprov.yamlsrc`, the line-tracking YAML reader the
playbooks use too, validated by :mod:`piprov.inventory.validate` (every
problem at once, each with file:line:column), then built into the frozen
model. Nothing here writes anything.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from piprov import yamlsrc
from piprov.errors import InventoryError, InventoryNotFoundError, Location
from piprov.inventory.model import BackupSchedule, ImageSettings, ImageSpec, Inventory, NetworkSettings, Node, SshSettings
from piprov.inventory.validate import check_images, validate_document

__all__ = ["check_images", "load", "load_text", "parse_yaml", "read_text", "validate_document"]


def parse_yaml(text: str, file: str) -> Any:
    """Round-trip parse; any syntax problem becomes an InventoryError with line/column."""
    return yamlsrc.parse(text, file, InventoryError, lead="YAML syntax error")


def read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InventoryNotFoundError(
            f"inventory file {path} does not exist",
            hint="create one from inventory.example.yaml, or `piprov lab inventory > inventory.yaml`; "
            "-i/--inventory or $PIPROV_INVENTORY choose another file",
        ) from None
    except IsADirectoryError:
        raise InventoryError(f"{path} is a directory, not an inventory file") from None
    except OSError as e:
        raise InventoryError(f"cannot read inventory {path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InventoryError(
            "the file is not valid UTF-8 text",
            location=Location(str(path), line),
        ) from None


def load(path: Path) -> Inventory:
    """Read, validate and return the inventory at ``path``.

    Its ``images.<name>`` settings are kept as given: which names exist is the
    playbooks' business (:func:`check_images` where both are loaded).
    Raises InventoryError (file missing, YAML syntax) or ProblemList of
    InventoryErrors (every validation problem, each with file:line:column).
    """
    return load_text(read_text(path), path)


def load_text(text: str, path: Path) -> Inventory:
    """Validate ``text`` as if it were the content of ``path`` (used before writing an edit)."""
    file = str(path)
    doc = parse_yaml(text, file)
    validate_document(doc, file)
    return _build(doc, path)


# Building the model: only after validation passed, so the types are known good.


def _resolve_path(value: str, base: Path) -> Path:
    # os.path, not Path.expanduser: "~nosuchuser/key" must not raise (it stays
    # a plain relative name, as a shell would leave it).
    p = Path(os.path.expanduser(value))
    if not p.is_absolute():
        p = base / p
    return p


def _ssh(m: Mapping[str, Any], base_settings: SshSettings, base_dir: Path) -> SshSettings:
    changes: dict[str, Any] = {}
    for key in ("user", "port", "host_key_policy", "proxy_jump"):
        if key in m:
            changes[key] = m[key]
    if "connect_timeout" in m:
        changes["connect_timeout"] = float(m["connect_timeout"])
    if "identity_file" in m:
        changes["identity_file"] = str(_resolve_path(m["identity_file"], base_dir))
    explicit = base_settings.explicit | {k for k in changes if k != "host_key_policy"}
    return dataclasses.replace(base_settings, **changes, explicit=explicit)


_IMAGE_SETTINGS = ("registry", "insecure_registries", "arch_overrides")


def _specs(m: Mapping[str, Any], file: str, skip: tuple[str, ...] = ()) -> dict[str, ImageSpec]:
    """Image name -> spec for the image keys of ``m``, each with its key's location."""
    return {
        str(name): ImageSpec(
            repository=str(s["repository"]),
            tag=str(s["tag"]),
            location=yamlsrc.location(file, yamlsrc.key_pos(m, name, (0, 0))),
        )
        for name, s in m.items()
        if name not in skip
    }


def _backup(doc: Mapping[str, Any], file: str) -> BackupSchedule | None:
    b = doc.get("backup")
    if b is None:
        return None
    return BackupSchedule(str(b["every"]), int(b["keep"]), yamlsrc.location(file, yamlsrc.key_pos(doc, "backup", (0, 0))))


def _build(doc: Mapping[str, Any], path: Path) -> Inventory:
    base_dir = path.expanduser().absolute().parent
    ssh_doc = doc.get("ssh") or {}
    ssh = _ssh(ssh_doc, SshSettings(), base_dir)
    known_hosts = _resolve_path(ssh_doc.get("known_hosts", "known_hosts"), base_dir)

    img_doc = doc.get("images") or {}
    defaults = ImageSettings()
    images = ImageSettings(
        registry=str(img_doc.get("registry", defaults.registry)),
        insecure_registries=tuple(str(r) for r in img_doc.get("insecure_registries") or ()),
        specs=_specs(img_doc, str(path), _IMAGE_SETTINGS),
        arch_overrides={
            str(arch): _specs(comps, str(path)) for arch, comps in (img_doc.get("arch_overrides") or {}).items()
        },
    )

    net_doc = doc.get("network") or {}
    nd = NetworkSettings()
    network = NetworkSettings(
        flannel_network=str(net_doc.get("flannel_network", nd.flannel_network)),
        flannel_subnet_len=int(net_doc.get("flannel_subnet_len", nd.flannel_subnet_len)),
        flannel_backend=str(net_doc.get("flannel_backend", nd.flannel_backend)),
        mtu=net_doc.get("mtu", nd.mtu),
        etcd_port=int(net_doc.get("etcd_port", nd.etcd_port)),
        apiserver_port=int(net_doc.get("apiserver_port", nd.apiserver_port)),
        apiserver_secure_port=int(net_doc.get("apiserver_secure_port", nd.apiserver_secure_port)),
    )

    nodes_doc = doc["nodes"]
    nodes: list[Node] = []
    for i, item in enumerate(nodes_doc):
        line, col = yamlsrc.value_pos(nodes_doc, i, (0, 0))
        nodes.append(
            Node(
                name=str(item["name"]),
                address=str(item["address"]),
                role=item["role"],
                ssh=_ssh(item.get("ssh") or {}, ssh, base_dir),
                arch=str(item["arch"]) if item.get("arch") is not None else None,
                labels={str(k): str(v) for k, v in (item.get("labels") or {}).items()},
                location=Location(str(path), line + 1, col + 1),
                mac=str(item["mac"]) if item.get("mac") is not None else None,
            )
        )
    return Inventory(
        backup=_backup(doc, str(path)),
        path=path,
        cluster_name=str(doc["cluster"]["name"]),
        ssh=ssh,
        images=images,
        network=network,
        nodes=tuple(nodes),
        known_hosts=known_hosts,
        pki_dir=_resolve_path(str(doc["cluster"]["pki_dir"]), base_dir) if doc["cluster"].get("pki_dir") else None,
    )
