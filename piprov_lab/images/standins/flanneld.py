"""flanneld STAND-IN (installed as /opt/bin/flanneld in the lab's flannel image).

This is not flannel. Flannel publishes no binary this machine can obtain, so the
lab runs this program in its place. It follows the contract of flannel 0.5.5 (the
2016 seed stack's) or v0.12.0 (the last-hyperkube profile's), with the ``host-gw``
backend:

* flags used: ``--etcd-endpoints`` (comma list, default http://127.0.0.1:4001,http://127.0.0.1:2379),
  ``--etcd-prefix`` (default /coreos.com/network), ``--iface`` (IP address or
  interface name; default the interface of the default route, for v0.5.5 else the
  first non-loopback one), ``--public-ip``, ``--ip-masq``, ``--subnet-file`` (default
  /run/flannel/subnet.env). The rest of each version's flag set is accepted (below).
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
* the version is the image's tag (``FLANNEL_VERSION``, set by the lab's image build,
  "0.5.5" and "v0.5.5" alike); v0.5.3-v0.5.5 (same main.go, network/network.go,
  pkg/ip/iface.go, subnet/etcd.go and subnet/registry.go; v0.5.6 rewrote network/ and
  subnet/) and v0.12.0 are modelled, any other version is refused (exit 1).
* flags: Go's ``flag`` package (``goflag.py``), exactly the set of the version:

  - v0.5.5 (flannel-io/flannel v0.5.5 main.go:63-82, on flag.CommandLine, plus the
    vendored glog's logtostderr, alsologtostderr, v, stderrthreshold, vmodule,
    log_backtrace_at (Godeps/.../glog/glog.go:395-400) and log_dir (glog_file.go:41)).
    An unknown flag: ``flag provided but not defined: -NAME`` and "Usage of ..." on
    stderr, exit 2 (Go 1.4's flag.ExitOnError; the v0.5.5 image was built with
    golang:1.4.2, dist/build-docker.sh:14). A positional argument or ``--help``:
    usage, exit 0 (main.go:234-238).
  - v0.12.0 (v0.12.0 main.go:111-134, its own FlagSet ``flannel`` with ExitOnError
    and only glog's v, vmodule and log_backtrace_at copied, main.go:141-143: no
    --logtostderr, no --subnet-dir/--networks/--listen/--remote; new: --iface and
    --iface-regex repeatable, --etcd-username/--etcd-password,
    --subnet-lease-renew-margin, --kube-subnet-mgr and its --kube-*/--kubeconfig-file/
    --net-config-path, --healthz-ip/--healthz-port, --iptables-resync,
    --iptables-forward-rules). An unknown flag: ``flag provided but not defined: -NAME``
    on stderr, then the program's own usage (main.go:156-160) which calls
    ``os.Exit(0)``: flannel v0.12.0 exits 0 on an unknown flag (Go's flag failf runs
    the usage function before ExitOnError's exit 2 can happen), and so does this
    stand-in.
  - both read unset flags from ``FLANNELD_<NAME>`` (coreos/pkg flagutil.SetFlagsFromEnv,
    v0.5.5 main.go:245, v0.12.0 main.go:189; errors there are ignored by flannel).
* subnet.env: the same four lines in both versions (v0.5.5 main.go:84-110
  writeSubnetFile, v0.12.0 main.go:559-585 WriteSubnetFile): FLANNEL_NETWORK,
  FLANNEL_SUBNET (network address + 1), FLANNEL_MTU (host-gw: the interface's MTU,
  v0.12.0 backend/hostgw/hostgw.go:60), FLANNEL_IPMASQ; written to ``.<name>`` then
  renamed. Both speak etcd's v2 keys API (v0.5.5 subnet/registry.go, the vendored
  go-etcd client; v0.12.0 subnet/etcdv2/registry.go:27 imports
  github.com/coreos/etcd/client, the v2 KeysAPI) under ``--etcd-prefix``.
* start-up failures of v0.5.5:

  - ``--iface`` names no address of the node (the boot-time case: the DHCP address
    is not there yet): flannel v0.5.5 main.go:112-144 ``lookupIface`` fails,
    ``initAndRun`` (main.go:167-171) logs the error and returns, and ``main``
    (main.go:288) then only waits for SIGINT/SIGTERM: the process stays up, idle,
    never looks again, never writes the subnet file; SIGTERM logs "Exiting..."
    and exits 0 (main.go:292-295). The log lines: ``Error looking up interface
    10.0.0.5: No interface with given IP found`` (main.go:121, pkg/ip/iface.go:116),
    ``Error looking up interface eth9: no such network interface`` (main.go:126: Go
    1.4's net.InterfaceByName error errNoSuchInterface, net/interface.go),
    ``Failed to find IPv4 address for interface eth0`` (main.go:139).
    The address is matched against every IPv4 address of every interface
    (pkg/ip/iface.go:66-83, 103-117), secondary ones included.
  - etcd cannot be reached: nothing at start waits for etcd (subnet.NewEtcdManager
    only builds a client, subnet/registry.go:52-87); network/network.go:45-103
    ``Init`` runs its steps (config, then the backend's lease) each in a loop with
    ``time.Sleep(time.Second)`` until it succeeds, for ever, logging
    ``Failed to retrieve network config: client: etcd cluster is unavailable or
    misconfigured`` (network.go:53; the text is the vendored etcd client's
    ErrClusterUnavailable, Godeps/.../etcd/client/client.go:34, cluster_error.go) or
    ``Failed to acquire subnet: ...`` (subnet/etcd.go:91, also every second). Once
    etcd answers it takes its lease ("Subnet lease acquired: 10.0.5.0/24",
    subnet/etcd.go:84) and writes the subnet file (main.go:211).
  - the config key is missing: exit 1 with one clear log line (a stand-in
    shortcut: flannel v0.5.5 retries it every second like the etcd case).
  - our lease deleted or expired while running: take a lease again (network.go Run).

* start-up failures of v0.12.0 (v0.12.0 main.go:182-346, 381-400, 445-557):

  - ``--iface`` matches nothing: ``Could not find valid interface matching 10.0.0.5:
    error looking up interface 10.0.0.5: No interface with given IP found`` (info),
    then ``Failed to find interface to use that matches the interfaces and/or regexes
    provided`` and exit 1 (main.go:207-238): unlike v0.5.5 it does not idle, so a
    unit's Restart= retries it. By name: Go 1.10's (Makefile:18 GO_VERSION=1.10.3)
    ``route ip+net: no such network interface``. No --iface: the default route's
    interface, else ``Failed to find any valid interface to use: failed to get
    default interface: Unable to find default route`` and exit 1 (main.go:201-205,
    pkg/ip/iface.go:104).
  - etcd cannot be reached or the config key is missing: ``getConfig`` retries every
    second for ever (main.go:381-400), logging ``Couldn't fetch network config:
    client: etcd cluster is unavailable or misconfigured; error #0: ...`` (vendored
    etcd client/cluster_error.go) or ``Couldn't fetch network config: 100: Key not
    found (/coreos.com/network) [N]`` (client/keys.go Error.Error), and printing
    "timed out" on stdout after each wait (main.go:397).
  - etcd lost between the config and the lease: ``Error registering network: failed
    to acquire lease: ...``, exit 1 (main.go:289-295, backend/hostgw/hostgw.go:76-86).
  - our lease deleted or expired while running: ``Lease has been revoked. Shutting
    down daemon.``, exit 0 (main.go:435-437, 336-346).
  - SIGTERM: ``shutdownHandler sent cancel signal...``, ``Exiting cleanly...``, exit 0.
  - ``--subnet-lease-renew-margin`` outside 1..1439: exit 1 (main.go:191-195).
  - ``--healthz-port`` > 0 serves ``GET /healthz`` -> 200 "flanneld is running"
    (main.go:589-602).

Not covered: the udp and vxlan backends (any Backend.Type is routed as host-gw,
with a log line), the masquerade rules of ``--ip-masq`` and v0.12's FORWARD rules
(the flag is recorded in FLANNEL_IPMASQ only: the lab has no outside network to
masquerade to), v0.12's etcd BasicAuth (the flags are accepted, unused), v0.5's
``--networks`` multi-network and ``--listen``/``--remote`` client/server modes and
v0.12's ``--kube-subnet-mgr`` (given, they stop the stand-in with exit 1 naming
the flag: the lab never uses them), ``--iface-regex`` beyond a plain match.

etcd TLS (both versions, v0.5.5 main.go:67-69 and subnet/registry.go:52-72, v0.12.0
main.go:114-116 and subnet/etcdv2/registry.go:70-77: the vendored etcd
pkg/transport TLSInfo.ClientConfig): ``--etcd-certfile`` and ``--etcd-keyfile``
(both or neither: ``Failed to create SubnetManager: KeyFile and CertFile must both
be present[key: K, cert: C]``, exit 1, as an unreadable file is; v0.5.5 checks before
the interface lookup, main.go:247-251, v0.12.0 after it, main.go:241-245) present a
client certificate on ``https://`` endpoints, ``--etcd-cafile`` is then the only CA
trusted (RootCAs), else the system's; the server's certificate must name the
endpoint's host (Go's http.Transport sets ServerName from it). Python's ssl, not
Go's: the same checks, not the same library.

Stand-in extensions, as environment variables so that the flag set stays the real
one: ``STANDIN_LEASE_TTL`` (seconds, default 86400) and ``STANDIN_ETCD_TIMEOUT``
(seconds, default 0 = retry for ever as flannel; past it, exit 1 with one clear log
line), so tests can exercise expiry and failure quickly. ``--version`` prints the
version on stderr and exits 0: "0.5.5" (v0.5.5 main.go:240-243, version.go) or
"v0.12.0" (v0.12.0 main.go:183-186; Makefile:41 sets version.Version from
``git describe``).
"""

