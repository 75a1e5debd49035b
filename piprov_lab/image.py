"""The node image: a Debian root that looks like a freshly flashed HypriotOS Pi.

One image per Debian release a node can run (``RELEASES``: bullseye, bookworm,
the default, and trixie; `lab up --os`). Each is built once with debootstrap
and cached under /var/cache/piprov-lab/ keyed by a hash of its recipe (release,
packages + every file and command below), so editing the recipe rebuilds it and
nothing else does. The build happens in a temporary
directory that is renamed into place only when complete, with a stamp file
written last: a directory without the stamp is a half-built cache and is
reported, never booted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from piprov_lab.errors import LabError
from piprov_lab.system import proc_start_time, require_tools, run

CACHE_ROOT = Path(os.environ.get("PIPROV_LAB_CACHE", "/var/cache/piprov-lab"))
STAMP = ".piprov-lab-complete"
SUITE = "bookworm"  # the default release: a lab without --os is what it always was
MIRROR = "http://deb.debian.org/debian"
PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "openssh-server", "iproute2", "iptables",
    "docker.io", "sudo", "avahi-daemon", "libnss-mdns", "ca-certificates", "procps",
]  # fmt: skip

# HypriotOS's device-init read /boot/occidentalis.txt at boot and applied it.
# Keeping 127.0.1.1 NAME in /etc/hosts matters: sudo resolves the hostname and
# stalls ~20 s when it does not resolve (no DNS answers on the lab, nor on many Pi LANs).
DEVICE_INIT = r"""#!/bin/sh
# device-init (as on HypriotOS): apply hostname= from /boot/occidentalis.txt.
set -eu
f=/boot/occidentalis.txt
[ -r "$f" ] || exit 0
name=$(sed -n 's/^[[:space:]]*hostname[[:space:]]*=[[:space:]]*//p' "$f" | tail -n 1 | tr -d "\"' \r\t")
[ -n "$name" ] || exit 0
printf '%s\n' "$name" > /etc/hostname.new && mv /etc/hostname.new /etc/hostname
if command -v hostname >/dev/null 2>&1; then hostname "$name"; else printf '%s' "$name" > /proc/sys/kernel/hostname; fi
if grep -q '^127\.0\.1\.1[[:space:]]' /etc/hosts; then
  sed "s/^127\.0\.1\.1[[:space:]].*/127.0.1.1\t$name/" /etc/hosts > /etc/hosts.new
else
  { cat /etc/hosts; printf '127.0.1.1\t%s\n' "$name"; } > /etc/hosts.new
fi
mv /etc/hosts.new /etc/hosts
"""

# HypriotOS 1.0-1.6 (`lab up --flavour hypriot-1x`): device-init read `hostname:` from
# /boot/device-init.yaml (hypriot/device-init cmd/root.go, the --config default) and, in
# cmd/hostname_set.go: wrote /etc/hostname WITHOUT a newline, put "127.0.0.1<TAB>NAME" after the
# "127.0.0.1<TAB>localhost" line of /etc/hosts (again at every boot: the file grows), ran
# `hostname NAME`, restarted avahi-daemon. Its unit (package/etc/systemd/system/device-init.service)
# ran late, after network-online.target, from multi-user.target. Written into the node, not the image.
DEVICE_INIT_1X = r"""#!/bin/sh
# device-init as on HypriotOS 1.x: the hostname from /boot/device-init.yaml.
set -eu
f=/boot/device-init.yaml
[ -r "$f" ] || exit 0
name=$(sed -n 's/^hostname[[:space:]]*:[[:space:]]*//p' "$f" | sed 's/[[:space:]]#.*//' | tail -n 1 | tr -d "\"' \r\t")
[ -n "$name" ] || exit 0
printf '%s' "$name" > /etc/hostname
awk -v n="$name" '{ print } index($0, "127.0.0.1\tlocalhost") { print "127.0.0.1\t" n }' /etc/hosts > /etc/hosts.new
mv /etc/hosts.new /etc/hosts
hostname "$name"
systemctl restart avahi-daemon || true
"""

DEVICE_INIT_1X_UNIT = """[Unit]
Description=device-init
Wants=network-online.target
After=network.target network-online.target

