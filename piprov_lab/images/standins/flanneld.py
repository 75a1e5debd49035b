"""flanneld STAND-IN (installed as /opt/bin/flanneld in the lab's flannel image).

This is not flannel. Flannel publishes no binary this machine can obtain, so the
lab runs this program in its place. It follows the contract of flannel 0.5.x with
the ``host-gw`` backend, as the 2016 seed stack used it:

* flags: ``--etcd-endpoints`` (comma list, default http://127.0.0.1:4001,http://127.0.0.1:2379),
  ``--etcd-prefix`` (default /coreos.com/network), ``--iface`` (IP address or
  interface name; default the interface of the default route, else the first
  non-loopback one), ``--public-ip``, ``--ip-masq``, ``--subnet-file`` (default
  /run/flannel/subnet.env). Other flags are accepted and logged.
* etcd v2 keys API: reads ``<prefix>/config`` (JSON: ``Network``, ``SubnetLen``
  (default 24), ``SubnetMin``, ``SubnetMax``, ``Backend.Type``); leases a subnet by an
  atomic create (``prevExist=false``) of ``<prefix>/subnets/<net>-<len>`` holding
  ``{"PublicIP": ..., "BackendType": "host-gw"}`` with a TTL (24 h as flannel) that
  it renews (``refresh=true``) long before expiry. On restart it reuses the lease
  that carries its PublicIP (or the subnet in its old subnet file), so a node keeps
  its subnet.
* writes the subnet file atomically (temp file + rename): ``FLANNEL_NETWORK``,
  ``FLANNEL_SUBNET`` (the gateway address, e.g. 10.0.5.1/24), ``FLANNEL_MTU`` (the
  interface's MTU: host-gw adds no encapsulation), ``FLANNEL_IPMASQ``.
* host-gw: ``ip route replace <subnet> via <PublicIP>`` for every other node's
  lease, kept current by watching ``<prefix>/subnets`` (``wait=true&recursive=true``);
  routes of expired or deleted leases are removed.
* exits non-zero with one clear log line when etcd stays unreachable past a bounded
  retry (``--etcd-timeout``, a stand-in extension, default 30s) or when the config
  key is missing (real flannel would wait for it forever).

Not covered: the udp and vxlan backends (any Backend.Type is routed as host-gw,
with a log line), the masquerade rules of ``--ip-masq`` (the flag is recorded in
FLANNEL_IPMASQ only: the lab has no outside network to masquerade to), etcd TLS,
``--subnet-dir``/multi-network mode, the remote (client/server) mode.

Stand-in extensions (not flannel flags): ``--lease-ttl`` (default 24h) and
``--etcd-timeout``, so tests can exercise expiry and failure quickly.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import logging
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .common import Flag, parse_flags, setup_logging
from .etcd2 import EVENT_INDEX_CLEARED, KEY_NOT_FOUND, NODE_EXISTS, Etcd2, EtcdError, EtcdUnreachable, wait_for_etcd

log = logging.getLogger("standin")

FLAGS = [
    Flag("etcd-endpoints", "http://127.0.0.1:4001,http://127.0.0.1:2379"),
    Flag("etcd-prefix", "/coreos.com/network"),
    Flag("iface", ""),
    Flag("public-ip", ""),
    Flag("ip-masq", False, bool),
    Flag("subnet-file", "/run/flannel/subnet.env"),
    Flag("lease-ttl", 24 * 3600.0, float),
    Flag("etcd-timeout", 30.0, float),
]

Router = Callable[[str, str, str], None]  # (action "replace"|"del", subnet, gateway)


class FatalError(Exception):
    """Stops flanneld with exit status 1 and this message as its last log line."""


def ip_router(action: str, subnet: str, gateway: str) -> None:
    cmd = ["ip", "route", action, subnet, "via", gateway]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 and not (action == "del" and "No such process" in res.stderr):
        log.warning("%s failed: %s", " ".join(cmd), res.stderr.strip())


def _iface_ipv4(name: str) -> str | None:
    SIOCGIFADDR = 0x8915
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            return socket.inet_ntoa(packed[20:24])
    except OSError:
        return None


def _default_route_iface() -> str | None:
    try:
        with open("/proc/net/route") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if len(parts) > 2 and parts[1] == "00000000":
                    return parts[0]
    except OSError:
        pass
    return None


def _iface_of_ip(ip: str) -> str | None:
    for name in sorted(os.listdir("/sys/class/net")):
        if _iface_ipv4(name) == ip:
            return name
    return None


def _mtu(iface: str | None) -> int:
    if iface:
        try:
            with open(f"/sys/class/net/{iface}/mtu") as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            pass
    return 1500


def choose_public_ip(iface: str, public_ip: str) -> tuple[str, str | None]:
    """(PublicIP, interface name or None) from --iface / --public-ip, as flannel picks them."""
    if iface:
        try:
            ipaddress.IPv4Address(iface)
            return public_ip or iface, _iface_of_ip(iface)
        except ValueError:
            ip = _iface_ipv4(iface)
            if ip is None:
                raise FatalError(f"failed to find IPv4 address for interface {iface}") from None
            return public_ip or ip, iface
    candidates = [_default_route_iface()] + sorted(os.listdir("/sys/class/net"))
    for name in candidates:
        if not name or name == "lo":
            continue
        ip = _iface_ipv4(name)
        if ip:
            return public_ip or ip, name
    raise FatalError("failed to find a non-loopback interface with an IPv4 address; pass --iface")


@dataclass
class NetConfig:
    network: ipaddress.IPv4Network
    subnet_len: int
    subnet_min: ipaddress.IPv4Address
    subnet_max: ipaddress.IPv4Address
    backend: str

    @classmethod
    def parse(cls, raw: str) -> "NetConfig":
        try:
            d = json.loads(raw)
            network = ipaddress.IPv4Network(d["Network"])
        except (ValueError, KeyError, TypeError) as exc:
            raise FatalError(f"invalid network config {raw!r}: {exc}") from None
        subnet_len = int(d.get("SubnetLen") or (24 if network.prefixlen < 24 else network.prefixlen + 1))
        if not network.prefixlen < subnet_len <= 30:
            raise FatalError(f"invalid network config: SubnetLen {subnet_len} does not fit in {network}")
        size = 2 ** (32 - subnet_len)
        smin = ipaddress.IPv4Address(d["SubnetMin"]) if d.get("SubnetMin") else network.network_address + size
        smax = ipaddress.IPv4Address(d["SubnetMax"]) if d.get("SubnetMax") else network.broadcast_address + 1 - size
        backend = str((d.get("Backend") or {}).get("Type") or "udp")
        return cls(network, subnet_len, smin, smax, backend)

    def candidates(self) -> list[ipaddress.IPv4Network]:
        size = 2 ** (32 - self.subnet_len)
        first = int(self.subnet_min)
        out = []
        addr = first
        while addr <= int(self.subnet_max):
            out.append(ipaddress.IPv4Network((addr, self.subnet_len)))
            addr += size
        return out


def subnet_key(prefix: str, net: ipaddress.IPv4Network) -> str:
    return f"{prefix}/subnets/{net.network_address}-{net.prefixlen}"


def parse_subnet_key(key: str) -> ipaddress.IPv4Network | None:
    name = key.rsplit("/", 1)[-1]
    addr, _, plen = name.partition("-")
    try:
        return ipaddress.IPv4Network(f"{addr}/{plen}")
    except ValueError:
        return None


def read_subnet_file(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                k, eq, v = line.strip().partition("=")
                if eq:
                    out[k] = v
    except OSError:
        pass
    return out


def write_subnet_file(path: str, values: dict[str, str]) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        for k, v in values.items():
            f.write(f"{k}={v}\n")
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


@dataclass
class Flanneld:
    etcd: Etcd2
    prefix: str
    public_ip: str
    iface: str | None
    ip_masq: bool
    subnet_file: str
    lease_ttl: int
    router: Router = ip_router
    config: NetConfig | None = None
    subnet: ipaddress.IPv4Network | None = None
    lease_expires: float = 0.0
    routes: dict[str, str] = field(default_factory=dict)  # subnet -> gateway
    index: int = 0

    # -- startup -------------------------------------------------------------
    def load_config(self) -> NetConfig:
        key = f"{self.prefix}/config"
        node = self.etcd.get_or_none(key)
        if node is None or node.value is None:
            raise FatalError(f"failed to retrieve network config: 100: Key not found ({key})")
        cfg = NetConfig.parse(node.value)
        if cfg.backend != "host-gw":
            log.warning("backend type %r is not implemented by this stand-in; routing as host-gw", cfg.backend)
        self.config = cfg
        return cfg

    def _lease_value(self) -> str:
        return json.dumps({"PublicIP": self.public_ip, "BackendType": "host-gw"})

    def acquire_lease(self) -> ipaddress.IPv4Network:
        assert self.config is not None
        cfg = self.config
        for _ in range(20):
            nodes, self.index = self.etcd.list(f"{self.prefix}/subnets")
            taken: set[ipaddress.IPv4Network] = set()
            for n in nodes:
                net = parse_subnet_key(n.key)
                if net is None:
                    continue
                taken.add(net)
                try:
                    owner = json.loads(n.value or "{}").get("PublicIP")
                except ValueError:
                    owner = None
                if owner == self.public_ip and net.subnet_of(cfg.network):
                    # Our own lease from a previous run: keep it and renew it.
                    self.etcd.set(n.key, self._lease_value(), ttl=self.lease_ttl, prev_index=n.modified_index)
                    log.info("found lease (%s) for current IP (%s), reusing", net, self.public_ip)
                    return self._leased(net)
            previous = read_subnet_file(self.subnet_file).get("FLANNEL_SUBNET")
            wanted: list[ipaddress.IPv4Network] = []
            if previous:
                try:
                    prev_net = ipaddress.IPv4Interface(previous).network
                    if prev_net.subnet_of(cfg.network) and prev_net.prefixlen == cfg.subnet_len and prev_net not in taken:
                        wanted.append(prev_net)
                except ValueError:
                    pass
            free = [c for c in cfg.candidates() if c not in taken]
            if not free and not wanted:
                raise FatalError(f"out of subnets: every /{cfg.subnet_len} of {cfg.network} is leased")
            random.shuffle(free)
            for net in wanted + free[:1]:
                try:
                    self.etcd.create(subnet_key(self.prefix, net), self._lease_value(), ttl=self.lease_ttl)
                except EtcdError as e:
                    if e.code == NODE_EXISTS:
                        continue  # somebody else won the race for it: look again
                    raise
                log.info("leased subnet %s for PublicIP %s (TTL %ds)", net, self.public_ip, self.lease_ttl)
                return self._leased(net)
        raise FatalError("could not lease a subnet after 20 attempts (etcd contention)")

    def _leased(self, net: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        self.subnet = net
        self.lease_expires = time.monotonic() + self.lease_ttl
        return net

    def write_env(self) -> None:
        assert self.config is not None and self.subnet is not None
        gateway = next(self.subnet.hosts())
        write_subnet_file(self.subnet_file, {
            "FLANNEL_NETWORK": str(self.config.network),
            "FLANNEL_SUBNET": f"{gateway}/{self.subnet.prefixlen}",
            "FLANNEL_MTU": str(_mtu(self.iface)),
            "FLANNEL_IPMASQ": "true" if self.ip_masq else "false",
        })
        log.info("wrote %s (FLANNEL_SUBNET=%s/%d)", self.subnet_file, gateway, self.subnet.prefixlen)

    # -- routes --------------------------------------------------------------
    def _route_add(self, net: str, gateway: str) -> None:
        if self.routes.get(net) == gateway:
            return
        self.router("replace", net, gateway)
        self.routes[net] = gateway
        log.info("route added: %s via %s", net, gateway)

    def _route_del(self, net: str) -> None:
        gateway = self.routes.pop(net, None)
        if gateway is not None:
            self.router("del", net, gateway)
            log.info("route removed: %s via %s", net, gateway)

    def _lease_of(self, key: str, value: str | None) -> tuple[str, str] | None:
        net = parse_subnet_key(key)
        if net is None or self.subnet is None or net == self.subnet:
            return None
        try:
            ip = json.loads(value or "{}").get("PublicIP")
        except ValueError:
            return None
        if not ip or ip == self.public_ip:
            return None
        return str(net), str(ip)

    def resync(self) -> None:
        """Make the routes match the full list of leases."""
        nodes, self.index = self.etcd.list(f"{self.prefix}/subnets")
        want: dict[str, str] = {}
        for n in nodes:
            lease = self._lease_of(n.key, n.value)
            if lease:
                want[lease[0]] = lease[1]
        for net in list(self.routes):
            if net not in want:
                self._route_del(net)
        for net, gw in want.items():
            self._route_add(net, gw)

    def handle_event(self, action: str, key: str, value: str | None, prev_value: str | None) -> None:
        if action in ("expire", "delete", "compareAndDelete"):
            lease = self._lease_of(key, prev_value) or self._lease_of(key, value)
            net = parse_subnet_key(key)
            if net is not None and self.subnet is not None and net == self.subnet:
                log.warning("our lease %s was %s; re-acquiring", key, action)
                self.renew(force=True)
            elif lease:
                self._route_del(lease[0])
        else:
            lease = self._lease_of(key, value)
            if lease:
                self._route_add(*lease)

    def renew(self, force: bool = False) -> None:
        assert self.subnet is not None
        remaining = self.lease_expires - time.monotonic()
        if not force and remaining > min(3600.0, self.lease_ttl / 2):
            return
        key = subnet_key(self.prefix, self.subnet)
        try:
            self.etcd.refresh(key, self.lease_ttl)
            self.lease_expires = time.monotonic() + self.lease_ttl
            return
        except EtcdError as e:
            if e.code != KEY_NOT_FOUND:
                raise
        old = self.subnet
        new = self.acquire_lease()
        if new != old:
            log.warning("lease %s was lost; now holding %s (restart docker to use it)", old, new)
        self.write_env()

    def step(self, wait: float) -> None:
        """One turn of the main loop: renew if due, then wait for a lease change."""
        self.renew()
        try:
            event = self.etcd.watch(f"{self.prefix}/subnets", self.index, timeout=wait)
        except EtcdError as e:
            if e.code in (EVENT_INDEX_CLEARED, KEY_NOT_FOUND):
                self.resync()
                return
            raise
        if event is None:
            return
        action, node, prev = event
        self.index = node.modified_index
        self.handle_event(action, node.key, node.value, prev.value if prev else None)


def main(argv: list[str] | None = None, router: Router = ip_router) -> None:
    setup_logging("flanneld")
    opts = parse_flags("flanneld", sys.argv[1:] if argv is None else argv, FLAGS)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        public_ip, iface = choose_public_ip(opts["iface"], opts["public-ip"])
        log.info("using interface %s with PublicIP %s", iface or "?", public_ip)
        etcd = Etcd2(opts["etcd-endpoints"].split(","))
        timeout = float(opts["etcd-timeout"])
        try:
            wait_for_etcd(etcd, attempts=max(1, int(timeout)), interval=1.0)
        except EtcdUnreachable as exc:
            raise FatalError(f"etcd unreachable after {timeout:.0f}s, giving up: {exc}") from None
        d = Flanneld(etcd, opts["etcd-prefix"].rstrip("/"), public_ip, iface, opts["ip-masq"],
                     opts["subnet-file"], int(opts["lease-ttl"]), router=router)
        d.load_config()
        if opts["ip-masq"]:
            log.info("--ip-masq: recorded in FLANNEL_IPMASQ; this stand-in installs no masquerade rules")
        d.acquire_lease()
        d.write_env()
        d.resync()
        last_resync = time.monotonic()
        while True:
            try:
                d.step(wait=5.0)
                if time.monotonic() - last_resync > 30:
                    d.resync()
                    last_resync = time.monotonic()
            except EtcdUnreachable as exc:
                # Once running, flannel rides out etcd outages: routes stay, lease is renewed later.
                log.warning("etcd unreachable, retrying: %s", exc)
                time.sleep(2)
    except FatalError as exc:
        log.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