from __future__ import annotations

import array
import errno
import fcntl
import ipaddress
import json
import logging
import os
import random
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NoReturn

from . import goflag
from .common import setup_logging
from .etcd2 import EVENT_INDEX_CLEARED, KEY_NOT_FOUND, NODE_EXISTS, Etcd2, EtcdError, EtcdUnreachable

log = logging.getLogger("standin")

V055 = ("v0.5.3", "v0.5.4", "v0.5.5")
V012 = ("v0.12.0",)
MODELLED_VERSIONS = V055 + V012


def image_version(raw: str | None = None) -> str:
    """The version of the image's tag (FLANNEL_VERSION), with its "v": "0.5.5" -> "v0.5.5"."""
    v = (os.environ.get("FLANNEL_VERSION", "v0.5.5") if raw is None else raw).strip()
    return v if v.startswith("v") else "v" + v


VERSION = image_version()

# What flannel v0.5.5 logs for any etcd request that no endpoint answered: the vendored
# etcd client's ClusterError.Error() is ErrClusterUnavailable's text (client.go:34).
ETCD_UNAVAILABLE = "client: etcd cluster is unavailable or misconfigured"

_S, _B, _I = goflag.string, goflag.boolean, goflag.integer
# glog's flags on flag.CommandLine (vendored glog.go:395-400, glog_file.go:41).
_GLOG = [_B("logtostderr"), _B("alsologtostderr"), _S("v", "0"), _S("stderrthreshold", "ERROR"),
         _S("vmodule"), _S("log_backtrace_at"), _S("log_dir")]
