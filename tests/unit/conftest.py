"""Fixtures shared by the unit tests that drive the CLI in-process."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from piprov.cli import app
from piprov.pki import ClusterPki

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "inventory.example.yaml"


def _pki_dirs() -> set[Path]:
    return {p for p in ROOT.rglob("*.pki") if ".venv" not in p.parts and ".git" not in p.parts}


@pytest.fixture(scope="session", autouse=True)
def _no_pki_in_the_repository() -> Iterator[None]:
    """A cluster PKI lands next to its inventory: a test must never make one next to a file of the repository."""
    before = _pki_dirs()
    yield
    assert _pki_dirs() - before == set(), "a unit test made a cluster PKI inside the repository"


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPki:
    """One cluster PKI for the whole session, in a temp dir: keys are made once, leaves reused."""
    from piprov.graph import load_graph
    from piprov.pki.store import ensure_ca, utcnow

    d = tmp_path_factory.mktemp("pki") / "inventory.yaml.pki"
    ensure_ca(d, "test CA", utcnow(), None)
    return ClusterPki(d, load_graph())


@pytest.fixture
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long temp paths would otherwise be folded across lines by rich."""
    monkeypatch.setattr(app.err, "width", 1000)


@pytest.fixture
def inv(tmp_path: Path) -> Path:
    """A copy of inventory.example.yaml to edit."""
    p = tmp_path / "inventory.yaml"
    shutil.copy(EXAMPLE, p)
    return p


@pytest.fixture(autouse=True)
def _no_personal_ssh(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The developer's ~/.ssh (config, keys) and ssh-agent must not take part in unit tests."""
    from piprov.ssh import secrets

    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv(secrets.SSH_CONFIG_ENV, raising=False)
    monkeypatch.delenv(secrets.SUDO_PASSWORD_ENV, raising=False)
    monkeypatch.setattr(secrets, "_session", secrets.Session())
