"""The virtual Pi lab: boot, inspect, break and remove a fleet of Pi-like nodes.

A node is a systemd-nspawn container (real systemd as PID 1, sshd, avahi,
docker) on an overlay of the cached base image, in its own network namespace
plugged into the lab's bridge. The lab's state lives in JSON on disk, so any
process (``piprov lab status``, a test, a benchmark) can act on a lab another
process booted. Typical use from a test::

    lab = Lab("mytests")
    lab.up(nodes=3, decoys=2)
    lab.exec("pi1", "systemctl is-system-running --wait")
    inventory = lab.inventory_yaml()
    lab.down()
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import ipaddress
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from piprov_lab import image, inventory, net
from piprov_lab import state as st
from piprov_lab.errors import LabError
from piprov_lab.state import DecoyState, LabState, NodeState
from piprov_lab.system import (
    CGROUP_DIR,
    alive,
    cfs_settings,
    children,
    cpu_hierarchies,
    kill,
    node_cgroups,
    node_cpu,
    node_hierarchies,
    proc_ref,
    prune_cgroup,
    raise_inotify_limits,
    require_root,
    require_tools,
    run,
    spawn,
    ssh_banner,
    write_ssh_keypair,
)

Progress = Callable[[str], None]

KUBECTL = "/opt/piprov-tools/usr/bin/kubectl"
REGISTRY_PORT = inventory.REGISTRY_PORT
NODE_IP_OFFSET = 10  # pi1 = .11, pi2 = .12, ...
DECOY_IP_OFFSET = 200  # in a /24; in a bigger LAN the decoys keep the last 56 addresses (decoy_offset)
# A /24 holds 189 nodes; a lab of more (bench/scale.py boots 250) gets a /23, which holds 445.
MAX_NODES = 445
PI_OUIS = ("b8:27:eb", "dc:a6:32", "e4:5f:01")  # Raspberry Pi Foundation / Trading
DECOY_KINDS = ("printer", "laptop")
# Hostile announcers, only when asked for by kind (decoy.py says what each sends).
HOSTILE_KINDS = ("loopback-pi", "spoofed-mac", "six-names", "own-address")
DECOY_OUIS = {"printer": "00:80:77", "laptop": "3c:22:fb",  # Brother, Apple
              **{k: "00:16:3e" for k in HOSTILE_KINDS}}  # fmt: skip
# Raspberry Pi OS's avahi as it ships: Debian's avahi-daemon.conf (publish-workstation=no)
# and no /etc/avahi/services/ssh.service, so the node announces only its host name.
RPIOS_HOSTNAME = "raspberrypi"
# `lab up --flavour` words -> NodeState.flavour (the state's older words kept).
FLAVOURS = {"hypriot-2016": "hypriot", "hypriot-1x": "hypriot-1x", "hypriot-cloud-init": "hypriot-cloud-init",
            "raspios": "raspios"}
# The user a raspios node's card was made with in Raspberry Pi Imager: any name but pirate or pi
# (no image has had a default user since April 2022), so nothing can lean on a fixed one.
RASPIOS_USER = "ada"
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_TIMEOUT = 120.0
# The lab LAN's non-member (Lab.outsider): a locally administered MAC, the LAN's last address.
OUTSIDER = "outsider"
OUTSIDER_OUI = "02:70:6c"
# What a node's disk is made of besides its mount point: the overlay's upper and work
# dirs and the docker dirs bind-mounted off the overlay (see _boot). `replace` wipes them.
DISK_DIRS = ("upper", "work", "docker", "docker-bootstrap")
RESTRICT_SSH_TAG = "piprov-lab-restrict-ssh"


class NodeCommandError(LabError):
    """A command run inside a node (``Lab.exec``) failed; ``result`` has its output."""

    def __init__(self, message: str, result: subprocess.CompletedProcess[str], *, host: str) -> None:
        super().__init__(message, host=host)
        self.result = result


@dataclass(frozen=True)
class NodeInfo:
    """What the lab knows about one node."""

    name: str  # lab name: pi1, pi2, ...
    inventory_name: str  # name in `lab inventory`: rpi-master, rpi-node-1, ...
    ip: str
    mac: str
    mdns_name: str | None  # what avahi publishes now (black-pearl-2.local), None if unknown
    running: bool
    partitioned: bool
    rtt_ms: float
    loss_pct: float
    pid1: int | None
    netns: str
    host_key: str = ""  # "ssh-ed25519 AAAA...": the key its sshd has now (the lab's pin)
    os: str = image.SUITE  # the Debian release it runs: bullseye, bookworm, trixie
    flavour: str = "hypriot"  # NodeState.flavour: what its card holds
    user: str = "pirate"  # the card's login user

    @property
    def host_key_fingerprint(self) -> str:
        """As ssh-keygen -lf shows it: SHA256:<base64 of the key blob's SHA-256, unpadded>."""
        blob = base64.b64decode(self.host_key.split()[1]) if self.host_key else b""
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def default_name() -> str:
    return os.environ.get("PIPROV_LAB") or "piprov"


def decoy_offset(lan: ipaddress.IPv4Network) -> int:
    """Where the decoys' addresses start: .200 in a /24, the last 56 addresses of a bigger LAN."""
    return lan.num_addresses - 256 + DECOY_IP_OFFSET


def room(prefixlen: int) -> int:
    """How many nodes a lab LAN of ``prefixlen`` holds: those below the decoys' addresses."""
    return decoy_offset(ipaddress.IPv4Network(f"10.0.0.0/{prefixlen}")) - NODE_IP_OFFSET - 1


def _mac(oui: str, *seed: object) -> str:
    h = hashlib.sha1(repr(seed).encode()).digest()
    return oui + "".join(f":{b:02x}" for b in h[:3])


_inventory_name = inventory.inventory_name