ETCD_DEFAULT = "http://127.0.0.1:4001,http://127.0.0.1:2379"
# flannel v0.5.5 main.go:63-82.
FLAGS_055 = [
    _S("public-ip"), _S("etcd-endpoints", ETCD_DEFAULT), _S("etcd-prefix", "/coreos.com/network"),
    _S("etcd-keyfile"), _S("etcd-certfile"), _S("etcd-cafile"), _S("subnet-file", "/run/flannel/subnet.env"),
    _S("subnet-dir", "/run/flannel/networks"), _S("iface"), _S("listen"), _S("remote"), _S("remote-keyfile"),
    _S("remote-certfile"), _S("remote-cafile"), _S("networks"), _B("ip-masq"), _B("help"), _B("version"),
] + _GLOG
# flannel v0.12.0 main.go:111-143 (FlagSet "flannel"; of glog only v, vmodule, log_backtrace_at).
FLAGS_012 = [
    _S("etcd-endpoints", ETCD_DEFAULT), _S("etcd-prefix", "/coreos.com/network"), _S("etcd-keyfile"),
    _S("etcd-certfile"), _S("etcd-cafile"), _S("etcd-username"), _S("etcd-password"),
    goflag.GoFlag("iface", [], str, repeated=True), goflag.GoFlag("iface-regex", [], str, repeated=True),
    _S("subnet-file", "/run/flannel/subnet.env"), _S("public-ip"), _I("subnet-lease-renew-margin", 60),
    _B("ip-masq"), _B("kube-subnet-mgr"), _S("kube-api-url"), _S("kube-annotation-prefix", "flannel.alpha.coreos.com"),
    _S("kubeconfig-file"), _B("version"), _S("healthz-ip", "0.0.0.0"), _I("healthz-port", 0),
    _I("iptables-resync", 5), _B("iptables-forward-rules", True), _S("net-config-path", "/etc/kube-flannel/net-conf.json"),
    _S("v", "0"), _S("vmodule"), _S("log_backtrace_at"),
]


