"""Latency and packet loss for lab nodes, without tc netem (absent from this kernel).

- Round-trip time: a userspace relay (:mod:`piprov_lab.relay`) in the node's
  namespace, with new connections to port 22 redirected to it. Only SSH gets
  the delay (that is what piprov speaks to nodes); connections already open
  when the setting changes keep their old path.
- Loss: iptables ``statistic`` match dropping that share of packets on the
  node's eth0, each direction: real, random packet loss on every protocol.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from piprov_lab.errors import LabError
from piprov_lab.state import NodeState
from piprov_lab.system import alive, kill, run, spawn

RELAY_PORT = 10022
RTT_CHAIN = "PIPROV-LAB-RTT"
LOSS_CHAIN = "PIPROV-LAB-LOSS"


def _ipt(netns: str, *args: str, check: bool = True) -> bool:
    return run(["ip", "netns", "exec", netns, "iptables", "-w", *args], check=check).returncode == 0


def _chain(netns: str, table: str, chain: str, hooks: list[list[str]]) -> None:
    """Create (or empty) ``chain`` and make sure each hook jumps to it once."""
    if not _ipt(netns, "-t", table, "-N", chain, check=False):
        _ipt(netns, "-t", table, "-F", chain)
    for hook in hooks:
        if not _ipt(netns, "-t", table, "-C", *hook, "-j", chain, check=False):
            _ipt(netns, "-t", table, "-I", *hook, "-j", chain)


def apply(n: NodeState, rtt_ms: float, loss_pct: float) -> None:
    _set_rtt(n, rtt_ms)
    _set_loss(n, loss_pct)


def _set_rtt(n: NodeState, rtt_ms: float) -> None:
    _chain(n.netns, "nat", RTT_CHAIN, [["PREROUTING", "-i", "eth0"]])
    kill(n.relay)
    n.relay, n.relay_port, n.rtt_ms = None, 0, 0.0
    if rtt_ms <= 0:
        return
    argv = ["ip", "netns", "exec", n.netns, sys.executable, "-m", "piprov_lab.relay",
            "--port", str(RELAY_PORT), "--delay-ms", f"{rtt_ms / 2:g}"]  # fmt: skip
    n.relay = spawn(argv, Path(n.dir) / "relay.log")
    # Redirect only once the relay listens, so no SSH attempt meets a closed port.
    for _ in range(100):
        if _listening(n.netns, RELAY_PORT) or not alive(n.relay):
            break
        time.sleep(0.05)
    if not alive(n.relay):
        raise LabError("the latency relay did not start (see relay.log)", host=n.name)
    _ipt(n.netns, "-t", "nat", "-A", RTT_CHAIN, "-p", "tcp", "-d", n.ip, "--dport", "22",
         "-j", "REDIRECT", "--to-ports", str(RELAY_PORT))  # fmt: skip
    n.relay_port, n.rtt_ms = RELAY_PORT, rtt_ms


def _listening(netns: str, port: int) -> bool:
    out = run(["ip", "netns", "exec", netns, "ss", "-Hltn", f"sport = :{port}"], check=False).stdout
    return bool(out.strip())


def _set_loss(n: NodeState, loss_pct: float) -> None:
    _chain(n.netns, "filter", LOSS_CHAIN, [["INPUT", "-i", "eth0"], ["OUTPUT", "-o", "eth0"]])
    n.loss_pct = 0.0
    if loss_pct <= 0:
        return
    ok = _ipt(n.netns, "-A", LOSS_CHAIN, "-m", "statistic", "--mode", "random",
              "--probability", f"{loss_pct / 100:.4f}", "-j", "DROP", check=False)  # fmt: skip
    if not ok:
        raise LabError(
            "cannot add packet loss: this kernel lacks the iptables statistic match (xt_statistic)",
            host=n.name,
            hint="use --rtt only, or a kernel with CONFIG_NETFILTER_XT_MATCH_STATISTIC",
        )
    n.loss_pct = loss_pct
