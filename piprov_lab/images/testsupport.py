"""Helpers for the stand-ins' unit tests: a throwaway real etcd on loopback, free ports.

Nothing here needs root. The etcd is Debian's (package etcd-server), v2 API on.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

IMAGES_DIR = Path(__file__).resolve().parent


def standins_on_path() -> None:
    """Make ``import standins`` work as it does inside the images."""
    if str(IMAGES_DIR) not in sys.path:
        sys.path.insert(0, str(IMAGES_DIR))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EtcdProcess:
    url: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def etcd_binary() -> str | None:
    return shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)


def start_etcd(data_dir: Path, timeout: float = 20.0) -> EtcdProcess:
    binary = etcd_binary()
    if binary is None:
        raise RuntimeError("etcd is not installed (scripts/setup.sh installs etcd-server)")
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    log = open(data_dir.parent / f"etcd-{client}.log", "wb")
    proc = subprocess.Popen(
        [binary, "--name=test", f"--data-dir={data_dir}", "--enable-v2=true",
         f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
         f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
         f"--initial-cluster=test=http://127.0.0.1:{peer}"],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/v2/keys/", timeout=1) as r:
                if r.status == 200:
                    return EtcdProcess(url, proc)
        except OSError:
            if proc.poll() is not None:
                break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"etcd did not start on {url}: see {log.name}")