def flags_of(version: str) -> list[goflag.GoFlag]:
    return FLAGS_012 if version in V012 else FLAGS_055


def parse_args(version: str, argv: list[str], prog: str = "/opt/bin/flanneld") -> goflag.Parsed:
    """argv as that version's flanneld parses it; exits as it does on a bad or unknown flag."""
    flags = flags_of(version)
    try:
        opts = goflag.parse(argv, flags)
    except (goflag.FlagError, goflag.HelpRequested) as exc:
        if isinstance(exc, goflag.FlagError):
            print(exc, file=sys.stderr)
        if version in V012:  # its usage() ends in os.Exit(0) (v0.12.0 main.go:156-160)
            print(f"Usage: {prog} [OPTION]...\n{goflag.defaults_text(flags)}", end="", file=sys.stderr)
            sys.exit(0)
        print(f"Usage of {prog}:\n{goflag.defaults_text(flags)}", end="", file=sys.stderr)
        sys.exit(2)  # Go 1.4 flag.ExitOnError, -h included
    if version in V055 and (opts.args or opts["help"]):  # v0.5.5 main.go:234-238
        print(f"Usage: {prog} [OPTION]...\n{goflag.defaults_text(flags)}", end="", file=sys.stderr)
        sys.exit(0)
    return opts


def apply_env(opts: goflag.Parsed, version: str) -> None:
    """FLANNELD_* fill unset flags; flannel ignores what fails to parse there."""
    try:
        goflag.from_env(opts, flags_of(version), "FLANNELD")
    except goflag.FlagError as exc:
        log.warning("%s", exc)


def _env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


Router = Callable[[str, str, str], None]  # (action "replace"|"del", subnet, gateway)


class FatalError(Exception):
    """Stops flanneld with exit status 1 and this message as its last log line."""


class LeaseRevoked(Exception):
    """flannel v0.12.0 saw its own lease go (main.go:435-437): it shuts down, exit 0."""


class IfaceError(FatalError):
    """``--iface`` matches nothing on the node. flannel v0.5.5 logs it and then idles
    until a signal, without exiting (main.go:167-171, 288): see the module docstring."""


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


def _ipv4_addresses() -> list[tuple[str, str]]:
    """(interface, address) for every IPv4 address of the node, secondary ones included
    (SIOCGIFCONF lists each address; flannel's GetInterfaceByIP looks at all of them)."""
    SIOCGIFCONF = 0x8912
    size = 40 if struct.calcsize("P") == 8 else 32  # sizeof(struct ifreq)
    count = 512
    buf = array.array("B", bytes(count * size))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        out = fcntl.ioctl(s.fileno(), SIOCGIFCONF, struct.pack("iP", count * size, buf.buffer_info()[0]))
    length = struct.unpack("iP", out)[0]
    raw = buf.tobytes()[:length]
    found = []
    for i in range(0, length, size):
        label = raw[i:i + 16].split(b"\0", 1)[0].decode(errors="replace")
        found.append((label.split(":", 1)[0], socket.inet_ntoa(raw[i + 20:i + 24])))
    return found


