"""`piprov kubeconfig` merges this cluster into the user's kubeconfig, as kind does."""

from __future__ import annotations

import base64
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from piprov.cli.app import run
from piprov.kube import kubeconfig
from piprov.kube.kubeconfig import KubeconfigError

DATA = Path(__file__).parent / "data" / "kubeconfig"
EXAMPLE = Path(__file__).parents[2] / "inventory.example.yaml"
SERVER = "https://192.0.2.100:6443"
CREDS = {"ca": b"-----BEGIN CERTIFICATE-----\nca\n", "cert": b"-----BEGIN CERTIFICATE-----\nadmin\n",
         "key": b"-----BEGIN EC PRIVATE KEY-----\nk\n"}


def entry(name: str, server: str) -> dict[str, Any]:
    return kubeconfig.entry(name, server, **CREDS)


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The example inventory, copied: its cluster PKI is made next to it, never in the repository."""
    inv = tmp_path / "inventory.yaml"
    shutil.copy(EXAMPLE, inv)
    return inv


def names(doc: dict[str, Any], section: str) -> list[str]:
    return [e["name"] for e in doc[section]]


def test_merge_keeps_the_other_cluster_and_replaces_ours_in_place() -> None:
    existing = yaml.safe_load((DATA / "other-cluster.yaml").read_text())
    merged = kubeconfig.merge(existing, entry("pi-cluster", SERVER), use=False)
    for section in ("clusters", "users", "contexts"):
        assert names(merged, section) == names(existing, section)
    assert merged["clusters"][0] == existing["clusters"][0]
    assert merged["users"][0]["user"]["token"] == "s3cr3t-token-of-another-cluster"
    assert merged["contexts"][0]["context"]["namespace"] == "payments"
    assert merged["clusters"][1]["cluster"]["server"] == SERVER
    assert merged["current-context"] == "work-prod"
    assert merged["preferences"] == {"colors": True} and merged["extensions"] == existing["extensions"]
    used = kubeconfig.merge(existing, entry("pi-cluster", SERVER), use=True)
    assert used["current-context"] == "piprov-pi-cluster"
    assert existing["clusters"][1]["cluster"]["server"] == "http://192.0.2.1:8080"  # input untouched


def test_merge_into_nothing_appends_and_sets_no_context_without_use() -> None:
    merged = kubeconfig.merge(None, entry("lab", SERVER), use=False)
    assert names(merged, "clusters") == ["piprov-lab"] and "current-context" not in merged
    other = kubeconfig.merge({"clusters": [{"name": "x", "cluster": {}}]}, entry("lab", SERVER), use=False)
    assert names(other, "clusters") == ["x", "piprov-lab"]


@pytest.mark.parametrize("name, fragment", [("broken.yaml", ":4: not valid YAML"), ("not-a-config.yaml", "not a kubeconfig"),
                                            ("bad-section.yaml", "clusters must be a list")])
def test_files_that_cannot_be_merged_are_left_alone(tmp_path: Path, name: str, fragment: str) -> None:
    target = tmp_path / "config"
    shutil.copy(DATA / name, target)
    before = target.read_bytes()
    with pytest.raises(KubeconfigError) as ei:
        kubeconfig.write_merged(target, entry("lab", SERVER), use=True)
    assert fragment in ei.value.message and str(target) in ei.value.message
    assert target.read_bytes() == before


def test_default_path_follows_kubectl(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert kubeconfig.default_path({"HOME": str(tmp_path)}) == tmp_path / ".kube" / "config"
    assert kubeconfig.default_path({"KUBECONFIG": str(a)}) == a
    assert kubeconfig.default_path({"KUBECONFIG": f"{a}:{b}"}) == b  # none exists: the last
    a.write_text("")
    assert kubeconfig.default_path({"KUBECONFIG": f":{a}:{b}"}) == a


def test_cli_merges_into_kubeconfig_with_mode_0600(tmp_path: Path, example: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "kube" / "config"
    target.parent.mkdir()
    shutil.copy(DATA / "other-cluster.yaml", target)
    target.chmod(0o644)
    monkeypatch.setenv("KUBECONFIG", str(target))
    assert run(["kubeconfig", "-i", str(example)]) == 0
    doc = yaml.safe_load(target.read_text())
    assert names(doc, "users") == ["admin", "piprov-pi-cluster"] and doc["current-context"] == "work-prod"
    assert doc["clusters"][1]["cluster"]["server"] == SERVER
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["config"]  # no temp file left
    assert run(["kubeconfig", "-i", str(example), "--use"]) == 0
    assert yaml.safe_load(target.read_text())["current-context"] == "piprov-pi-cluster"


def test_cli_output_file_and_print(tmp_path: Path, example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "kc.yaml"
    assert run(["kubeconfig", "-i", str(example), "-o", str(out), "--use"]) == 0
    assert yaml.safe_load(out.read_text())["current-context"] == "piprov-pi-cluster"
    capsys.readouterr()
    assert run(["kubeconfig", "-i", str(example), "--print"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert [(c["name"], c["cluster"]["server"]) for c in doc["clusters"]] == [("piprov-pi-cluster", SERVER)]
    ca = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
    user = doc["users"][0]["user"]
    assert ca.startswith(b"-----BEGIN CERTIFICATE-----")
    assert base64.b64decode(user["client-key-data"]).startswith(b"-----BEGIN")
    assert b"BEGIN" in base64.b64decode(user["client-certificate-data"])
    assert run(["kubeconfig", "-i", str(example), "--print", "-o", str(out)]) == 1
