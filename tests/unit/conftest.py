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
