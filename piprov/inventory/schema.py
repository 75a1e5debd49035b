"""The inventory's schema, as data: the validator walks it, `inventory set` uses it
to know what type a value on the command line should have.

Each value check returns None if the value is fine, else a message for the user.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Callable

from piprov.inventory.model import ARCH_MAP, SPAN_RE

Check = Callable[[Any], "str | None"]

_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_REGISTRY_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._/-][a-z0-9]+)*)?$")
_HOSTPORT_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?:[0-9]{1,5}$")
_REPO_RE = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# An image's name (``images.<name>``): which names exist is the playbooks' business
# (graph.image_names); the inventory only knows what one looks like.
IMAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_LABEL_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

HOST_KEY_POLICIES = ("strict", "tofu")
ROLES = ("master", "worker")
FLANNEL_BACKENDS = ("host-gw", "vxlan", "udp")
IMAGE_ARCHES = tuple(sorted(set(ARCH_MAP.values())))


def is_hostname_label(name: str) -> bool:
    """RFC 1123 host name label: letters, digits, hyphens; 1-63 chars; no hyphen at either end."""
    return bool(_LABEL_RE.match(name))


def _hostname(v: Any) -> str | None:
    if not is_hostname_label(v):
        return (
            f"{v!r} is not a valid host name: use 1-63 letters, digits and hyphens, "
            "not starting or ending with a hyphen (RFC 1123)"
        )
    return None


def _ip(v: Any) -> str | None:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return f"{v!r} is not a valid IP address"
    return None


def _port(v: Any) -> str | None:
    return None if 1 <= v <= 65535 else f"{v} is not a valid port (1-65535)"


def _choice(options: tuple[str, ...]) -> Check:
    def check(v: Any) -> str | None:
        if v in options:
            return None
        return f"{v!r} is not one of {', '.join(options)}{_did_you_mean(v, options)}"

    return check


def _regex(rx: re.Pattern[str], what: str) -> Check:
    def check(v: Any) -> str | None:
        return None if rx.match(v) else f"{v!r} is not a valid {what}"

    return check


def _positive_timeout(v: Any) -> str | None:
    return None if 0 < v <= 600 else f"{v} is not a sensible timeout (0 < seconds <= 600)"


def _cidr(v: Any) -> str | None:
    try:
        net = ipaddress.IPv4Network(v, strict=True)
    except ValueError as e:
        return f"{v!r} is not a valid IPv4 network in CIDR form (e.g. 10.0.0.0/16): {e}"
    if net.prefixlen > 28:
        return f"{v} is too small for a pod network (prefix /{net.prefixlen}; use /28 or larger)"
    return None


def _subnet_len(v: Any) -> str | None:
    return None if 8 <= v <= 30 else f"{v} is not a usable per-node subnet length (8-30)"


def _mtu(v: Any) -> str | None:
    return None if 576 <= v <= 9000 else f"{v} is not a sensible MTU (576-9000)"


def _mac(v: Any) -> str | None:
    return None if _MAC_RE.match(v) else f"{v!r} is not a MAC address like b8:27:eb:12:34:56 (lower case)"


def _tag(v: Any) -> str | None:
    return None if _TAG_RE.match(v) else f"{v!r} is not a valid image tag"


# ProxyJump's form (ssh_config(5)): [user@]host[:port]; host may be an inventory
# node's name or an ssh_config alias. One hop: a comma would make a chain.
_PROXY_JUMP_RE = re.compile(r"^([a-z_][a-z0-9_-]{0,31}@)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$")


def _proxy_jump(v: Any) -> str | None:
    if "," in v:
        return f"{v!r} is a chain of jump hosts; piprov goes through one jump host"
    if not _PROXY_JUMP_RE.match(v):
        return f"{v!r} is not a jump host like bastion, pirate@10.0.0.5 or pirate@gw.example:2222"
    port = v.rpartition(":")[2] if ":" in v else ""
    return _port(int(port)) if port else None


# A calendar event the oldest supported systemd (215) parses (systemd.time(7)): the
# shorthands of its NEWS ("CHANGES WITH 197": calendar timers; "minutely",
# "quarterly" and "semi-annually" only from 217: "CHANGES WITH 217"), or
# [WEEKDAYS ]DATE[ TIME] / [WEEKDAYS ]TIME with each field *, N, N/STEP or a list.
_CAL_SHORT = ("hourly", "daily", "weekly", "monthly", "yearly", "annually")
_CAL_LATER = ("minutely", "quarterly", "semi-annually", "semiannually")
_F = r"(\*|\d+(/\d+)?)(,\d+(/\d+)?)*"
_CAL_RE = re.compile(rf"^((Mon|Tue|Wed|Thu|Fri|Sat|Sun)(,(Mon|Tue|Wed|Thu|Fri|Sat|Sun))* )?"
                     rf"(({_F}-{_F}-{_F})( {_F}:{_F}(:{_F})?)?|{_F}:{_F}(:{_F})?)$")


def backup_every(v: Any) -> str | None:
    """``backup.every``: a time span (6h, 1h 30min) or a calendar event systemd 215 parses."""
    if SPAN_RE.match(v):
        return None if any(c.isdigit() and c != "0" for c in v) else f"{v!r} is a zero time span"
    if v in _CAL_SHORT or _CAL_RE.match(v):
        return None
    if v in _CAL_LATER:
        return f"{v!r} needs systemd 217 (the oldest piprov supports is 215): use {', '.join(_CAL_SHORT)}"
    return (f"{v!r} is neither a time span (6h, 1h 30min, 2d) nor a calendar event "
            f"({', '.join(_CAL_SHORT)}, '*-*-* 03:00', 'Mon,Thu *-*-* 02:30:00')")


def _keep(v: Any) -> str | None:
    return None if 1 <= v <= 1000 else f"{v} is not a number of backups to keep (1-1000)"


def _non_empty(v: Any) -> str | None:
    return None if v.strip() else "must not be empty"


def _did_you_mean(word: Any, options: Any) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# ---------------------------------------------------------------------------
# The schema, as data: the validator walks it, `inventory set` uses it to know
# what type a value on the command line should have.


@dataclasses.dataclass(frozen=True)
class Field:
    kind: str  # str | int | number | bool | map | list | dict (free keys)
    required: bool = False
    nullable: bool = False
    check: Check | None = None
    fields: Mapping[str, "Field"] | None = None  # kind == "map"
    items: "Field | None" = None  # kind == "list" or "dict" (values)
    key_check: Check | None = None  # kind == "dict"
    hint: str | None = None
    # kind == "map": keys outside ``fields`` that match ``extra_key`` are ``extra``
    # (``extra_what`` says what they are, for the unknown-key hint).
    extra_key: "re.Pattern[str] | None" = None
    extra: "Field | None" = None
    extra_what: str = ""

    def sub(self, key: str) -> "Field | None":
        """The field for ``key`` of this map (a fixed one, else an ``extra`` one), None if unknown."""
        f = (self.fields or {}).get(key)
        if f is None and self.extra_key is not None and self.extra_key.match(key):
            return self.extra
        return f


def _ssh_fields(top_level: bool) -> dict[str, Field]:
    f = {
        "user": Field("str", check=_regex(_USER_RE, "user name")),
        "port": Field("int", check=_port),
        "identity_file": Field("str", check=_non_empty),
        "host_key_policy": Field("str", check=_choice(HOST_KEY_POLICIES)),
        "connect_timeout": Field("number", check=_positive_timeout),
        "proxy_jump": Field("str", nullable=True, check=_proxy_jump,
                            hint="an inventory node's name, an ssh_config Host alias or [user@]host[:port]"),
    }
    if top_level:
        f["known_hosts"] = Field("str", check=_non_empty)
    return f


_IMAGE_SPEC = Field(
    "map",
    fields={
        "repository": Field("str", required=True, check=_regex(_REPO_RE, "image repository")),
        "tag": Field("str", required=True, check=_tag, hint='quote tags that look like numbers, e.g. tag: "2.0"'),
    },
)


@functools.lru_cache(maxsize=1)
def schema() -> Field:
    """The inventory schema."""
    return Field(
        "map",
        fields={
            "cluster": Field(
                "map",
                required=True,
                fields={"name": Field("str", required=True, check=_hostname),
                        "pki_dir": Field("str", check=_non_empty,
                                         hint="where the cluster's CA and certificates live on this machine")},
            ),
            "ssh": Field("map", nullable=True, fields=_ssh_fields(True)),
            "images": _IMAGES,
            "network": _NETWORK,
            "nodes": _NODES,
            "backup": Field(
                "map",
                nullable=True,
                fields={"every": Field("str", required=True, check=backup_every,
                                       hint="a time span like 6h, or a systemd calendar event like daily"),
                        "keep": Field("int", required=True, check=_keep)},
            ),
        },
    )


_IMAGE_NAMES = "an image name (lower-case letters, digits, hyphens)"

# ``images.<name>`` for any well-formed name: the names the playbooks run are
# checked where the graph is at hand (validate.check_images).
_IMAGES = Field(
    "map",
    nullable=True,
    fields={
        "registry": Field("str", check=_regex(_REGISTRY_RE, "registry (host[:port][/path])")),
        "insecure_registries": Field(
            "list", nullable=True, items=Field("str", check=_regex(_HOSTPORT_RE, "registry address (host:port)"))
        ),
        "arch_overrides": Field(
            "dict",
            nullable=True,
            key_check=_choice(IMAGE_ARCHES),
            items=Field("map", fields={}, extra_key=IMAGE_NAME_RE, extra=_IMAGE_SPEC, extra_what=_IMAGE_NAMES),
        ),
    },
    extra_key=IMAGE_NAME_RE,
    extra=_IMAGE_SPEC,
    extra_what=_IMAGE_NAMES,
)


_NETWORK = Field(
    "map",
    nullable=True,
    fields={
        "flannel_network": Field("str", check=_cidr),
        "flannel_subnet_len": Field("int", check=_subnet_len),
        "flannel_backend": Field("str", check=_choice(FLANNEL_BACKENDS)),
        "mtu": Field("int", nullable=True, check=_mtu),
        "etcd_port": Field("int", check=_port),
        "apiserver_port": Field("int", check=_port),
        "apiserver_secure_port": Field("int", check=_port),
    },
)

_NODES = Field(
    "list",
    required=True,
    items=Field(
        "map",
        fields={
            "name": Field("str", required=True, check=_hostname),
            "address": Field("str", required=True, check=_ip),
            "role": Field("str", required=True, check=_choice(ROLES)),
            "arch": Field("str", check=_choice(tuple(sorted(ARCH_MAP)))),
            "mac": Field("str", check=_mac),
            "labels": Field(
                "dict",
                nullable=True,
                key_check=_regex(_LABEL_KEY_RE, "Kubernetes label key"),
                items=Field("str", check=_regex(_LABEL_VALUE_RE, "Kubernetes label value")),
            ),
            "ssh": Field("map", nullable=True, fields=_ssh_fields(False)),
        },
    ),
)


def field_at(path: list[str]) -> Field | None:
    """The schema field for a dotted path (node names/list indexes stand for an item)."""
    f: Field | None = schema()
    for part in path:
        if f is None:
            return None
        if f.kind == "map":
            f = f.sub(part)
        elif f.kind in ("list", "dict"):
            f = f.items
        else:
            return None
    return f