[Service]
ExecStart=/usr/local/sbin/device-init
Type=oneshot

[Install]
WantedBy=multi-user.target
"""

# A fresh HypriotOS 1.x card's /boot/device-init.yaml (hypriot/device-init README: its hostname key).
DEVICE_INIT_YAML = """# hostname for your Hypriot Raspberry Pi:
hostname: "black-pearl"

# optional wireless network settings:
#wifi:
#  interfaces:
#    wlan0:
#      ssid: "MyNetwork"
#      password: "secret_password"
"""

DEVICE_INIT_UNIT = """[Unit]
Description=HypriotOS device-init: hostname from /boot/occidentalis.txt
DefaultDependencies=no
After=local-fs.target
Before=avahi-daemon.service ssh.service network-pre.target sysinit.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/device-init

[Install]
WantedBy=sysinit.target
"""

# Raspberry Pi OS Bookworm (`lab up --flavour raspios`; sources in piprov_lab/README.md). The FAT
# partition is mounted at /boot/firmware (pi-gen stage1/01-sys-tweaks/files/fstab); cmdline.txt as
# a card has it after its first boot (the firstboot init= removed), with no cgroup_enable=memory.
RASPIOS_CMDLINE = ("console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 "
                   "fsck.repair=yes rootwait quiet splash plymouth.ignore-serial-consoles\n")
RASPIOS_CONFIG = """# For more options and information see
# http://rptl.io/configtxt
# Some settings may impact device functionality. See link above for details

# Enable audio (loads snd_bcm2835)
dtparam=audio=on

# Automatically load overlays for detected cameras
camera_auto_detect=1

# Automatically load overlays for detected DSI displays
display_auto_detect=1

# Automatically load initramfs files, if found
auto_initramfs=1

# Enable DRM VC4 V3D driver
dtoverlay=vc4-kms-v3d
max_framebuffers=2

# Don't have the firmware create an initial video= setting in cmdline.txt.
# Use the kernel's default instead.
disable_fw_kms_setup=1

# Run in 64-bit mode
arm_64bit=1

# Disable compensation for displays with overscan
disable_overscan=1

# Run as fast as firmware / board allows
arm_boost=1

[cm4]
# Enable host mode on the 2711 built-in XHCI USB controller.
# This line should be removed if the legacy DWC2 controller is required
# (e.g. for USB device mode) or if USB support is not required.
otg_mode=1

[all]
"""
# What Bookworm leaves at the old paths (pi-gen stage1/00-boot-files/00-run.sh, since the
# 2024-03-12 images; symlinks before), so nobody edits a file the firmware no longer reads.
RASPIOS_BOOT_STUB = "DO NOT EDIT THIS FILE\n\nThe file you are looking for has moved to /boot/firmware/{name}\n"
RASPIOS_ISSUE = "Raspberry Pi reference 2024-11-19\nGenerated using pi-gen, https://github.com/RPi-Distro/pi-gen\n"

# nspawn mounts the cgroup v1 controllers read-only; dockerd must create
# cgroups in each of them. Flipping the per-mount read-only flag in place
# (bind remount) leaves no moment without the mount, so units starting in
# parallel never see an empty /sys/fs/cgroup/<controller>; umount + mount is
# the fallback. The named systemd hierarchy is left as nspawn set it.
CGROUP_RW = r"""#!/bin/sh
# Make each cgroup v1 controller read-write so docker can create cgroups.
set -eu
awk '$3 == "cgroup" { print $2, $4 }' /proc/self/mounts | while read -r mp opts; do
  case ",$opts," in *,name=*) continue ;; *,ro,*) ;; *) continue ;; esac
  mount -o remount,bind,rw "$mp" 2>/dev/null && continue
  ctrls=$(printf '%s' "$opts" | tr ',' '\n' | grep -v -E '^(ro|rw|nosuid|nodev|noexec|relatime|noatime)$' | paste -sd, -)
  umount -l "$mp"
  mount -t cgroup -o "rw,nosuid,nodev,noexec,$ctrls" cgroup "$mp"
