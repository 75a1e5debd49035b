"""Small helpers shared by the lab tests (tests/lab is on sys.path via its conftest)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

# The product's command, run the way a user runs it (a new process each time).
PIPROV = [sys.executable, "-m", "piprov"]

# The lab's workload manifests (busybox httpd RC, its PodDisruptionBudget).
TESTDATA = Path(__file__).resolve().parents[2] / "piprov_lab" / "images" / "testdata"


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the last answer."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
