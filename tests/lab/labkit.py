"""Small helpers shared by the lab tests (tests/lab is on sys.path via its conftest)."""

from __future__ import annotations

import functools
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

# The product's command, run the way a user runs it (a new process each time).
PIPROV = [sys.executable, "-m", "piprov"]

# The lab's workload manifests (busybox httpd RC, its PodDisruptionBudget).
TESTDATA = Path(__file__).resolve().parents[2] / "piprov_lab" / "images" / "testdata"


def cluster_tls(inventory: Path) -> ssl.SSLContext:
    """What piprov itself presents to the cluster: its CA trusted, the admin's client certificate."""
    from piprov.inventory import load
    from piprov.kube.client import client_tls

    return client_tls(load(inventory))


def kubeconfig_of(inventory: Path, target: Path) -> Path:
    """`piprov kubeconfig -o target`: the cluster's secure port, CA and admin credentials, as a user gets them."""
    if not target.exists():
        p = subprocess.run([*PIPROV, "kubeconfig", "-i", str(inventory), "-o", str(target), "--use"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
    return target


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
        self.api = f"https://{self.master_ip}:6443"

    @functools.cached_property
    def tls(self) -> ssl.SSLContext:
        return cluster_tls(self.inventory)

    def urlopen(self, req: urllib.request.Request | str, timeout: float = 10) -> Any:
        """urlopen against the cluster's secure ports (apiserver, etcd) with piprov's client certificate."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=self.tls))
        return opener.open(req, timeout=timeout)

    def piprov(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*PIPROV, *args, "-i", str(self.inventory)], capture_output=True, text=True,
                              timeout=timeout)

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        kc = kubeconfig_of(self.inventory, self.inventory.with_name("kubeconfig"))
        return subprocess.run(self.lab.kubectl_argv(kc, self.cache, *args),
                              capture_output=True, text=True, input=input, timeout=60)


def create_workload(cluster: LabCluster, replicas: int, budget: int | None) -> None:
    """The lab's replicated workload: the busybox httpd RC of ``replicas``, and where ``budget`` is a
    number, a PodDisruptionBudget allowing that many unavailable (1.18: 1.1 has no policy group)."""
    rc = (TESTDATA / "rc.yaml").read_text().replace("{{REGISTRY}}", cluster.lab.registry)
    assert "replicas: 3" in rc
    p = cluster.kubectl("create", "-f", "-", input=rc.replace("replicas: 3", f"replicas: {replicas}"))
    assert p.returncode == 0, p.stderr
    if budget is not None:
        pdb = (TESTDATA / "pdb.yaml").read_text()
        assert "maxUnavailable: 0" in pdb  # the file forbids every eviction
        p = cluster.kubectl("create", "-f", "-", input=pdb.replace("maxUnavailable: 0", f"maxUnavailable: {budget}"))
        assert p.returncode == 0, p.stderr
