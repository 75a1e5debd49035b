"""The lab's inventory per profile (`piprov lab up --profile`): pure, no root."""

from __future__ import annotations

from pathlib import Path

import pytest

from piprov.inventory.load import load_text
from piprov_lab import inventory
from piprov_lab.errors import LabError
from piprov_lab.state import LabState, NodeState


def _state(profile: str) -> LabState:
    nodes = [NodeState(name=f"pi{i}", index=i, ip=f"10.231.1.{10 + i}", mac="b8:27:eb:00:00:0%d" % i,
                       netns=f"n{i}", veth=f"v{i}", dir="/x") for i in (1, 2, 3)]
    return LabState(name="t", dir="/x", bridge_ip="10.231.1.1", profile=profile, nodes=nodes)


@pytest.mark.parametrize("profile, tags", [
    ("seed", {"etcd": "2.1.1", "flannel": "0.5.5", "hyperkube": "v1.1.2", "pause": "2.0"}),
    ("last-hyperkube", {"etcd": "3.4.23", "flannel": "v0.12.0", "hyperkube": "v1.18.20", "pause": "3.2"}),
])
def test_inventory_names_the_profile_tags_under_the_registry_repositories(profile: str, tags: dict[str, str]) -> None:
    images = inventory.lab_images(profile)
    assert {c: t for c, (_, t) in images.items()} == tags
    assert {c: r for c, (r, _) in images.items()} == {c: f"google_containers/{c}" for c in tags}
    text = inventory.inventory_yaml("t", _state(profile), Path("/k"), Path("/kh"))
    assert f"profile {profile!r}" in text
    for comp, tag in tags.items():
        assert f'{comp + ":":<10} {{repository: google_containers/{comp}, tag: "{tag}"}}' in text
    inv = load_text(text, Path("lab.yaml"))  # the product reads it
    assert len(inv.nodes) == 3


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(LabError, match="unknown lab profile 'newest'"):
        inventory.check_profile("newest")
    assert inventory.profiles() == ["seed", "last-hyperkube"]