def _iface_of_ip(ip: str) -> str | None:
    for name, addr in _ipv4_addresses():
        if addr == ip:
            return name
    return None


def lookup_iface(iface: str) -> tuple[str, str]:
    """(interface name, its IPv4) for ``--iface`` (an IP or a name), as flannel v0.5.5's
    lookupIface (main.go:112-144); raises IfaceError with flannel's own message."""
    try:
        addr = ipaddress.ip_address(iface)
    except ValueError:
        if not os.path.isdir(f"/sys/class/net/{iface}"):
            raise IfaceError(f"Error looking up interface {iface}: no such network interface") from None
        ip = _iface_ipv4(iface)
        if ip is None:
            raise IfaceError(f"Failed to find IPv4 address for interface {iface}") from None
        return iface, ip
    name = _iface_of_ip(str(addr)) if addr.version == 4 else None
    if name is None:
        raise IfaceError(f"Error looking up interface {iface}: No interface with given IP found")
    return name, str(addr)


def _mtu(iface: str | None) -> int:
    if iface:
        try:
            with open(f"/sys/class/net/{iface}/mtu") as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            pass
    return 1500


def choose_public_ip(iface: str, public_ip: str) -> tuple[str, str | None]:
    """(PublicIP, interface name or None) from --iface / --public-ip, as flannel picks them.

    Without --iface this stand-in falls back to the first interface with an IPv4
    address (the lab has no default route, which flannel would need)."""
    if iface:
        found, found_ip = lookup_iface(iface)
        return public_ip or found_ip, found
    candidates = [_default_route_iface()] + sorted(os.listdir("/sys/class/net"))
    for name in candidates:
        if not name or name == "lo":
            continue
        ip = _iface_ipv4(name)
        if ip:
            return public_ip or ip, name
    raise FatalError("failed to find a non-loopback interface with an IPv4 address; pass --iface")


def _lookup_012(ifname: str) -> tuple[str, str]:
    """v0.12.0 LookupExtIface by IP or name (main.go:445-465, 524-529): its lower-case
    messages, and Go 1.10's net.InterfaceByName error."""
    try:
        return lookup_iface(ifname)
    except IfaceError as exc:
        text = str(exc).replace(": no such network interface", ": route ip+net: no such network interface")
        raise IfaceError(text[0].lower() + text[1:]) from None


def _match_regex_012(regex: str) -> tuple[str, str]:
    """--iface-regex: the first interface whose IPv4, then whose name, matches (main.go:466-516)."""
    import re
    addrs = _ipv4_addresses()
    for name, addr in addrs:
        if re.search(regex, addr):
            return name, addr
    for name in sorted(os.listdir("/sys/class/net")):
        if re.search(regex, name):
            ip = _iface_ipv4(name)
            if ip is None:
                raise IfaceError(f"failed to find IPv4 address for interface {name}")
            return name, ip
    raise IfaceError(f"Could not match pattern {regex} to any of the available network interfaces")


def choose_public_ip_012(ifaces: list[str], regexes: list[str], public_ip: str) -> tuple[str, str]:
    """(PublicIP, interface) as flannel v0.12.0 main.go:198-239 picks them; FatalError (exit 1) otherwise."""
    if not ifaces and not regexes:
        try:
            if public_ip:  # LookupExtIface(opts.publicIP, ""): the public IP names the interface
                name, ip = _lookup_012(public_ip)
            else:
                found = _default_route_iface()
                if found is None:
                    raise IfaceError("failed to get default interface: Unable to find default route")
                name, ip = _lookup_012(found)
        except IfaceError as exc:
            raise FatalError(f"Failed to find any valid interface to use: {exc}") from None
        return public_ip or ip, name
    candidates = [(i, _lookup_012) for i in ifaces] + [(r, _match_regex_012) for r in regexes]
    for what, lookup in candidates:
        try:
            name, ip = lookup(what)
        except IfaceError as exc:
            log.info("Could not find valid interface matching %s: %s", what, exc)
            continue
        log.info("Using interface with name %s and address %s", name, ip)
        return public_ip or ip, name
    raise FatalError("Failed to find interface to use that matches the interfaces and/or regexes provided")


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
    version: str = "v0.5.5"

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
                if self.version in V012:
                    raise LeaseRevoked(key)
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
            if self.version in V012:
                raise LeaseRevoked(key) from None
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


