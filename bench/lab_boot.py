#!/usr/bin/env python3
"""Benchmark the virtual Pi lab: image build, boot to SSH, memory per node.

Prints (as root, on this machine):
  1. node image build time (debootstrap + customisation) into a scratch cache,
     with the .deb download cache warm (what a recipe change costs);
  2. `piprov lab up --nodes 4` with a warm image cache, until every node's sshd
     answers with its banner (that is when `lab up` returns), a few runs;
  3. memory per idle node, as booted and with both docker daemons idle:
     RSS (counts shared pages in every node) and PSS (shares them out).

    .venv/bin/python bench/lab_boot.py [--runs 3] [--nodes 4] [--skip-build]

Goal from issue 3: warm `lab up --nodes 4` <= 15 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from piprov_lab import image  # noqa: E402
from piprov_lab.lab import Lab  # noqa: E402
from piprov_lab.system import children  # noqa: E402

PIPROV = str(Path(sys.executable).with_name("piprov"))


def bench_build() -> float:
    real_root = image.CACHE_ROOT
    with tempfile.TemporaryDirectory(prefix="piprov-lab-bench-", dir="/var/tmp") as tmp:
        scratch = Path(tmp)
        (real_root / "debs").mkdir(parents=True, exist_ok=True)
        os.symlink(real_root / "debs", scratch / "debs")  # measure the build, not the download
        image.CACHE_ROOT = scratch
        try:
            t0 = time.monotonic()
            base = image.ensure_base()
            took = time.monotonic() - t0
            size = subprocess.run(["du", "-sm", str(base.root)], capture_output=True, text=True).stdout.split()[0]
        finally:
            image.CACHE_ROOT = real_root
    print(f"node image build (debootstrap + customise, debs cached): {took:.1f} s, {size} MB")
    return took


def bench_up(name: str, nodes: int, runs: int) -> list[float]:
    times = []
    Lab(name).down()
    image.ensure_base()  # warm cache: a build is not part of this figure
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([PIPROV, "lab", "up", "--name", name, "--nodes", str(nodes)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        times.append(time.monotonic() - t0)
        Lab(name).down()
    print(
        f"warm `lab up --nodes {nodes}` until every sshd answers: "
        f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s "
        f"({runs} runs; goal <= 15 s)"
    )
    return times


def _node_pids(nspawn_pid: int) -> list[int]:
    kids = children(nspawn_pid)
    if not kids:
        return [nspawn_pid]
    ns = os.readlink(f"/proc/{kids[0]}/ns/pid")
    pids = [nspawn_pid]
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.readlink(p / "ns/pid") == ns:
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def _mem_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def _node_mem(lab: Lab) -> list[tuple[int, int]]:
    from piprov_lab import state

    s = state.load(lab.name)
    assert s is not None
    out = []
    for n in s.nodes:
        assert n.nspawn is not None
        rss = pss = 0
        for pid in _node_pids(n.nspawn.pid):
            r, p = _mem_kb(pid)
            rss, pss = rss + r, pss + p
        out.append((rss, pss))
    return out


def _report(label: str, mem: list[tuple[int, int]]) -> None:
    rss = statistics.mean(m[0] for m in mem) / 1024
    pss = statistics.mean(m[1] for m in mem) / 1024
    print(f"memory per idle node, {label}: RSS {rss:.0f} MB, PSS {pss:.0f} MB (mean of {len(mem)} nodes)")


DOCKERDS = """
dockerd -H unix:///var/run/docker-bootstrap.sock -p /var/run/docker-bootstrap.pid \
  --data-root=/var/lib/docker-bootstrap --exec-root=/var/run/docker-bootstrap \
  --iptables=false --ip-masq=false --bridge=none >/dev/null 2>&1 &
dockerd >/dev/null 2>&1 &
for i in $(seq 100); do
  docker -H unix:///var/run/docker-bootstrap.sock info >/dev/null 2>&1 && docker info >/dev/null 2>&1 && exit 0
  sleep 0.1
done
exit 1
"""


def bench_memory(name: str, nodes: int, settle: float) -> None:
    lab = Lab(name)
    lab.down()
    lab.up(nodes=nodes)
    try:
        lab.wait_booted()
        time.sleep(settle)
        _report("as booted (systemd, sshd, avahi, dbus, journald)", _node_mem(lab))
        for n in lab.nodes:
            lab.exec(n.name, DOCKERDS, timeout=60)
        time.sleep(settle)
        _report("with bootstrap + main dockerd idle", _node_mem(lab))
    finally:
        lab.down()


def bench_rtt(name: str, rtts: tuple[float, ...] = (0, 20, 50)) -> None:
    """SSH command round trips through the latency relay (one connection, 10 commands each)."""
    import paramiko

    lab = Lab(name)
    lab.down()
    lab.up(nodes=1)
    try:
        ip = lab.nodes[0].ip
        parts = []
        for rtt in rtts:
            lab.netem(rtt_ms=rtt)
            c = paramiko.SSHClient()
            c.load_host_keys(str(lab.known_hosts))
            c.connect(ip, username="pirate", key_filename=str(lab.identity_file), look_for_keys=False,
                      allow_agent=False)  # fmt: skip
            # paramiko leaves Nagle on: each exec then waits ~40 ms for a delayed
            # ACK (44 ms vs 2.5 ms at rtt 0, measured). Measure the relay, not that.
            transport = c.get_transport()
            assert transport is not None
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
            times = []
            for _ in range(10):
                t0 = time.monotonic()
                _, out, _ = c.exec_command("true")
                out.channel.recv_exit_status()
                times.append(time.monotonic() - t0)
            c.close()
            parts.append(f"rtt {rtt:g} ms -> {statistics.median(times) * 1000:.0f} ms")
        print("SSH exec on an open connection, TCP_NODELAY (median of 10): " + ", ".join(parts))
    finally:
        lab.down()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--settle", type=float, default=5.0, help="idle seconds before measuring memory")
    p.add_argument("--skip-build", action="store_true", help="do not time a node image build")
    a = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/lab_boot.py needs root (it boots labs)")
    name = f"bench{os.getpid() % 100000}"
    print(f"machine: {os.cpu_count()} cores; lab {name}")
    if not a.skip_build:
        bench_build()
    bench_up(name, a.nodes, a.runs)
    bench_memory(name, a.nodes, a.settle)
    bench_rtt(name)
    shutil.rmtree(Path("/var/lib/piprov-lab") / name, ignore_errors=True)


if __name__ == "__main__":
    main()
