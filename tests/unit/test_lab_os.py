"""The lab's OS matrix (`lab up --os`) without root: one recipe per Debian release, bookworm's
unchanged, releases given to nodes in turn, the node's release kept in the lab's state (the lab
test tests/lab/test_os_matrix_lab.py boots a mixed lab and runs piprov on it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from piprov.inventory import load
from piprov_lab import image
from piprov_lab.inventory import inventory_yaml
from piprov_lab.cli import lab
from piprov_lab.errors import LabError
from piprov_lab.lab import _assign_releases
from piprov_lab.state import LabState, NodeState


def test_bookworm_is_the_recipe_of_before_releases_so_its_cached_image_stays() -> None:
    # The recipe as it was before --os, key for key: the same hash, the same base-<hash> dir.
    before = {"suite": "bookworm", "mirror": image.MIRROR, "variant": "minbase", "packages": image.PACKAGES,
              "files": {k: [v[0], v[1]] for k, v in sorted(image.FILES.items())}, "customize": image.CUSTOMIZE}
    assert image.recipe() == image.recipe("bookworm") == before
    assert image.base_path() == image.base_path("bookworm")


def test_each_release_has_an_image_of_its_own() -> None:
    hashes = {r: image.recipe_hash(r) for r in image.RELEASES}
    assert set(hashes) == {"bullseye", "bookworm", "trixie"} and len(set(hashes.values())) == 3
    assert {r: image.recipe(r)["suite"] for r in image.RELEASES} == {r: r for r in image.RELEASES}
    trixie = image.recipe("trixie")["packages"]
    assert isinstance(trixie, list) and {"docker-cli", "kmod"} <= set(trixie)
    assert image.init_args("trixie") == ["SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1"]
    assert image.init_args("bookworm") == image.init_args("bullseye") == []


def test_releases_go_to_the_nodes_in_turn() -> None:
    assert _assign_releases([], 2) == ["bookworm", "bookworm"]
    assert _assign_releases(["bookworm", "bullseye", "trixie"], 4) == ["bookworm", "bullseye", "trixie", "bookworm"]
    with pytest.raises(LabError, match="unknown Debian release 'jessie'"):
        _assign_releases(["jessie"], 1)


def test_the_cli_refuses_a_release_it_has_no_image_for() -> None:
    for verb in (["up"], ["add-node"]):
        r = CliRunner().invoke(lab, [*verb, "--os", "bookworm,jessie"])
        assert r.exit_code == 2 and "'jessie' is no release" in r.output, r.output


def test_a_nodes_release_is_in_the_state_and_a_state_of_before_means_bookworm() -> None:
    s = LabState(name="t", dir="/x", base="/b", nodes=[NodeState("pi1", 1, "10.0.0.11", "m", "ns", "v", "/d",
                                                                  os="trixie", base="/t")])
    assert LabState.from_json(s.to_json()).nodes[0].os == "trixie"
    old = json.loads(s.to_json())
    for key in ("os", "base"):
        del old["nodes"][0][key]
    n = LabState.from_json(json.dumps(old)).nodes[0]
    assert (n.os, n.base) == ("bookworm", "")  # booted on the lab's base, as before


def test_the_cloud_init_flavour_boots_a_variant_image_and_the_plain_ones_stay_python_free() -> None:
    assert image.image_name("bullseye", "hypriot-cloud-init") == "bullseye+cloud-init"
    assert image.image_name("bullseye", "raspios") == image.image_name("bullseye", "") == "bullseye"
    plain, variant = image.recipe("bullseye"), image.recipe("bullseye+cloud-init")
    assert variant["suite"] == "bullseye" and variant["packages"] == [*plain["packages"], "cloud-init", "python3-cffi-backend"]  # type: ignore[misc]
    assert image.NO_PYTHON in str(plain["customize"]) and image.NO_PYTHON not in str(variant["customize"])
    assert "ln -s /boot/user-data /var/lib/cloud/seed/nocloud-net/user-data" in str(variant["customize"])
    assert image.base_path("bullseye") != image.base_path("bullseye+cloud-init")
    with pytest.raises(LabError, match="unknown image variant"):
        image.release("bullseye+puppet")


def test_a_raspios_node_has_its_imager_user_in_state_and_inventory(tmp_path: Path) -> None:

    nodes = [NodeState("pi1", 1, "10.231.0.11", "m", "ns", "v", "/d"),
             NodeState("pi2", 2, "10.231.0.12", "m", "ns", "v", "/d", flavour="raspios", user="ada")]
    s = LabState(name="t", dir="/x", base="/b", bridge_ip="10.231.0.1", nodes=nodes)
    assert [n.user for n in LabState.from_json(s.to_json()).nodes] == ["pirate", "ada"]
    inv = tmp_path / "inventory.yaml"
    inv.write_text(inventory_yaml("t", s, Path("/k/id"), Path("/k/known_hosts")))
    assert [(n.name, n.ssh.user) for n in load(inv).nodes] == [("rpi-master", "pirate"), ("rpi-node-1", "ada")]
