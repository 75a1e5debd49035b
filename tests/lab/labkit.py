"""Small helpers shared by the lab tests (tests/lab is on sys.path via its conftest)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

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


class LabCluster:
    """A cluster that piprov built on a lab: run piprov and Debian's kubectl against it.

    kubectl caches API discovery per host:port, and labs reuse addresses, so
    each cluster gets its own cache directory.
    """

    def __init__(self, lab: Any, inventory: Path, cache: Path | None = None) -> None:
        self.lab = lab
        self.inventory = inventory
        self.cache = cache or inventory.with_name("kubectl-cache")
        self.master_ip: str = lab.nodes[0].ip
        self.api = f"http://{self.master_ip}:8080"

    def piprov(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*PIPROV, *args, "-i", str(self.inventory)], capture_output=True, text=True,
                              timeout=timeout)

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.lab.kubectl_argv(self.api, self.cache, *args),
                              capture_output=True, text=True, input=input, timeout=60)