class Lab:
    """One named virtual Pi lab on this machine (several can run side by side)."""

    def __init__(self, name: str | None = None, progress: Progress | None = None) -> None:
        self.name = name or default_name()
        st.check_name(self.name)
        self.dir = st.lab_dir(self.name)
        self._progress = progress

    # ----------------------------------------------------------------- state
    def _say(self, msg: str) -> None:
        if self._progress is not None:
            self._progress(msg)

    def _state(self) -> LabState:
        s = st.load(self.name)
        if s is None:
            raise LabError(
                f"lab {self.name!r} is not up",
                hint=f"start it with `piprov lab up --name {self.name}`",
            )
        return s

    @property
    def is_up(self) -> bool:
        return st.load(self.name) is not None

    @property
    def bridge_ip(self) -> str:
        return self._state().bridge_ip

    @property
    def registry(self) -> str:
        return f"{self.bridge_ip}:{REGISTRY_PORT}"

    @property
    def identity_file(self) -> Path:
        return self.dir / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        """piprov's known_hosts, the one `lab inventory` names: the lab pins a node's key here
        once, when it creates the node (as a user pins a new Pi's key after checking it on the
        console), and never rewrites it: after `replace` it still holds the old key, so piprov's
        strict checking meets a changed key until `piprov node forget-key`."""
        return self.dir / "ssh" / "known_hosts"

    @property
    def lab_known_hosts(self) -> Path:
        """The lab's own pins (`lab ssh`, ``ssh_argv``): every node's current key, rewritten
        from the lab's state whenever a node gets a key (also by `replace`)."""
        return self.dir / "ssh" / "lab_known_hosts"

    @property
    def kubectl(self) -> str:
        return KUBECTL

    @property
    def etcdctl(self) -> str:
        """The v2 etcdctl of this lab's etcd, run in piprov's k8s-etcd container on the
        master (pi1), ending in a space: etcdctl 2.1 knows --peers (--endpoints came in 2.2),
        etcdctl 3.4 speaks v3 unless ETCDCTL_API=2. As piprov's own (playbooks/seed-stack.yaml
        etcd_keys): the seed's etcd keeps a plain listener on 127.0.0.1, last-hyperkube's
        only TLS with client certificates; --no-sync, or etcdctl moves to the advertised
        https URL."""
        run = "docker -H unix:///var/run/docker-bootstrap.sock exec k8s-etcd "
        if self._state().profile == "seed":
            return run + "etcdctl --no-sync --peers=http://127.0.0.1:4001 "
        pki = "/etc/kubernetes/pki"
        master = next(n.ip for n in self._state().nodes if n.index == 1)  # the master (piprov_lab/inventory.py)
        return (run + f"env ETCDCTL_API=2 etcdctl --no-sync --endpoints=https://{master}:4001 "
                f"--cert-file={pki}/apiserver-etcd-client.crt --key-file={pki}/apiserver-etcd-client.key "
                f"--ca-file={pki}/ca.crt ")

    def kubectl_argv(self, api: str | Path, cache: Path | str, *args: str) -> list[str]:
        """kubectl (the project's tools: Debian's 1.20) against ``api`` (a URL, or a kubeconfig
        file: `piprov kubeconfig`'s, with the cluster's CA and the admin's credentials), as this
        lab's release needs it. kubectl 1.20 validates what it creates against the server's
        OpenAPI document (/openapi/v2, else /swagger-2.0.0.pb-v1) and fails when
        neither exists; Kubernetes 1.1 served only Swagger 1.2 under /swaggerapi, so
        against the seed profile a user passes --validate=false, and so do we."""
        where = ["--kubeconfig", str(api)] if isinstance(api, Path) else ["-s", api]
        argv = [KUBECTL, *where, "--cache-dir", str(cache), *args]
        if self._state().profile == "seed" and args and args[0] in ("create", "apply", "replace"):
            argv.insert(5, "--validate=false")
        return argv

    @property
    def nodes(self) -> list[NodeInfo]:
        s = self._state()
        # One nsenter per node to ask avahi its name: in parallel for big labs.
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(s.nodes)))) as pool:
            return list(pool.map(self._info, s.nodes))

    def node(self, name: str) -> NodeInfo:
        return self._info(self._find(self._state(), name))

    def _find(self, s: LabState, name: str) -> NodeState:
        for n in s.nodes:
            if name in (n.name, n.ip, _inventory_name(n.index)):
                return n
        known = ", ".join(n.name for n in s.nodes) or "none"
        raise LabError(
            f"lab {self.name!r} has no node {name!r}",
            hint=f"its nodes are: {known} (inventory names rpi-master, rpi-node-N and IPs work too)",
        )

    def _info(self, n: NodeState) -> NodeInfo:
        pid1 = self._pid1(n)
        return NodeInfo(
            name=n.name,
            inventory_name=_inventory_name(n.index),
            ip=n.ip,
            mac=n.mac,
            mdns_name=self._mdns_name(pid1) if pid1 else None,
            running=pid1 is not None,
            partitioned=n.partitioned,
            rtt_ms=n.rtt_ms,
            loss_pct=n.loss_pct,
            pid1=pid1,
            netns=n.netns,
            host_key=n.host_key,
            os=n.os,
            flavour=n.flavour,
            user=n.user,
        )

    @staticmethod
    def _pid1(n: NodeState) -> int | None:
        """The node's init: the child of nspawn, itself the child of the node's power shell (``_boot``)."""
        nspawn = Lab._nspawn_pid(n)
        kids = children(nspawn) if nspawn is not None else []
        return kids[0] if kids else None

    @staticmethod
    def _nspawn_pid(n: NodeState) -> int | None:
        if not alive(n.nspawn):
            return None
        assert n.nspawn is not None
        kids = children(n.nspawn.pid)
        return kids[0] if kids else None

    @staticmethod
    def _mdns_name(pid1: int) -> str | None:
        # avahi renames on collisions (black-pearl-2); ask it over D-Bus what it holds now.
        argv = ["nsenter", "-t", str(pid1), "-a", "busctl", "--system", "call", "org.freedesktop.Avahi",
                "/", "org.freedesktop.Avahi.Server", "GetHostNameFqdn"]  # fmt: skip
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=5)
        except subprocess.TimeoutExpired:
            return None
        if out.returncode != 0 or not out.stdout.startswith("s "):
            return None
        return out.stdout[2:].strip().strip('"') or None

    # ---------------------------------------------------------------- up/down
    def up(self, nodes: int = 3, decoys: int = 0, rtt_ms: float = 0, profile: str = inventory.DEFAULT_PROFILE,
           decoy_kinds: Sequence[str] = (), rpios: int = 0, flavours: Sequence[str] = (),
           releases: Sequence[str] = (), cpu_quota_pct: int = 0) -> None:  # fmt: skip
        """Boot ``nodes`` Pi-like nodes and ``decoys`` non-Pi hosts; return once every sshd answers.

        ``profile`` picks the image tags `inventory_yaml` names (the registry
        holds every profile's); ``decoy_kinds`` adds one decoy of each kind
        named (hostile ones included); the last ``rpios`` nodes get Raspberry
        Pi OS's avahi defaults and host name instead of HypriotOS's; ``flavours`` (FLAVOURS' keys)
        are given to the nodes in turn.
        ``releases`` (`--os`) are Debian releases given to the nodes in turn
        (pi1 the first, pi2 the second...; default: every node bookworm).
        ``cpu_quota_pct`` caps each node at that percent of one core (a slow Pi; see the README), from
        its first boot on and again at every boot after it.
        """
        per_node = _assign_releases(releases, nodes)
        inventory.check_profile(profile)
        cfs_settings(cpu_quota_pct)  # refuses a quota the kernel cannot take, before anything is made
        if cpu_quota_pct > 100 * (os.cpu_count() or 1):
            raise LabError(f"--cpu-quota {cpu_quota_pct} is more than this host's {os.cpu_count()} cores")
        unknown = [k for k in decoy_kinds if k not in DECOY_OUIS]
        if unknown:
            raise LabError(f"unknown decoy kind {unknown[0]!r}", hint=f"kinds: {', '.join(DECOY_OUIS)}")
        if not 0 <= rpios <= nodes:
            raise LabError("--rpios must be between 0 and --nodes")
        odd = [f for f in flavours if f not in FLAVOURS]
        if odd:
            raise LabError(f"unknown flavour {odd[0]!r}", hint=f"flavours: {', '.join(FLAVOURS)}")
        if not 1 <= nodes <= MAX_NODES:
            raise LabError(f"--nodes must be between 1 and {MAX_NODES}")
        if not 0 <= decoys <= 50:
            raise LabError("--decoys must be between 0 and 50")
        if rtt_ms < 0:
            raise LabError("--rtt must not be negative")
        require_root()
        require_tools("systemd-nspawn", "ip", "iptables", "nsenter", "docker-registry", "mount")
        with st.locked(self.name):
            if st.load(self.name) is not None:
                raise LabError(
                    f"lab {self.name!r} is already up (or was left behind by a crash)",
                    hint=f"`piprov lab status --name {self.name}` shows it; "
                    f"`piprov lab down --name {self.name}` removes it",
                )
            if self.dir.exists():
                raise LabError(
                    f"lab {self.name!r} left files behind in {self.dir} (its state file is gone: a crash?)",
                    hint=f"`piprov lab down --name {self.name}` removes what it left, then try again",
                )
            per_flavour = [FLAVOURS[flavours[i % len(flavours)]] if flavours else None for i in range(nodes)]
            images = [image.image_name(per_node[i], per_flavour[i] or "") for i in range(nodes)]
            bases = self._ensure_bases(images)
            try:
                s = self._create_lab(bases[images[0]], rtt_ms, profile, cpu_quota_pct,
                                     24 if nodes <= room(24) else 23)
                self._start_registry(s)
                new = [self._create_node(s, rpios=i >= nodes - rpios, os_=per_node[i], base=bases[images[i]],
                                         flavour=per_flavour[i])
                       for i in range(nodes)]
                for n in new:
                    self._boot(s, n)
                for kind in [DECOY_KINDS[i % len(DECOY_KINDS)] for i in range(decoys)] + list(decoy_kinds):
                    self._create_decoy(s, kind)
                self._fill_registry(s)
                if rtt_ms:
                    for n in new:
                        self._apply_netem(s, n, rtt_ms, 0.0)
                self._wait_ssh(s, new)
                self._wait_boot_done(new)
            except BaseException:
                self._say("lab up failed: removing what was made")
                self._teardown(st.load(self.name))
                raise

    def _ensure_bases(self, releases: Sequence[str]) -> dict[str, Path]:
        """The cached base image of each release named, built first where its recipe changed."""
        bases: dict[str, Path] = {}
        for os_ in dict.fromkeys(releases):
            base = image.ensure_base(self._progress, os_)
            if base.built_now:
                self._say(f"node image ({os_}) built in {base.build_seconds:.0f} s")
                labs = [o for o in (st.load(x) for x in st.all_lab_names()) if o is not None]
                image.remove_outdated(keep={o.base for o in labs} | {n.base for o in labs for n in o.nodes})
            bases[os_] = base.root
        return bases

    def _create_lab(self, base: Path, rtt_ms: float, profile: str, cpu_quota_pct: int = 0,
                    prefixlen: int = 24) -> LabState:
        self.dir.mkdir(parents=True, exist_ok=True)
        with st.global_lock():
            taken = [o.subnet for o in (st.load(x) for x in st.all_lab_names()) if o is not None]
            subnet = net.pick_subnet(self.name, taken, prefixlen)
            bridge = net.bridge_name(self.name)
            if net.link_exists(bridge):
                raise LabError(
                    f"network link {bridge} (the bridge of lab {self.name!r}) already exists",
                    hint="`piprov lab down --all` removes links left behind by a crashed lab",
                )
            bridge_ip = str(subnet.network_address + 1)
            s = LabState(name=self.name, dir=str(self.dir), subnet=str(subnet), bridge=bridge,
                         bridge_ip=bridge_ip, base=str(base), rtt_ms=rtt_ms, profile=profile,
                         cpu_quota_pct=cpu_quota_pct)  # fmt: skip
            st.save(s)
            self._say(f"lab {self.name}: bridge {bridge} {bridge_ip}/{subnet.prefixlen}")
            net.create_bridge(bridge, bridge_ip, subnet.prefixlen)
        if net.bridge_nf_active():
            s.forward_rule = True
            st.save(s)
            net.add_forward_rule(bridge, self.name)
        sshdir = self.dir / "ssh"
        sshdir.mkdir(mode=0o700, exist_ok=True)
        write_ssh_keypair(self.identity_file, f"piprov-lab-{self.name}")
        self.known_hosts.write_text("")
        self.lab_known_hosts.write_text("")
        return s

    def down(self) -> None:
        """Remove every process, mount, namespace, link and rule of this lab."""
        require_root()
        with st.locked(self.name):
            s = st.load(self.name)
            # With no state (lost, or a crash between create and save) the sweep
            # by name pattern still finds what the lab made.
            self._teardown(s)

    @staticmethod
    def down_all() -> list[str]:
        """Take down every lab on this machine, also ones whose process crashed."""
        require_root()
        names = st.all_lab_names()
        for name in names:
            Lab(name).down()
        _sweep(lab=None)
        # Directories of labs whose state file was lost.
        if st.LAB_ROOT.exists():
            for d in st.LAB_ROOT.iterdir():
                if d.is_dir() and st.NAME_RE.match(d.name):
                    Lab(d.name).down()
                    names.append(d.name)
        return names

    def _teardown(self, s: LabState | None) -> None:
        if s is None:
            _sweep(lab=self.name)
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        for n in s.nodes:
            self._stop_node(n)
            kill(n.relay)
        for d in s.decoys:
            kill(d.proc)
        kill(s.registry)
        for n in s.nodes:
            _forget_nspawn(f"{s.name}-{n.name}", Path(n.dir) / "root")
            _umount(Path(n.dir) / "root")
            net.delete_host(n.netns, n.veth)
        for d in s.decoys:
            net.delete_host(d.netns, d.veth)
        if s.forward_rule:
            net.del_forward_rule(s.bridge, s.name)
        net.delete_bridge(s.bridge)
        _sweep(lab=self.name)
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ nodes
    def _create_node(self, s: LabState, rpios: bool = False, os_: str = image.SUITE,
                     base: Path | None = None, flavour: str | None = None) -> NodeState:
        index = max((n.index for n in s.nodes), default=0) + 1
        name = f"pi{index}"
        net_ = ipaddress.IPv4Network(s.subnet)
        ip = str(net_.network_address + NODE_IP_OFFSET + index)
        ndir = self.dir / "nodes" / name
        n = NodeState(
            name=name, index=index, ip=ip, mac=_mac(PI_OUIS[(index - 1) % len(PI_OUIS)], self.name, index),
            netns=net.netns_name(self.name, name), veth=net.veth_name(self.name, "n", index), dir=str(ndir),
            rtt_ms=0.0, os=os_, base=str(base or s.base),
        )  # fmt: skip
        if rpios:
            n.flavour = "rpios"
        if flavour is not None:
            n.flavour = flavour
        if n.flavour == "raspios":
            n.user = RASPIOS_USER
        s.nodes.append(n)
        st.save(s)
        self._mount_disk(s, n)
        _pin_host_key(self.known_hosts, n)
        net.create_host(n.netns, n.veth, s.bridge, n.mac, n.ip, net_.prefixlen)
        return n

    def _mount_disk(self, s: LabState, n: NodeState) -> None:
        """The node's disk as a freshly flashed card: an overlay with an empty upper layer on the
        base image, empty docker dirs, then the per-node files (``_personalise``)."""
        ndir = Path(n.dir)
        for sub in DISK_DIRS + ("root",):
            (ndir / sub).mkdir(parents=True, exist_ok=True)
        root = ndir / "root"
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={n.base or s.base},upperdir={ndir / 'upper'},workdir={ndir / 'work'}", str(root)])  # fmt: skip
        n.mounted = True
        st.save(s)
        if n.flavour == "rpios":
            _rpios_avahi(root)
        elif n.flavour == "raspios":
            _raspios(root, n.user)
        elif n.flavour == "hypriot-1x":
            _hypriot_1x(root)
        elif n.flavour == "hypriot-cloud-init":
            _hypriot_cloud_init(root)
        self._personalise(s, n, root)

    def _personalise(self, s: LabState, n: NodeState, root: Path) -> None:
        """Per-node files: own host key, the lab's login key, machine-id, registry name."""
        key = root / "etc/ssh/ssh_host_ed25519_key"
        n.host_key = " ".join(write_ssh_keypair(key, "root@black-pearl").split()[:2])
        uid, gid = _passwd_ids(root, n.user)
        sshdir = root / "home" / n.user / ".ssh"
        sshdir.mkdir(mode=0o700, exist_ok=True)
        auth = sshdir / "authorized_keys"
        auth.write_text(Path(f"{self.identity_file}.pub").read_text())
        auth.chmod(0o600)
        for p in (sshdir, auth):
            os.chown(p, uid, gid)
        (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        hosts = root / "etc/hosts"
        hosts.write_text(hosts.read_text() + f"{s.bridge_ip}\tpiprov-registry\n")
        st.save(s)
        self._write_lab_known_hosts(s)

    def _write_lab_known_hosts(self, s: LabState) -> None:
        lines = [f"{n.ip} {n.host_key}\n" for n in s.nodes if n.host_key]
        tmp = self.lab_known_hosts.with_suffix(".tmp")
        tmp.write_text("".join(lines))
        os.replace(tmp, self.lab_known_hosts)

    def _boot(self, s: LabState, n: NodeState) -> None:
        raise_inotify_limits()
        ndir = Path(n.dir)
        # nspawn in the node's network namespace and a mount namespace of its own whose /sys is a
        # sysfs mounted from that netns (the host's cgroup hierarchies bound back under it): the
        # sysfs nspawn gives the node then shows the node's interfaces. Without it the node's
        # /sys/class/net listed the host's bridge and every other node's veth, which no Pi shows.
        # (`ip netns exec` remounts /sys too, but drops /sys/fs/cgroup, which nspawn needs.)
        # The shell stays, as the node's power: a node that reboots itself (`systemctl reboot`, as
        # `piprov check --fix` does) makes nspawn --keep-unit exit with 133, "reboot me", which is what
        # systemd-nspawn@.service's RestartForceExitStatus=133 answers on a host with systemd; a Pi
        # comes back on its own, so the node boots again. Any other exit is the node powered off.
        sysfs = ndir / "sysfs"
        sysfs.mkdir(exist_ok=True)
        argv = [
            "unshare", "--mount", "--propagation", "slave", "nsenter", f"--net=/run/netns/{n.netns}",
            "sh", "-c", 'set -e; mount -t sysfs sysfs "$0"; mount --rbind /sys/fs/cgroup "$0/fs/cgroup"; '
            'mount --move "$0" /sys; set +e; while :; do "$@"; rc=$?; [ "$rc" -eq 133 ] || exit "$rc"; done',
            str(sysfs),
            "systemd-nspawn", "-D", str(ndir / "root"), "-b", "--register=no", "--keep-unit",
            f"--network-namespace-path=/run/netns/{n.netns}", "-M", f"{self.name}-{n.name}",
            "--capability=all", "--private-users=no", "--resolv-conf=off", "--timezone=off",
            "--link-journal=no", "--console=read-only",
            f"--bind={ndir / 'docker'}:/var/lib/docker",
            f"--bind={ndir / 'docker-bootstrap'}:/var/lib/docker-bootstrap",
            *image.init_args(n.os),
        ]  # fmt: skip
        env = dict(os.environ, SYSTEMD_SECCOMP="0", SYSTEMD_NSPAWN_API_VFS_WRITABLE="1")
        cgroups = node_cgroups(f"{self.name}-{n.name}", s.cpu_quota_pct)
        n.nspawn = spawn(argv, ndir / "console.log", env=env, cgroups=cgroups)
        st.save(s)

    def _stop_node(self, n: NodeState) -> None:
        """Power cut: SIGKILL the node's power shell (it must not boot the node again), its PID 1 (the
        kernel kills its whole PID namespace) and nspawn."""
        nspawn, pid1 = self._nspawn_pid(n), self._pid1(n)
        kill(n.nspawn, signal.SIGKILL)
        for pid in (pid1, nspawn):
            if pid is not None:
                try:
                    kill(proc_ref(pid), signal.SIGKILL)
                except LabError:
                    pass
        n.nspawn = None

    def _wait_ssh(self, s: LabState, nodes: Sequence[NodeState], timeout: float | None = None) -> None:
        pending = {n.name: n for n in nodes if not n.partitioned}
        # Nodes boot side by side on the host's cores: 250 of them take longer than a few.
        timeout = BOOT_TIMEOUT + 0.5 * len(pending) if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._say(f"waiting for sshd on {', '.join(pending)}")
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(pending)))) as pool:
            while pending:
                for n in list(pending.values()):
                    if not alive(n.nspawn):
                        log = Path(n.dir) / "console.log"
                        text = log.read_text(errors="replace") if log.exists() else ""
                        text = re.sub(r"\x1b\[[0-9;]*m", "", text)
                        tail = "\n".join(ln for ln in text.splitlines()[-30:] if ln.strip())
                        raise LabError(
                            f"the node stopped while booting; its console ({log}) ends with:\n{tail}",
                            host=n.name,
                        )
                ready = list(pool.map(lambda n: ssh_banner(n.ip, timeout=0.3) and self._logins_allowed(n),
                                      pending.values()))
                for n, ok in zip(list(pending.values()), ready):
                    if ok:
                        del pending[n.name]
                if not pending:
                    break
                if time.monotonic() > deadline:
                    raise LabError(f"sshd did not answer within {timeout:.0f} s on {', '.join(pending)}")
                time.sleep(0.1)

    def _logins_allowed(self, n: NodeState) -> bool:
        """sshd answers before boot ends, but until systemd-user-sessions has
        removed /run/nologin, PAM refuses every login but root's: a node is up
        for piprov only once its user can log in, as on a real Pi."""
        pid1 = self._pid1(n)
        if pid1 is None:
            return False
        p = subprocess.run(["nsenter", "-t", str(pid1), "-a", "test", "!", "-e", "/run/nologin"],
                           capture_output=True, timeout=10, check=False)
        return p.returncode == 0

    # -------------------------------------------------------------- registry
    def _start_registry(self, s: LabState) -> None:
        rdir = self.dir / "registry"
        (rdir / "data").mkdir(parents=True, exist_ok=True)
        conf = rdir / "config.yml"
        conf.write_text(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {rdir / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {s.bridge_ip}:{REGISTRY_PORT}\n"
        )
        s.registry = spawn(["docker-registry", "serve", str(conf)], rdir / "registry.log")
        st.save(s)
        deadline = time.monotonic() + 20
        url = f"http://{s.bridge_ip}:{REGISTRY_PORT}/v2/"
        # Never through an http_proxy from the environment: the registry is on the lab bridge.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            try:
                with opener.open(url, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if not alive(s.registry) or time.monotonic() > deadline:
                log = (rdir / "registry.log").read_text(errors="replace")[-800:]
                raise LabError(f"the lab registry did not come up on {url}:\n{log}")
            time.sleep(0.1)

    def _fill_registry(self, s: LabState) -> None:
        # The stand-ins helper owns piprov_lab.images; until it offers
        # ensure_images the registry simply stays empty.
        try:
            images = importlib.import_module("piprov_lab.images")
        except ImportError:
            return
        ensure: Callable[[str, Path], None] | None = getattr(images, "ensure_images", None)
        if ensure is None:
            return
        self._say(f"filling the lab registry {s.bridge_ip}:{REGISTRY_PORT}")
        try:
            ensure(f"{s.bridge_ip}:{REGISTRY_PORT}", image.CACHE_ROOT / "images")
        except LabError:
            raise
        except Exception as e:  # the stand-ins' own errors: say where it happened
            raise LabError(f"filling the lab registry failed: {type(e).__name__}: {e}") from e

    # ---------------------------------------------------------------- decoys
    def _create_decoy(self, s: LabState, kind: str) -> DecoyState:
        index = len(s.decoys) + 1
        net_ = ipaddress.IPv4Network(s.subnet)
        d = DecoyState(
            name=f"decoy{index}", kind=kind, ip=str(net_.network_address + decoy_offset(net_) + index),
            mac=_mac(DECOY_OUIS[kind], self.name, "decoy", index),
            netns=net.netns_name(self.name, f"decoy{index}"), veth=net.veth_name(self.name, "d", index),
        )  # fmt: skip
        s.decoys.append(d)
        st.save(s)
        net.create_host(d.netns, d.veth, s.bridge, d.mac, d.ip, net_.prefixlen)
        argv = ["ip", "netns", "exec", d.netns, sys.executable, "-m", "piprov_lab.decoy",
                "--kind", kind, "--ip", d.ip, "--mac", d.mac, "--index", str(index),
                "--bridge-ip", s.bridge_ip]  # fmt: skip
        d.proc = spawn(argv, self.dir / "decoys" / f"{d.name}.log")
        st.save(s)
        return d

    def wait_decoys(self, timeout: float = 60) -> None:
        """Wait until every decoy has published all it announces (python-zeroconf registers
        one service after another, each probed and announced: a dozen take seconds)."""
        deadline = time.monotonic() + timeout
        for d in self._state().decoys:
            if d.kind == OUTSIDER:  # publishes nothing
                continue
            log = self.dir / "decoys" / f"{d.name}.log"
            while "published" not in (log.read_text(errors="replace") if log.exists() else ""):
                if time.monotonic() > deadline or not alive(d.proc):
                    raise LabError(f"decoy {d.name} ({d.kind}) did not publish within {timeout:.0f} s; see {log}")
                time.sleep(0.2)

    # -------------------------------------------------------------- outsider
    def outsider(self) -> DecoyState:
        """The lab LAN's outsider: a device on the Pis' LAN that is no cluster member (a guest's phone).

        A network namespace of its own on the lab bridge with the LAN's last
        address (.254: past every node and decoy) and no route beyond the LAN.
        Made on first use and recorded with the decoys (before it is created,
        as everything the lab makes), so `lab down` removes it; it announces
        nothing. Commands run there with the host's programs (curl, openssl,
        python): only the network is the outsider's.
        """
        require_root()
        with st.locked(self.name):
            s = self._state()
            found = next((d for d in s.decoys if d.kind == OUTSIDER), None)
            if found is not None:
                return found
            net_ = ipaddress.IPv4Network(s.subnet)
            ip = str(net_.broadcast_address - 1)
            if ip in {n.ip for n in s.nodes} | {d.ip for d in s.decoys}:
                raise LabError(f"the outsider's address {ip} is taken by a node or decoy")
            d = DecoyState(name=OUTSIDER, kind=OUTSIDER, ip=ip, mac=_mac(OUTSIDER_OUI, self.name, OUTSIDER),
                           netns=net.netns_name(self.name, OUTSIDER), veth=net.veth_name(self.name, "d", 0))
            s.decoys.append(d)
            st.save(s)
            net.create_host(d.netns, d.veth, s.bridge, d.mac, d.ip, net_.prefixlen)
            return d

    def outsider_exec(self, cmd: Sequence[str] | str, timeout: float = 60,
                      input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` (argv, or a string for ``sh -c``) from the outsider (see :meth:`outsider`).

        Not checked: what the outsider is refused is the point; the caller reads
        the exit code and output.
        """
        d = self.outsider()
        inner = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        try:
            return subprocess.run(["ip", "netns", "exec", d.netns, *inner], input=input, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise LabError(f"`{_show(cmd)}` from the outsider did not finish within {timeout} s") from e

    # ------------------------------------------------------------ power etc.
    def kill(self, node: str) -> None:
        """Power cut: no clean shutdown; the node's disk stays as it was."""
        require_root()
        with st.locked(self.name):
            s = self._state()
            n = self._find(s, node)
            if self._pid1(n) is None and not alive(n.nspawn):
                raise LabError("the node is not running", host=n.name)
            self._stop_node(n)
            st.save(s)

    def start(self, node: str, wait: bool = True) -> None:
        """Boot a stopped node again from its own disk."""
        require_root()
        with st.locked(self.name):
            s = self._state()
            n = self._find(s, node)
            if alive(n.nspawn):
                raise LabError("the node is already running", host=n.name)
            self._boot(s, n)
        if wait:
            self._wait_ssh(s, [n])

    def reboot(self, node: str, wait: bool = True) -> None:
        """Clean reboot (systemctl reboot inside the node); nspawn boots it again."""
        require_root()
        s = self._state()
        n = self._find(s, node)
        old = self._pid1(n)
        if old is None:
            raise LabError("the node is not running", host=n.name)
        self.exec(n.name, ["systemctl", "reboot"], check=False, timeout=30)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            new = self._pid1(n)
            if new is not None and new != old:
                break
            if not alive(n.nspawn):
                # nspawn ended instead of restarting the container: boot it ourselves.
                # Re-read the state under the lock: other nodes may be rebooting
                # at the same time, and saving our stale copy would lose their pids.
                with st.locked(self.name):
                    s = self._state()
                    n = self._find(s, node)
                    if not alive(n.nspawn):
                        self._boot(s, n)
                break
            if time.monotonic() > deadline:
                raise LabError("the node did not come back from reboot", host=n.name)
            time.sleep(0.1)
        if wait:
            self._wait_ssh(s, [n])

    def add_nodes(self, count: int = 1, releases: Sequence[str] = ()) -> list[NodeInfo]:
        """Boot ``count`` fresh nodes into the running lab (for rolling `node add` tests), running
        ``releases`` in turn (default bookworm)."""
        require_root()
        if count < 1:
            raise LabError("--count must be at least 1")
        per_node = _assign_releases(releases, count)
        bases = self._ensure_bases(per_node)
        with st.locked(self.name):
            s = self._state()
            prefixlen = ipaddress.IPv4Network(s.subnet).prefixlen
            if len(s.nodes) + count > room(prefixlen):
                raise LabError(f"the lab's /{prefixlen} has no room for that many nodes")
            new = [self._create_node(s, os_=r, base=bases[r]) for r in per_node]
            for n in new:
                self._boot(s, n)
                if s.rtt_ms:
                    self._apply_netem(s, n, s.rtt_ms, 0.0)
        self._wait_ssh(s, new)
        self._wait_boot_done(new)
        return [self._info(n) for n in new]

    def replace(self, node: str, start: bool = True) -> NodeInfo:
        """A re-flashed SD card: the node is powered off (if it runs), gets the base image back,
        a fresh network stack on the same cable, and boots; returns once sshd answers and boot
        has finished, as `up` and `add_nodes` do (``start=False``: left off, `start` boots it).

        The disk: the overlay's upper layer and both docker dirs emptied, then what every new
        node gets (``_personalise``: a NEW host key, a new machine-id, the lab's login key);
        the host name is the image's again (black-pearl from /boot/occidentalis.txt, or
        raspberrypi for a Raspberry Pi OS node). The network: the same namespace name, veth,
        MAC and address, but a new namespace, so nothing the old system made there (docker0,
        flannel, container veths, routes, iptables rules, sysctls) outlives the re-flash, as
        nothing does on a Pi; what the lab itself set on the cable (netem, partition,
        restrict_ssh) is set again. Host keys: see ``known_hosts`` and ``lab_known_hosts``.
        """
        require_root()
        with st.locked(self.name):
            s = self._state()
            n = self._find(s, node)
            self._stop_node(n)
            st.save(s)
            self._reflash(s, n)
            self._fresh_network(s, n)
            if start:
                self._boot(s, n)
        if start:
            self._wait_ssh(s, [n])
            self._wait_boot_done([n])
        return self._info(n)

    def _reflash(self, s: LabState, n: NodeState) -> None:
        """Unmount the node's disk, move its dirs aside (new inodes: a lazily unmounted overlay
        still holding the old upper dir cannot make the new mount fail as "in use"), delete them,
        and mount a fresh disk."""
        ndir = Path(n.dir)
        _forget_nspawn(f"{self.name}-{n.name}", ndir / "root")
        for mp in _mounts_under(ndir):
            _umount(Path(mp))
        n.mounted = False
        st.save(s)
        old = ndir / "flashed-over"
        shutil.rmtree(old, ignore_errors=True)
        old.mkdir()
        for sub in DISK_DIRS:
            if (ndir / sub).exists():
                (ndir / sub).rename(old / sub)
        shutil.rmtree(old, ignore_errors=True)  # what is left (never seen) goes with `lab down`
        self._mount_disk(s, n)

    def _fresh_network(self, s: LabState, n: NodeState) -> None:
        restriction = _ssh_restriction(n)
        kill(n.relay)  # it runs in the old namespace; netem starts a new one
        n.relay, n.relay_port = None, 0
        net.delete_host(n.netns, n.veth)
        net.create_host(n.netns, n.veth, s.bridge, n.mac, n.ip, ipaddress.IPv4Network(s.subnet).prefixlen)
        for rule in restriction:
            run(["ip", "netns", "exec", n.netns, "iptables", "-w", "-A", *rule])
        if n.rtt_ms or n.loss_pct:
            self._apply_netem(s, n, n.rtt_ms, n.loss_pct)
        if n.partitioned:
            net.set_link(n.veth, up=False)
        st.save(s)

    def _wait_boot_done(self, nodes: Sequence[NodeState]) -> None:
        """The Pis a user provisions have finished booting. (The 219/CGROUP failures once blamed
        on starting units mid-boot were the nodes sharing one cgroup tree: see system.CGROUP_DIR.)"""
        for n in nodes:
            # A partitioned node had no sshd to wait for: nspawn may not have forked its PID 1 yet.
            deadline = time.monotonic() + BOOT_TIMEOUT
            while self._pid1(n) is None and alive(n.nspawn) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.wait_booted(n.name, timeout=BOOT_TIMEOUT)

    def partition(self, node: str, on: bool) -> None:
        """Cut (on=True) or restore the node's LAN link without stopping it."""
        require_root()
        with st.locked(self.name):
            s = self._state()
            n = self._find(s, node)
            net.set_link(n.veth, up=not on)
            n.partitioned = on
            st.save(s)

    def set_address(self, node: str, present: bool) -> None:
        """Take the node's LAN address off its eth0 (present=False) or give it back.

        For the boot-time case of a Pi whose DHCP address comes late: HypriotOS
        brings eth0 up with ifupdown's ``allow-hotplug``, so ``network-online.target``
        does not wait for the address (the lab's node image masks
        systemd-networkd-wait-online: the same). The address lives in the node's
        network namespace, which outlives reboots and power cuts, so::

            lab.set_address("pi2", False)
            lab.reboot("pi2", wait=False)      # or kill() + start(wait=False)
            time.sleep(20)                     # the node boots without its address
            lab.set_address("pi2", True)       # ... and gets it 20 s after boot

        Unlike ``partition`` the link stays up (carrier, mDNS multicast route
        restored with the address). While the address is off, SSH to the node
        cannot work (``reboot``/``start`` need ``wait=False``); ``exec`` still does.
        """
        require_root()
        with st.locked(self.name):
            s = self._state()
            n = self._find(s, node)
            net.set_address(n.netns, n.ip, ipaddress.IPv4Network(s.subnet).prefixlen, present)

    def restrict_ssh(self, node: str, only_from: str | None) -> None:
        """Let ``node``'s sshd be reached from lab node ``only_from`` alone (None: from anywhere again).

        As a Pi behind a bastion: the controller's direct connections are
        refused (REJECT: at once, not after a timeout), the bastion's pass.
        The rule lives in the node's network namespace, so it outlives reboots.
        """
        require_root()
        s = self._state()
        n = self._find(s, node)
        ipt = ["ip", "netns", "exec", n.netns, "iptables", "-w"]
        tag = ["-m", "comment", "--comment", RESTRICT_SSH_TAG]
        for rule in _ssh_restriction(n):  # an earlier restriction
            run([*ipt, "-D", *rule])
        if only_from is not None:
            bastion = self._find(s, only_from)
            ssh = ["INPUT", "-p", "tcp", "--dport", "22", *tag]
            run([*ipt, "-I", *ssh, "-j", "REJECT", "--reject-with", "tcp-reset"])
            run([*ipt, "-I", *ssh, "-s", bastion.ip, "-j", "ACCEPT"])

    def require_sudo_password(self, node: str, password: str) -> None:
        """Make ``node`` a Pi whose sudo wants a password (Raspberry Pi OS made in Imager, hardened images):
        its user gets ``password`` and loses the NOPASSWD rule (the image's %sudo rule then asks)."""
        user = self.user(node)
        self.exec(node, "chpasswd", input=f"{user}:{password}\n")
        self.exec(node, f"rm -f /etc/sudoers.d/010_{user}-nopasswd /etc/sudoers.d/010_pi-nopasswd"
                        f" && sudo -l -U {user} | grep -q '(ALL.*) ALL'")

    def netem(self, rtt_ms: float | None = None, loss_pct: float | None = None, node: str | None = None) -> None:
        """Set round-trip delay (userspace relay on port 22) and/or packet loss for one or all nodes."""
        require_root()
        if rtt_ms is not None and rtt_ms < 0:
            raise LabError("--rtt must not be negative")
        if loss_pct is not None and not 0 <= loss_pct < 100:
            raise LabError("--loss must be a percentage from 0 up to (not including) 100")
        with st.locked(self.name):
            s = self._state()
            targets = [self._find(s, node)] if node else list(s.nodes)
            for n in targets:
                self._apply_netem(
                    s, n, n.rtt_ms if rtt_ms is None else rtt_ms, n.loss_pct if loss_pct is None else loss_pct
                )
            if node is None and rtt_ms is not None:
                s.rtt_ms = rtt_ms
            st.save(s)

    def _apply_netem(self, s: LabState, n: NodeState, rtt_ms: float, loss_pct: float) -> None:
        from piprov_lab import netem

        netem.apply(n, rtt_ms, loss_pct)
        st.save(s)

    # ------------------------------------------------------------------ exec
    def exec(
        self,
        node: str,
        cmd: Sequence[str] | str,
        check: bool = True,
        timeout: float | None = 120,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the node as root (nsenter into all its namespaces; no SSH).

        A string runs through ``sh -c``. With ``check``, a non-zero exit raises
        :class:`NodeCommandError` (a LabError) carrying the output.
        """
        argv = self.exec_argv(node, cmd)
        try:
            proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise LabError(f"`{_show(cmd)}` did not finish within {timeout} s", host=node) from e
        if check and proc.returncode != 0:
            raise NodeCommandError(
                f"`{_show(cmd)}` failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-2000:]}",
                proc,
                host=node,
            )
        return proc

    def put_file(self, node: str, dest: str, data: bytes | str, mode: int = 0o644) -> None:
        """Write ``data`` to ``dest`` inside the node (as root), atomically (temp file + rename)."""
        raw = data.encode() if isinstance(data, str) else data
        script = 'set -e; t="$1.lab-tmp.$$"; cat > "$t"; chmod "$2" "$t"; mv -f "$t" "$1"'
        argv = self.exec_argv(node, ["sh", "-c", script, "sh", dest, f"{mode:o}"])
        proc = subprocess.run(argv, input=raw, capture_output=True, timeout=120)
        if proc.returncode != 0:
            raise LabError(f"cannot write {dest}: {proc.stderr.decode(errors='replace').strip()}", host=node)

    def wait_booted(self, node: str | None = None, timeout: float = 60) -> None:
        """Wait until systemd in the node(s) finished booting (running or degraded)."""
        names = [node] if node else [n.name for n in self._state().nodes]
        for name in names:
            deadline = time.monotonic() + timeout
            while True:
                left = max(1, int(deadline - time.monotonic()))
                proc = self.exec(name, ["timeout", str(left), "systemctl", "is-system-running", "--wait"],
                                 check=False, timeout=left + 5)  # fmt: skip
                state = proc.stdout.strip()
                if state in ("running", "degraded"):
                    break
                # Just after a (re)boot, PID 1 may not have its bus socket yet: not an answer.
                if state or "Failed to connect to bus" not in proc.stderr or time.monotonic() >= deadline:
                    raise LabError(f"node did not finish booting: {state or proc.stderr.strip()}", host=name)
                time.sleep(0.2)

    def avahi_state(self, node: str) -> int:
        """avahi's server state in a node: 2 running (host name established), 1 registering, 3 collision."""
        p = self.exec(node, "busctl --system call org.freedesktop.Avahi / org.freedesktop.Avahi.Server GetState",
                      check=False)
        out = p.stdout.strip()
        return int(out[2:]) if out.startswith("i ") and out[2:].isdigit() else -1

    def wait_mdns(self, timeout: float = 120) -> dict[str, str]:
        """Wait until every running node's avahi holds a distinct host name; return node -> name.

        Nodes booted together collide on black-pearl.local and avahi renames
        them. Booted in the same instant they can also keep colliding in
        lockstep (avahi's simultaneous-probe tie-break fails, and after 15
        conflicts it retries every 20 s, again all at once); real Pis are
        never powered on in the same instant. A node still colliding after a
        while gets its avahi restarted, one node at a time, 1.5 s apart (longer
        than a probe), as staggered power-ons would. Names must be distinct AND
        every avahi running: distinct names alone can be a snapshot mid-loop.
        """
        start = time.monotonic()
        last_kick = start
        while True:
            running = [n for n in self.nodes if n.running]
            names = {n.name: n.mdns_name for n in running}
            states = {n.name: self.avahi_state(n.name) for n in running}
            if all(names.values()) and len(set(names.values())) == len(names) and all(
                s == 2 for s in states.values()
            ):
                return {k: v for k, v in names.items() if v}
            now = time.monotonic()
            if now - start > timeout:
                raise LabError(f"mDNS names did not settle within {timeout:.0f} s: {names}")
            if now - last_kick > 8:
                for name, state in states.items():
                    if state != 2:
                        self.exec(name, "systemctl restart avahi-daemon", check=False)
                        time.sleep(1.5)
                last_kick = time.monotonic()
            time.sleep(0.5)

    def exec_argv(self, node: str, cmd: Sequence[str] | str) -> list[str]:
        """The host command line that runs ``cmd`` inside ``node`` (for interactive use)."""
        require_root()
        n = self._find(self._state(), node)
        pid1 = self._pid1(n)
        if pid1 is None:
            raise LabError("the node is not running", host=n.name, hint=f"`piprov lab start {n.name}`")
        inner = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        # nsenter enters the node's namespaces, not its cgroups: join its cpu ones first, so
        # what runs here is counted as the node's CPU and held to its quota (`lab up --cpu-quota`).
        joins = [p for p in (h / CGROUP_DIR / f"{self.name}-{n.name}" / "cgroup.procs" for h in cpu_hierarchies())
                 if p.exists()]  # fmt: skip
        join = ["sh", "-c", 'while [ "$1" != -- ]; do echo $$ >"$1" || exit 125; shift; done; shift; exec "$@"',
                "sh", *map(str, joins), "--"] if joins else []  # fmt: skip
        return [*join, "nsenter", "-t", str(pid1), "-a", "env", "-i", f"PATH={NODE_PATH}", "HOME=/root",
                "LANG=C.UTF-8", "TERM=" + os.environ.get("TERM", "dumb"), *inner]  # fmt: skip

    def user(self, node: str) -> str:
        """The login user of ``node``'s card (pirate on HypriotOS; the Imager user on raspios)."""
        return self._find(self._state(), node).user

    def ssh_argv(self, node: str, cmd: Sequence[str] = ()) -> list[str]:
        """An OpenSSH command line that logs in to ``node`` as its user (pirate, or raspios's) with the lab's key."""
        n = self._find(self._state(), node)
        return ["ssh", "-i", str(self.identity_file), "-o", f"UserKnownHostsFile={self.lab_known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
                f"{n.user}@{n.ip}", *cmd]  # fmt: skip

    # ------------------------------------------------------------- inventory
    def inventory_yaml(self) -> str:
        """An inventory (format of inventory.example.yaml) with the tags of the lab's profile."""
        return inventory.inventory_yaml(self.name, self._state(), self.identity_file, self.known_hosts)

    # ----------------------------------------------------------------- status
    def status(self) -> dict[str, object]:
        """Everything `lab status --json` prints."""
        s = self._state()
        return {
            "name": self.name,
            "profile": s.profile,
            "subnet": s.subnet,
            "bridge": s.bridge,
            "bridge_ip": s.bridge_ip,
            "registry": f"{s.bridge_ip}:{REGISTRY_PORT}",
            "registry_running": alive(s.registry),
            "identity_file": str(self.identity_file),
            "known_hosts": str(self.known_hosts),
            "lab_known_hosts": str(self.lab_known_hosts),
            "cpu_quota_pct": s.cpu_quota_pct,
            "nodes": [
                {
                    "name": i.name, "inventory_name": i.inventory_name, "ip": i.ip, "mac": i.mac,
                    "mdns_name": i.mdns_name, "running": i.running, "partitioned": i.partitioned,
                    "rtt_ms": i.rtt_ms, "loss_pct": i.loss_pct, "os": i.os,
                    "flavour": i.flavour, "user": i.user,
                    "sshd": bool(i.running and not i.partitioned and ssh_banner(i.ip, timeout=0.3)),
                    # Read back from the node's cgroups: the quota in force, CPU used since its boot.
                    "cpu": node_cpu(f"{self.name}-{i.name}") if i.running else {},
                }
                for i in self.nodes
            ],  # fmt: skip
            "decoys": [
                {"name": d.name, "kind": d.kind, "ip": d.ip, "mac": d.mac,
                 "running": alive(d.proc) if d.kind != OUTSIDER else net.netns_exists(d.netns)}
                for d in s.decoys
            ],
        }


def _without_occidentalis(root: Path) -> None:
    """The image's 2015-16 HypriotOS boot taken off a card of a later OS: no occidentalis.txt and its
    device-init not started early (the image enables it from sysinit.target)."""
    (root / "boot/occidentalis.txt").unlink(missing_ok=True)
    (root / "etc/systemd/system/sysinit.target.wants/device-init.service").unlink(missing_ok=True)


def _hypriot_1x(root: Path) -> None:
    """Turn a node's root (its overlay) into HypriotOS 1.0-1.6's boot: /boot/device-init.yaml instead of
    occidentalis.txt, read by that release's device-init (image.DEVICE_INIT_1X: its behaviour, its unit)."""
    _without_occidentalis(root)
    (root / "boot/device-init.yaml").write_text(image.DEVICE_INIT_YAML)
    prog = root / "usr/local/sbin/device-init"
    prog.write_text(image.DEVICE_INIT_1X)
    prog.chmod(0o755)
    (root / "etc/systemd/system/device-init.service").write_text(image.DEVICE_INIT_1X_UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "device-init.service").unlink(missing_ok=True)
    (wants / "device-init.service").symlink_to("/etc/systemd/system/device-init.service")


def _hypriot_cloud_init(root: Path) -> None:
    """Turn a node's root (its overlay, on the cloud-init image) into a HypriotOS 1.7-1.12 card: no
    device-init (image-builder-rpi v1.7.0 removed it), /boot/user-data and /boot/meta-data as the
    image shipped them, read at every boot by the image's real cloud-init (NoCloud, seed in /boot)."""
    _without_occidentalis(root)
    (root / "boot/user-data").write_text(image.HYPRIOT_USER_DATA)
    (root / "boot/meta-data").write_text(image.HYPRIOT_META_DATA)


def _raspios(root: Path, user: str) -> None:
    """Turn a node's root (its overlay) into a Raspberry Pi OS (Bookworm) card made in Imager: the FAT
    partition at /boot/firmware with cmdline.txt and config.txt (and the stub /boot/cmdline.txt pointing
    there), no HypriotOS device-init or occidentalis.txt, the Imager user in place of pirate with
    passwordless sudo, Debian's avahi. Sources: piprov_lab/README.md."""
    _rpios_avahi(root)
    _without_occidentalis(root)
    fw = root / "boot/firmware"
    fw.mkdir(parents=True, exist_ok=True)
    (fw / "cmdline.txt").write_text(image.RASPIOS_CMDLINE)
    (fw / "config.txt").write_text(image.RASPIOS_CONFIG)
    for name in ("cmdline.txt", "config.txt"):
        (root / "boot" / name).write_text(image.RASPIOS_BOOT_STUB.format(name=name))
    (root / "etc/rpi-issue").write_text(image.RASPIOS_ISSUE)
    # What userconf-pi's first boot leaves (its userconf script): the image's first user renamed,
    # home moved, raspberrypi-sys-mods' 010_pi-nopasswd rule rewritten for the new name.
    run(["chroot", str(root), "sh", "-c", f"usermod -l {user} -d /home/{user} -m pirate && groupmod -n {user} pirate"])
    (root / "etc/sudoers.d/010_pirate-nopasswd").unlink(missing_ok=True)
    rule = root / "etc/sudoers.d/010_pi-nopasswd"
    rule.write_text(f"{user} ALL=(ALL) NOPASSWD: ALL\n")
    rule.chmod(0o440)


def _assign_releases(releases: Sequence[str], count: int) -> list[str]:
    """The release of each of ``count`` new nodes: ``releases`` in turn (bookworm when none)."""
    names = [r.strip() for r in releases if r.strip()] or [image.SUITE]
    for r in names:
        image.release(r)  # a LabError for a name that is no release
    return [names[i % len(names)] for i in range(count)]


def _rpios_avahi(root: Path) -> None:
    """Turn a node's root (its overlay) into Raspberry Pi OS's avahi setup and host name."""
    conf = root / "etc/avahi/avahi-daemon.conf"
    conf.write_text(re.sub(r"(?m)^#?publish-workstation=.*$", "publish-workstation=no", conf.read_text()))
    (root / "etc/avahi/services/ssh.service").unlink(missing_ok=True)
    (root / "etc/hostname").write_text(f"{RPIOS_HOSTNAME}\n")
    occ = root / "boot/occidentalis.txt"
    if occ.exists():
        occ.write_text(re.sub(r"(?m)^hostname=.*$", f"hostname={RPIOS_HOSTNAME}", occ.read_text()))
    hosts = root / "etc/hosts"
    hosts.write_text(hosts.read_text().replace("black-pearl", RPIOS_HOSTNAME))


def _pin_host_key(known_hosts: Path, n: NodeState) -> None:
    """Pin a new node's key in piprov's known_hosts through piprov's own pinning (its lock,
    its line format; appended, so pins piprov made meanwhile stay)."""
    import paramiko

    from piprov.ssh.hostkeys import known_hosts_name, pin_host_key

    kind, blob = n.host_key.split()
    pin_host_key(known_hosts, known_hosts_name(n.ip, 22), paramiko.PKey.from_type_string(kind, base64.b64decode(blob)))


def _ssh_restriction(n: NodeState) -> list[list[str]]:
    """The rules `restrict_ssh` put in the node's INPUT chain, as `iptables -S` lists them, less the leading -A."""
    lines = run(["ip", "netns", "exec", n.netns, "iptables", "-w", "-S", "INPUT"]).stdout.splitlines()
    return [shlex.split(ln)[1:] for ln in lines if RESTRICT_SSH_TAG in ln and ln.startswith("-A ")]


def _show(cmd: Sequence[str] | str) -> str:
    text = " ".join((cmd if isinstance(cmd, str) else shlex.join(cmd)).split())
    return text if len(text) <= 160 else text[:157] + "..."


def _passwd_ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == user:
            return int(f[2]), int(f[3])
    raise LabError(f"the node image has no user {user}")


def _umount(path: Path) -> None:
    if os.path.ismount(path):
        if run(["umount", str(path)], check=False).returncode != 0:
            run(["umount", "-l", str(path)], check=False)


def _mounts_under(prefix: Path) -> list[str]:
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mp = line.split()[1].replace("\\040", " ")
        if mp.startswith(str(prefix) + "/"):
            out.append(mp)
    return sorted(out, key=len, reverse=True)


def _sweep(lab: str | None) -> None:
    """Remove leftovers by name pattern (after a crash, the state may not list them).

    With ``lab`` only that lab's resources; with None every lab's.
    """
    root = st.lab_dir(lab) if lab else st.LAB_ROOT
    # Processes still running from the lab's directories (nspawn of a half-recorded node...).
    for pid in _pids_using(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if lab is not None and (root / "nodes").is_dir():
        for ndir in (root / "nodes").iterdir():
            _forget_nspawn(f"{lab}-{ndir.name}", ndir / "root")
    for mp in _mounts_under(root):
        _umount(Path(mp))
    for hierarchy in node_hierarchies():
        if (hierarchy / CGROUP_DIR).is_dir():
            for cg in (hierarchy / CGROUP_DIR).iterdir():
                if cg.is_dir() and (lab is None or cg.name.startswith(f"{lab}-")):
                    prune_cgroup(cg)
    ns_prefix = net.netns_name(lab, "") if lab else net.NETNS_PREFIX
    if Path("/run/netns").exists():
        for ns in sorted(os.listdir("/run/netns")):
            if ns.startswith(ns_prefix):
                for pid in _pids_in_netns(ns):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                run(["ip", "netns", "del", ns], check=False)
    link_prefix = f"{net.LINK_PREFIX}{net.short_hash(lab)}" if lab else None
    for link in sorted(os.listdir("/sys/class/net")):
        if link_prefix is not None:
            mine = link == link_prefix or (link.startswith(link_prefix) and link[len(link_prefix) :][:1] in "nd")
        else:
            mine = _is_lab_link(link)
        if mine:
            run(["ip", "link", "del", link], check=False)
    rules = run(["iptables", "-w", "-S", "FORWARD"], check=False).stdout.splitlines()
    for r in rules:
        if not r.startswith("-A "):
            continue
        words = shlex.split(r)
        tags = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--comment"]
        if any(t == f"piprov-lab:{lab}" if lab else t.startswith("piprov-lab:") for t in tags):
            run(["iptables", "-w", "-D", *words[1:]], check=False)


def _forget_nspawn(machine: str, root: Path) -> None:
    """Remove what a SIGKILLed systemd-nspawn leaves in /run: its image lock and propagate dir."""
    try:
        st_ = os.stat(root)  # the overlay while mounted: that is what nspawn locked
        Path(f"/run/systemd/nspawn/locks/inode-{st_.st_dev}:{st_.st_ino}").unlink(missing_ok=True)
    except OSError:
        pass
    try:
        (Path("/run/systemd/nspawn/propagate") / machine).rmdir()
    except OSError:
        pass


def _is_lab_link(link: str) -> bool:
    p = net.LINK_PREFIX
    if not link.startswith(p) or len(link) < len(p) + 6:
        return False
    h, rest = link[len(p) : len(p) + 6], link[len(p) + 6 :]
    return all(c in "0123456789abcdef" for c in h) and (rest == "" or (rest[0] in "nd" and rest[1:].isdigit()))


def _pids_using(root: Path) -> Iterable[int]:
    """Processes whose command line mentions a path under ``root`` (nspawn -D, registry...)."""
    me = os.getpid()
    needle = str(root).encode()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == me:
            continue
        try:
            cmdline = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if needle + b"/" in cmdline or cmdline.endswith(needle) or needle + b"\0" in cmdline:
            yield int(p.name)


def _pids_in_netns(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(x) for x in out.split() if x.isdigit()]