def _stop(*_: Any) -> NoReturn:
    if VERSION in V012:  # v0.12.0 main.go:366-378, 344-346
        log.info("shutdownHandler sent cancel signal...")
        log.info("Exiting cleanly...")
    else:
        log.info("Exiting...")  # flannel v0.5.5 main.go:292, then exit status 0
    sys.exit(0)


def idle_until_signal() -> NoReturn:
    """What flannel v0.5.5 does once initAndRun returned early: main waits for a signal (main.go:288)."""
    while True:
        signal.pause()


def start_up(d: Flanneld, etcd_timeout: float) -> None:
    """Network config, then a lease, each retried every second while etcd cannot be reached,
    as flannel v0.5.5 network/network.go:87-100 (for ever) and subnet/etcd.go:80-100.
    ``etcd_timeout`` > 0 (a stand-in extension) gives up after that long instead."""
    started = time.monotonic()
    steps: list[tuple[Callable[[], object], str]] = [
        (d.load_config, "Failed to retrieve network config"),  # network.go:53
        (d.acquire_lease, "Failed to acquire subnet"),  # subnet/etcd.go:91
    ]
    for step, failed in steps:
        while True:
            try:
                step()
                break
            except EtcdUnreachable as exc:
                if etcd_timeout > 0 and time.monotonic() - started >= etcd_timeout:
                    raise FatalError(f"etcd unreachable after {etcd_timeout:.0f}s, giving up: {exc}") from None
                log.error("%s: %s", failed, ETCD_UNAVAILABLE)
                time.sleep(1.0)


def start_up_012(d: Flanneld, etcd_timeout: float) -> None:
    """v0.12.0: getConfig every second for ever, whatever the error (main.go:381-400), then one
    try at the lease: failing that, exit 1 (main.go:289-295)."""
    started = time.monotonic()
    key = f"{d.prefix}/config"
    while True:
        try:
            node = d.etcd.get(key)
            cfg = NetConfig.parse(node.value or "")
            break
        except EtcdUnreachable as exc:
            detail = str(exc).split(": ", 1)[-1]
            log.error("Couldn't fetch network config: %s; error #0: %s", ETCD_UNAVAILABLE, detail)
        except EtcdError as exc:
            log.error("Couldn't fetch network config: %s", exc.go_client_text())
        except FatalError as exc:
            log.error("Couldn't fetch network config: %s", exc)
        if etcd_timeout > 0 and time.monotonic() - started >= etcd_timeout:
            raise FatalError(f"no network config after {etcd_timeout:.0f}s, giving up (STANDIN_ETCD_TIMEOUT)")
        time.sleep(1.0)
        print("timed out", flush=True)  # sic: v0.12.0 main.go:397
    log.info("Found network config - Backend type: %s", cfg.backend)
    if cfg.backend != "host-gw":
        log.warning("backend type %r is not implemented by this stand-in; routing as host-gw", cfg.backend)
    d.config = cfg
    try:
        d.acquire_lease()
    except (EtcdUnreachable, EtcdError) as exc:
        raise FatalError(f"Error registering network: failed to acquire lease: {exc}") from None