done
"""

CGROUP_RW_UNIT = """[Unit]
Description=Make cgroup v1 controllers writable for docker (virtual Pi lab)
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target docker.service docker-bootstrap.service containerd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/cgroup-rw

[Install]
WantedBy=sysinit.target multi-user.target
"""

# With accounting on, the node's systemd puts every unit into the (then
# read-only) controller hierarchies; once cgroup-rw flips them, units starting
# in that instant fail at step CGROUP. The node needs no per-unit accounting:
# only docker uses the controllers.
SYSTEM_CONF = """[Manager]
DefaultCPUAccounting=no
DefaultIOAccounting=no
DefaultBlockIOAccounting=no
DefaultMemoryAccounting=no
DefaultTasksAccounting=no
"""

SSHD_CONF = """# virtual Pi lab: one host key per node (generated by the lab), passwords allowed as on HypriotOS
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication yes
UseDNS no
"""

OCCIDENTALIS = """# HypriotOS device configuration, applied at boot by device-init
hostname=black-pearl
"""

HOSTS = """127.0.0.1\tlocalhost
127.0.1.1\tblack-pearl
::1\tlocalhost ip6-localhost ip6-loopback
"""

# Runs inside the fresh root (chroot). Everything a node must share lives here.
CUSTOMIZE = r"""set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
echo black-pearl > /etc/hostname
useradd -m -s /bin/bash -G sudo,docker pirate
echo 'pirate:hypriot' | chpasswd
echo 'pirate ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/010_pirate-nopasswd
chmod 0440 /etc/sudoers.d/010_pirate-nopasswd
sed -i 's/^#\?publish-workstation=.*/publish-workstation=yes/' /etc/avahi/avahi-daemon.conf
# avahi breaks simultaneous-probe ties record by record: nodes booted in the
# same instant can each win one of A/AAAA and lose the other, and then rename
# in lockstep (black-pearl-16 on every node, seen by the discovery tests). Real
# Pis are not powered on in the same millisecond; with IPv4-only mDNS the
# tie-break has one record to compare (no AAAA, not even over IPv4).
sed -i -e 's/^#\?use-ipv6=.*/use-ipv6=no/' -e 's/^#\?publish-aaaa-on-ipv4=.*/publish-aaaa-on-ipv4=no/' \
  /etc/avahi/avahi-daemon.conf
cp /usr/share/doc/avahi-daemon/examples/ssh.service /etc/avahi/services/ssh.service
rm -f /etc/ssh/ssh_host_*
chmod 0755 /usr/local/sbin/device-init /usr/local/sbin/cgroup-rw
systemctl enable device-init.service cgroup-rw.service
# piprov installs and starts its own docker units; the package's must stay off.
systemctl disable docker.service docker.socket containerd.service
systemctl mask containerd.service
systemctl mask console-getty.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
  e2scrub_reap.service fstrim.timer systemd-networkd-wait-online.service
