"""Fixtures shared by the unit tests that drive the CLI in-process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from piprov.cli import app

EXAMPLE = Path(__file__).parents[2] / "inventory.example.yaml"


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