def _serve_healthz(ip: str, port: int) -> None:
    """v0.12.0 --healthz-port (main.go:589-602): GET /healthz -> 200 "flanneld is running"."""
    import http.server
    import threading

    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = b"flanneld is running"
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((ip, port), Healthz)
    log.info("Start healthz server on %s:%d", ip, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def _unsupported(opts: goflag.Parsed, names: list[str]) -> None:
    for name in names:
        if opts[name]:
            raise FatalError(f"--{name} is not implemented by this stand-in (the lab never uses it)")


def etcd_tls(opts: goflag.Parsed) -> ssl.SSLContext:
    """The etcd client's TLS as flannel's TLSInfo.ClientConfig builds it; FatalError with
    flannel's "Failed to create SubnetManager: ..." line when it cannot."""
    cert, key, ca = opts["etcd-certfile"], opts["etcd-keyfile"], opts["etcd-cafile"]
    failed = "Failed to create SubnetManager: "
    if (cert or key) and not (cert and key):
        raise FatalError(f"{failed}KeyFile and CertFile must both be present[key: {key}, cert: {cert}]")
    for path in (cert, key, ca):
        if path and not os.access(path, os.R_OK):
            code = errno.EACCES if os.path.exists(path) else errno.ENOENT
            raise FatalError(f"{failed}open {path}: {os.strerror(code).lower()}")  # Go's *PathError text
    try:
        ctx = ssl.create_default_context(cafile=ca or None)
        if cert:
            ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        raise FatalError(f"{failed}{exc}") from None
    return ctx


def _etcd(opts: goflag.Parsed) -> Etcd2:
    return Etcd2(opts["etcd-endpoints"].split(","), tls=etcd_tls(opts))


def _daemon_012(opts: goflag.Parsed, router: Router) -> Flanneld:
    margin = int(opts["subnet-lease-renew-margin"])
    if margin >= 24 * 60 or margin <= 0:  # main.go:191-195
        raise FatalError("Invalid subnet-lease-renew-margin option, out of acceptable range")
    public_ip, iface = choose_public_ip_012(opts["iface"], opts["iface-regex"], opts["public-ip"])
    _unsupported(opts, ["kube-subnet-mgr"])
    etcd = _etcd(opts)  # main.go:241-245: after the interface
    if int(opts["healthz-port"]) > 0:
        _serve_healthz(opts["healthz-ip"], int(opts["healthz-port"]))
    d = _flanneld(opts, etcd, public_ip, iface, router)
    start_up_012(d, _env_seconds("STANDIN_ETCD_TIMEOUT", 0.0))
    return d


def _daemon_055(opts: goflag.Parsed, router: Router) -> Flanneld:
    _unsupported(opts, ["listen", "remote", "networks"])
    etcd = _etcd(opts)  # main.go:247-251: before initAndRun's interface lookup
    try:
        public_ip, iface = choose_public_ip(opts["iface"], opts["public-ip"])
    except IfaceError as exc:
        log.error("%s", exc)
        idle_until_signal()
    log.info("using interface %s with PublicIP %s", iface or "?", public_ip)
    d = _flanneld(opts, etcd, public_ip, iface, router)
    start_up(d, _env_seconds("STANDIN_ETCD_TIMEOUT", 0.0))
    return d


def _flanneld(opts: goflag.Parsed, etcd: Etcd2, public_ip: str, iface: str | None, router: Router) -> Flanneld:
    return Flanneld(etcd, opts["etcd-prefix"].rstrip("/"), public_ip, iface,
                    opts["ip-masq"], opts["subnet-file"], int(_env_seconds("STANDIN_LEASE_TTL", 24 * 3600.0)),
                    router=router, version=VERSION)


def run(d: Flanneld) -> None:
    """Once leased: subnet file, routes, then follow the leases for ever."""
    log.info("Subnet lease acquired: %s", d.subnet)  # v0.5.5 subnet/etcd.go:84
    if d.ip_masq:
        log.info("--ip-masq: recorded in FLANNEL_IPMASQ; this stand-in installs no masquerade rules")
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


def main(argv: list[str] | None = None, router: Router = ip_router) -> None:
    setup_logging("flanneld")
    opts = parse_args(VERSION, sys.argv[1:] if argv is None else argv)
    if opts["version"]:
        print(VERSION if VERSION in V012 else VERSION.lstrip("v"), file=sys.stderr)
        sys.exit(0)
    apply_env(opts, VERSION)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        if VERSION not in MODELLED_VERSIONS:
            raise FatalError(f"this stand-in follows flannel {', '.join(MODELLED_VERSIONS)}, not {VERSION}")
        run(_daemon_012(opts, router) if VERSION in V012 else _daemon_055(opts, router))
    except LeaseRevoked:
        log.error("Lease has been revoked. Shutting down daemon.")
        log.info("Exiting cleanly...")
        sys.exit(0)
    except FatalError as exc:
        log.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
