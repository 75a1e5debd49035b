"""Inventory: the YAML file describing the fleet, its model, loading and edits."""

from piprov.inventory.load import check_images, load, load_text

from piprov.inventory.model import (
    ARCH_MAP,
    ImageSettings,
    ImageSpec,
    Inventory,
    NetworkSettings,
    Node,
    SshSettings,
    image_arch,
)

__all__ = [
    "ARCH_MAP",
    "ImageSettings",
    "ImageSpec",
    "Inventory",
    "NetworkSettings",
    "Node",
    "SshSettings",
    "check_images",
    "image_arch",
    "load",
    "load_text",
]
