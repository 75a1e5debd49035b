"""Planning the hostname: the files that carry it (edited, their other lines kept) and the running name."""

from __future__ import annotations

import hashlib

from piprov.errors import FactsError
from piprov.facts.model import OCCIDENTALIS, NodeFacts
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
    """Hostname ``name`` on the node now and after reboot; None when already so."""
    hypriot = facts.is_hypriot
    files: list[FileChange] = []
    # /etc/hosts first: once the name changes, sudo resolves it on every call.
    for change in (
        _edit(facts, "/etc/hosts", _set_hosts_line(_text_of(facts, "/etc/hosts"), name)),
        _edit(facts, "/etc/hostname", name + "\n"),
        _edit(facts, OCCIDENTALIS, _set_occidentalis_hostname(_text_of(facts, OCCIDENTALIS), name))
        if hypriot
        else None,
    ):
        if change is not None:
            files.append(change)
    running_differs = facts.hostname != name
    if not files and not running_differs:
        return None
    where = OCCIDENTALIS if hypriot else "hostnamectl"
    if running_differs:
        reason = f"hostname {facts.hostname} -> {name} (via {where})"
    else:
        reason = "hostname files out of date: " + ", ".join(f.path for f in files)
    return HostnameChange(
        old=facts.hostname,
        new=name,
        method="occidentalis" if hypriot else "hostnamectl",
        files=files,
        reason=reason,
        set_running=running_differs,
    )