mkdir -p /var/lib/docker /var/lib/docker-bootstrap
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
printf '# the lab has no DNS server: names come from /etc/hosts and mDNS\n' > /etc/resolv.conf
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log
if command -v python3 >/dev/null 2>&1; then echo 'python3 got into the node image' >&2; exit 1; fi
"""

FILES: dict[str, tuple[str, int]] = {
    "/usr/local/sbin/device-init": (DEVICE_INIT, 0o755),
    "/etc/systemd/system/device-init.service": (DEVICE_INIT_UNIT, 0o644),
    "/usr/local/sbin/cgroup-rw": (CGROUP_RW, 0o755),
    "/etc/systemd/system/cgroup-rw.service": (CGROUP_RW_UNIT, 0o644),
    "/etc/ssh/sshd_config.d/piprov-lab.conf": (SSHD_CONF, 0o644),
    "/etc/systemd/system.conf.d/piprov-lab.conf": (SYSTEM_CONF, 0o644),
    "/boot/occidentalis.txt": (OCCIDENTALIS, 0o644),
    "/etc/hosts": (HOSTS, 0o644),
}

# docker 20.10 asks runc for every capability for a --privileged container, and
# this machine's capability bounding set lacks CAP_SYS_RESOURCE, so runc fails
# ("unable to apply caps"). Both docker daemons read /etc/docker/daemon.json and
# use this wrapper, which drops that one capability (piprov_lab/images/node/).
_NODE_FILES = Path(__file__).resolve().parent / "images" / "node"
FILES["/usr/local/bin/runc-lab"] = ((_NODE_FILES / "runc-lab").read_text(), 0o755)
FILES["/etc/docker/daemon.json"] = ((_NODE_FILES / "daemon.json").read_text(), 0o644)

# Under heavy load on this machine, systemd-user-sessions.service sometimes fails
# at boot (219/CGROUP); it is what removes /run/nologin, which systemd-tmpfiles
# creates early in boot, and while that file exists PAM refuses every SSH login.
# The lab retries the service instead of leaving a node unreachable for good.
FILES["/etc/systemd/system/systemd-user-sessions.service.d/piprov-lab.conf"] = (
    "[Service]\nRestart=on-failure\nRestartSec=1\n", 0o644)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Release:
    """A Debian release a node can run: what its image is built from and how it boots."""

    suite: str
    version: str  # Debian's number, as /etc/debian_version starts
    packages: tuple[str, ...] = tuple(PACKAGES)
    customize: str = CUSTOMIZE
    # Arguments for the node's systemd (PID 1), which in a container reads them as its
    # kernel command line (proc_cmdline() reads PID 1's argv there, not /proc/cmdline).
    init_args: tuple[str, ...] = ()


# The same package names in all three (debootstrap resolves --include against each
# release's own Packages index and fails on a name the release lacks); trixie needs two more.
RELEASES: dict[str, Release] = {
    "bullseye": Release("bullseye", "11"),
    "bookworm": Release("bookworm", "12"),
    "trixie": Release(
        "trixie", "13",
        # docker.io 26 left the client to a package of its own, docker-cli, which docker.io
        # only Recommends (apt installs it, debootstrap does not): a node without it has
        # dockerd but no `docker`. systemd 257 dlopen()s libkmod (kmod, Priority: important,
        # which minbase leaves out) and systemd-modules-load fails without it; Pi OS has it.
        packages=(*PACKAGES, "docker-cli", "kmod"),
        # systemd 256+ refuses to boot on cgroup v1 unless SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1
        # is on its command line (systemd v256 NEWS: cgroup v1 "obsolete"; 258 removed it);
        # this machine mounts only v1 hierarchies, which nspawn gives the node.
        init_args=("SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1",),
    ),
}  # fmt: skip


NO_PYTHON = "if command -v python3 >/dev/null 2>&1; then echo 'python3 got into the node image' >&2; exit 1; fi\n"
assert NO_PYTHON in CUSTOMIZE
# The image of a HypriotOS 1.7-1.12 card (`lab up --flavour hypriot-cloud-init`): the release's, plus
# Debian's cloud-init (which brings python3, as it did to HypriotOS) and NoCloud's seed pointed at
# the FAT /boot as HypriotOS v1.7.0 did it (image-builder-rpi builder/chroot-script.sh:196-202;
# `datasource_list: [ NoCloud ]` as in its v1.11.0 builder/files/etc/cloud/cloud.cfg:24).
# One lab deviation: cloud-init keeps the node's host key (ssh_deletekeys false, no new keys),
# so the key the lab pinned when it made the card stays the card's key.
CLOUD_INIT = "cloud-init"
# A fresh HypriotOS 1.x cloud-init card's /boot/user-data (image-builder-rpi v1.7.0
# builder/files/boot/user-data, the same in v1.12.3 but for the `input` group) and its meta-data
# (`instance-id: pirate001` from commit af40e6c, first in v1.8.1; empty before).
HYPRIOT_USER_DATA = """#cloud-config
# vim: syntax=yaml
#

