"""Planning the hostname: the files that carry it (edited, their other lines kept) and the running name."""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from piprov.errors import FactsError
from piprov.facts.model import CLOUD_INIT_CACHE, CLOUD_INIT_USER_DATA, DEVICE_INIT, OCCIDENTALIS, NodeFacts
from piprov.plan.files import unified_diff
from piprov.plan.model import FileChange, HostnameChange


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _set_hosts_line(text: str, name: str) -> str:
    """/etc/hosts with ``127.0.1.1 name`` (the Debian convention), other lines kept."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        fields = line.split("#", 1)[0].split()
        if fields and fields[0] == "127.0.1.1":
            if name in fields[1:]:
                return text
            lines[i] = f"127.0.1.1\t{name}"
            return "\n".join(lines) + "\n"
    return text + ("" if text.endswith("\n") or not text else "\n") + f"127.0.1.1\t{name}\n"


def _set_occidentalis_hostname(text: str, name: str) -> str:
    """occidentalis.txt with ``hostname=name``, its other lines kept."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        key, sep, value = line.partition("=")
        if sep and key.strip() == "hostname":
            if value.strip() == name:
                return text
            lines[i] = f"hostname={name}"
            return "\n".join(lines) + "\n"
    return text + ("" if text.endswith("\n") or not text else "\n") + f"hostname={name}\n"


_YAML_HOSTNAME = re.compile(r"^hostname[ \t]*:(.*)$")


