"""Where piprov's data lives: the playbooks/ and templates/ directories.

They sit at the top of the repository, next to the package, so that people
read and edit them as data rather than as code. ``PIPROV_DATA_DIR`` points
piprov at another copy (a site's own playbooks, or a test's).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from piprov.errors import PiprovError

DATA_DIR_ENV = "PIPROV_DATA_DIR"


def data_dir() -> Path:
    """The directory holding ``playbooks/`` and ``templates/``."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "playbooks").is_dir():
        return checkout
    # A wheel install puts them under <prefix>/share/piprov (pyproject data-files).
    installed = Path(sys.prefix) / "share" / "piprov"
    return installed if (installed / "playbooks").is_dir() else checkout


def _subdir(name: str) -> Path:
    path = data_dir() / name
    if not path.is_dir():
        raise PiprovError(
            f"piprov's {name}/ directory is missing: {path}",
            hint=f"run piprov from its source checkout, or set {DATA_DIR_ENV} to a directory "
            "that contains playbooks/ and templates/",
        )
    return path


def playbooks_dir() -> Path:
    return _subdir("playbooks")


def templates_dir() -> Path:
    return _subdir("templates")