# Set your hostname here, the manage_etc_hosts will update the hosts file entries as well
hostname: black-pearl
manage_etc_hosts: true

# You could modify this for your own user information
users:
  - name: pirate
    gecos: "Hypriot Pirate"
    sudo: ALL=(ALL) NOPASSWD:ALL
    shell: /bin/bash
    groups: users,docker,video,input
    plain_text_passwd: hypriot
    lock_passwd: false
    ssh_pwauth: true
    chpasswd: { expire: false }

package_upgrade: false

runcmd:
  - 'systemctl restart avahi-daemon'
"""
HYPRIOT_META_DATA = "instance-id: pirate001\n"
CLOUD_INIT_CUSTOMIZE = r"""# cloud-init's locale module runs update-locale LANG=en_US.UTF-8, which fails (and cloud-init
# reports an error) unless that locale exists: HypriotOS images had it generated.
sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen && locale-gen
# cloud-init brings ifupdown, and its fallback config has networking.service run DHCP on eth0,
# which fails in the lab (the node's address comes with its network namespace): masked.
systemctl mask networking.service
mkdir -p /var/lib/cloud/seed/nocloud-net
ln -s /boot/user-data /var/lib/cloud/seed/nocloud-net/user-data
ln -s /boot/meta-data /var/lib/cloud/seed/nocloud-net/meta-data
cat > /etc/cloud/cloud.cfg.d/90-hypriot.cfg <<'EOF'
datasource_list: [ NoCloud ]
EOF
cat > /etc/cloud/cloud.cfg.d/99-piprov-lab.cfg <<'EOF'
# virtual Pi lab: keep the host key the lab pinned for this card
ssh_deletekeys: false
ssh_genkeytypes: []
EOF
"""


def image_name(release_: str, flavour: str) -> str:
    """The image a node of ``release_`` whose card holds ``flavour`` boots: the release's, or its cloud-init variant."""
    return f"{release_}+{CLOUD_INIT}" if flavour == "hypriot-cloud-init" else release_


def release(name: str) -> Release:
    """The release (or image: ``RELEASE+cloud-init``) called ``name``, or a LabError naming the ones there are."""
    suite, plus, variant = name.partition("+")
    try:
        r = RELEASES[suite]
    except KeyError:
        raise LabError(f"unknown Debian release {name!r} for a lab node",
                       hint=f"releases: {', '.join(RELEASES)}") from None
    if not plus:
        return r
    if variant != CLOUD_INIT:
        raise LabError(f"unknown image variant {variant!r} of {suite}", hint=f"variants: {CLOUD_INIT}")
    # python3-cryptography Depends on the virtual python3-cffi-backend-api-*, which debootstrap's
    # resolver cannot follow (python3-cryptography then fails to configure): named here.
    return replace(r, packages=(*r.packages, CLOUD_INIT, "python3-cffi-backend"),
                   customize=r.customize.replace(NO_PYTHON, CLOUD_INIT_CUSTOMIZE))


def init_args(name: str) -> list[str]:
    """What the node's systemd is started with, for a node running release ``name``."""
    return list(release(name).init_args)

# Files whose absence means the root is not a usable node image.
ESSENTIAL = ["usr/lib/systemd/systemd", "usr/sbin/sshd", "usr/sbin/dockerd", "usr/sbin/avahi-daemon"]