def _set_device_init_hostname(text: str, name: str, quote: str = '"') -> str:
    """device-init.yaml with ``hostname: "name"``, its other lines kept (a line edit: the file is the
    user's, comments and all). Only a top-level key counts: device-init reads the top-level one."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _YAML_HOSTNAME.match(line)
        if m is None:
            continue
        value, hash_, comment = m.group(1).partition(" #")
        if value.strip().strip("\"'") == name:
            return text
        lines[i] = f"hostname: {quote}{name}{quote}" + (f"  #{comment}" if hash_ else "")
        return "\n".join(lines) + "\n"
    return text + ("" if text.endswith("\n") or not text else "\n") + f"hostname: {quote}{name}{quote}\n"


def _set_user_data_hostname(text: str, name: str) -> str:
    """cloud-init user-data with its top-level ``hostname:`` set (HypriotOS's is unquoted).

    cloud-init reads it at every boot: update_etc_hosts renders /etc/hosts from it
    (``manage_etc_hosts: true``, frequency always: cloudinit/config/cc_update_etc_hosts.py),
    so a name kept only in /etc/hostname would lose its /etc/hosts line at each boot."""
    return _set_device_init_hostname(text, name, quote="")


def _cloud_config_names_host(facts: NodeFacts, path: str) -> bool:
    """A #cloud-config user-data whose top-level hostname: cloud-init applies (one without the key
    leaves the name to the datasource and the system: nothing of it to edit)."""
    f = facts.file(path)
    text = f.text if f.exists else None
    return bool(text and text.startswith("#cloud-config")
                and any(_YAML_HOSTNAME.match(line) for line in text.splitlines()))


def _edit(facts: NodeFacts, path: str, new_text: str, *, default_mode: int = 0o644) -> FileChange | None:
    current = facts.file(path)
    new = new_text.encode("utf-8")
    if current.exists and current.sha256 == _sha(new):
        return None
    # Keep the file's own mode and owner: /boot is FAT on a Pi, where chmod fails.
    mode = current.mode if current.exists and current.mode is not None else default_mode
    owner = current.owner if current.exists and current.owner else "root"
    group = current.group if current.exists and current.group else "root"
    return FileChange(
        path=path,
        content=new,
        mode=mode,
        owner=owner,
        group=group,
        old_sha256=current.sha256 if current.exists else None,
        new_sha256=_sha(new),
        diff=unified_diff(path, current.content if current.exists else None, new, current.size),
        reason="new file" if not current.exists else "content differs",
        component="hostname",
    )


def _text_of(facts: NodeFacts, path: str) -> str:
    f = facts.file(path)
    if not f.exists:
        return ""
    if f.text is None:
        raise FactsError(
            f"cannot edit {path}: it is larger than the facts limit or not UTF-8 text", host=facts.host
        )
    return f.text


def _hostname_file(facts: NodeFacts, name: str) -> FileChange | None:
    """/etc/hostname naming ``name``. A file that already does, short of its newline, is left alone:
    HypriotOS 1.x's device-init rewrites it at every boot without one (hypriot/device-init
    cmd/hostname_set.go: ``ioutil.WriteFile("/etc/hostname", []byte(hostname), 0644)``), and
    rewriting it back would make every plan after a reboot a change."""
    current = facts.file("/etc/hostname")
    if current.exists and current.text is not None and current.text.strip() == name:
        return None
    return _edit(facts, "/etc/hostname", name + "\n")


def os_default_hostname(facts: NodeFacts) -> str | None:
    """The name a freshly flashed card of the node's OS has (`piprov reset --hostname`); None: not known.

    HypriotOS: ``black-pearl`` on every fresh image, in /boot/occidentalis.txt
    ("the default hostname is black-pearl for all freshly booted Hypriot
    images", dduportal/rpi-utils documentation/rpi-config.md; the cloud-init
    images' user-data says ``hostname: black-pearl`` too, hypriot's
    image-builder-rpi README). Raspbian / Raspberry Pi OS: ``raspberrypi``
    (RPi-Distro/pi-gen build.sh: ``TARGET_HOSTNAME=${TARGET_HOSTNAME:-raspberrypi}``).
    """
    if facts.is_hypriot:
        return "black-pearl"
    if facts.os_id == "raspbian":
        return "raspberrypi"
    return None


def plan_hostname(name: str, facts: NodeFacts) -> HostnameChange | None:
    """Hostname ``name`` on the node now and after reboot; None when already so.

    The name after a reboot is the one the node's boot applies: HypriotOS's device-init reads
    /boot/occidentalis.txt (2015-16 images) or /boot/device-init.yaml (1.0-1.6), and would put the old
    name back from either; cloud-init cards (HypriotOS 1.7-1.12, Raspberry Pi OS since cloud-init)
    keep it in user-data's ``hostname:``. Every one of those the node has is edited. Elsewhere hostnamectl."""
    boot = [(path, edit) for path, edit in ((OCCIDENTALIS, _set_occidentalis_hostname),
                                            (DEVICE_INIT, _set_device_init_hostname))
            if facts.file(path).exists]
    boot += [(path, _set_user_data_hostname) for path in CLOUD_INIT_USER_DATA if _cloud_config_names_host(facts, path)]
    files: list[FileChange] = []
    # /etc/hosts first: once the name changes, sudo resolves it on every call.
    for change in (
        _edit(facts, "/etc/hosts", _set_hosts_line(_text_of(facts, "/etc/hosts"), name)),
        _hostname_file(facts, name),
        *(_edit(facts, path, edit(_text_of(facts, path), name)) for path, edit in boot),
    ):
        if change is not None:
            files.append(change)
    running_differs = facts.hostname != name
    if not files and not running_differs:
        return None
    paths = [path for path, _ in boot]
    where = " and ".join(paths) or "hostnamectl"
    if running_differs:
        reason = f"hostname {facts.hostname} -> {name} (via {where})"
    else:
        reason = "hostname files out of date: " + ", ".join(f.path for f in files)
    method: Literal["occidentalis", "device-init", "cloud-init", "hostnamectl"] = (
        "device-init" if DEVICE_INIT in paths else "occidentalis" if OCCIDENTALIS in paths
        else "cloud-init" if paths else "hostnamectl")
    return HostnameChange(
        old=facts.hostname,
        new=name,
        method=method,
        files=files,
        reason=reason,
        set_running=running_differs,
        stale_caches=(CLOUD_INIT_CACHE,) if any(f.path in CLOUD_INIT_USER_DATA for f in files) else (),
    )