def recipe(os_: str = SUITE) -> dict[str, object]:
    # bookworm's is the recipe of before there were releases, key for key: its hash (so
    # the cached image) stayed what it was (tests/unit/test_lab_os.py pins it).
    r = release(os_)
    return {
        "suite": r.suite,
        "mirror": MIRROR,
        "variant": "minbase",
        "packages": list(r.packages),
        "files": {k: [v[0], v[1]] for k, v in sorted(FILES.items())},
        "customize": r.customize,
    }


def recipe_hash(os_: str = SUITE) -> str:
    blob = json.dumps(recipe(os_), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class BaseImage:
    root: Path
    built_now: bool
    build_seconds: float
    os: str = SUITE


def base_path(os_: str = SUITE) -> Path:
    return CACHE_ROOT / f"base-{recipe_hash(os_)}"


def check_complete(root: Path) -> None:
    """Raise LabError if ``root`` exists but is not a complete image."""
    missing = [p for p in ESSENTIAL if not (root / p).exists()]
    if not (root / STAMP).exists() or missing:
        what = f"{', '.join(missing)} missing" if missing else f"no {STAMP} stamp"
        raise LabError(
            f"the node image cache {root} is half-built ({what}); it will not be booted",
            hint=f"remove it (rm -rf {root}) and run `piprov lab up` again to rebuild it",
        )


def ensure_base(progress: Progress | None = None, os_: str = SUITE) -> BaseImage:
    """Return the cached base root of release ``os_``, building it first if the recipe changed."""
    suite = release(os_).suite
    root = base_path(os_)
    if root.exists():
        check_complete(root)
        return BaseImage(root, False, 0.0, os_)
    require_tools("debootstrap")
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    # Several labs may come up at once: one builds, the others wait for it.
    with open(CACHE_ROOT / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if root.exists():
            check_complete(root)
            return BaseImage(root, False, 0.0, os_)
        _remove_stale_builds()
        t0 = time.monotonic()
        if progress:
            progress(f"building the node image (debootstrap {suite}, once; ~1 min) into {root}")
        tmp = CACHE_ROOT / f".build-{recipe_hash(os_)}-{os.getpid()}-{proc_start_time(os.getpid())}"
        try:
            _build(tmp, release(os_))
            (tmp / STAMP).write_text(json.dumps(recipe(os_), sort_keys=True, indent=1))
            os.rename(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return BaseImage(root, True, time.monotonic() - t0, os_)


def _remove_stale_builds() -> None:
    # A build dir whose builder process is gone was never renamed into place,
    # so nothing uses it: remove it rather than asking the user to.
    for d in CACHE_ROOT.glob(".build-*"):
        parts = d.name.split("-")
        try:
            pid, start = int(parts[2]), int(parts[3])
        except (IndexError, ValueError):
            continue
        if proc_start_time(pid) != start:
            shutil.rmtree(d, ignore_errors=True)


def _build(tmp: Path, r: Release) -> None:
    debs = CACHE_ROOT / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    run(
        [
            "debootstrap", "--variant=minbase", f"--cache-dir={debs}",
            f"--include={','.join(r.packages)}", r.suite, str(tmp), MIRROR,
        ],
        timeout=1800,
    )  # fmt: skip
    for path, (content, mode) in FILES.items():
        dest = tmp / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(content)
        dest.chmod(mode)
    run(["chroot", str(tmp), "/bin/sh", "-c", r.customize], timeout=600)
    missing = [p for p in ESSENTIAL if not (tmp / p).exists()]
    if missing:
        raise LabError(f"the node image build produced no {', '.join(missing)}")


def remove_outdated(keep: set[str]) -> list[Path]:
    """Remove base images of older recipes that no running lab uses (440+ MB each)."""
    removed: list[Path] = []
    current = {base_path(i) for r in RELEASES for i in (r, f"{r}+{CLOUD_INIT}")}
    for d in CACHE_ROOT.glob("base-*"):
        if d not in current and str(d) not in keep:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed
