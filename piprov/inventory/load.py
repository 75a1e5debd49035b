"""Load and validate the inventory file.

The file is parsed with ruamel.yaml's round-trip loader, which keeps the line
and column of every key and value, so each problem can name file:line:column.
Validation walks the whole document and collects EVERY problem before raising
(one :class:`~piprov.errors.ProblemList`), so a user fixes a file in one pass.
Nothing here writes anything.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Sequence

from ruamel.yaml import YAML

from piprov.errors import InventoryError, Location, PiprovError, ProblemList
from piprov.inventory.model import (
    ARCH_MAP,
    ImageSettings,
    ImageSpec,
    Inventory,
    NetworkSettings,
    Node,
    SshSettings,
)

# ---------------------------------------------------------------------------
# Value checks: each returns None if fine, else a message for the user.

Check = Callable[[Any], "str | None"]

_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_REGISTRY_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._/-][a-z0-9]+)*)?$")
_HOSTPORT_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?:[0-9]{1,5}$")
_REPO_RE = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
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


def _ssh_fields(top_level: bool) -> dict[str, Field]:
    f = {
        "user": Field("str", check=_regex(_USER_RE, "user name")),
        "port": Field("int", check=_port),
        "identity_file": Field("str", check=_non_empty),
        "host_key_policy": Field("str", check=_choice(HOST_KEY_POLICIES)),
        "connect_timeout": Field("number", check=_positive_timeout),
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


def default_image_names() -> tuple[str, ...]:
    """The image names the default playbooks run (``images.<name>`` keys)."""
    from piprov.graph import default_image_names as names

    return names()


@functools.lru_cache(maxsize=8)
def schema(image_names: tuple[str, ...] | None = None) -> Field:
    """The inventory schema; ``images.<name>`` for each of ``image_names`` (default: the playbooks')."""
    names = default_image_names() if image_names is None else image_names
    return _schema(names)


def _schema(image_names: tuple[str, ...]) -> Field:
    return Field(
        "map",
        fields={
            "cluster": Field(
                "map",
                required=True,
                fields={"name": Field("str", required=True, check=_hostname)},
            ),
            "ssh": Field("map", nullable=True, fields=_ssh_fields(True)),
            "images": _images_field(image_names),
            "network": _NETWORK,
            "nodes": _NODES,
        },
    )


def _images_field(image_names: tuple[str, ...]) -> Field:
    return Field(
        "map",
        nullable=True,
        fields={
            "registry": Field("str", check=_regex(_REGISTRY_RE, "registry (host[:port][/path])")),
            "insecure_registries": Field(
                "list", nullable=True, items=Field("str", check=_regex(_HOSTPORT_RE, "registry address (host:port)"))
            ),
            **{c: _IMAGE_SPEC for c in image_names},
            "arch_overrides": Field(
                "dict",
                nullable=True,
                key_check=_choice(IMAGE_ARCHES),
                items=Field("map", fields={c: _IMAGE_SPEC for c in image_names}),
            ),
        },
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
            f = (f.fields or {}).get(part)
        elif f.kind in ("list", "dict"):
            f = f.items
        else:
            return None
    return f


# ---------------------------------------------------------------------------
# The walk


_KIND_NAMES = {
    "str": "a string",
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "map": "a mapping (key: value lines)",
    "dict": "a mapping (key: value lines)",
    "list": "a list (lines starting with '- ')",
}


def _type_ok(v: Any, kind: str) -> bool:
    if kind == "str":
        return isinstance(v, str)
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "bool":
        return isinstance(v, bool)
    if kind in ("map", "dict"):
        return isinstance(v, Mapping)
    if kind == "list":
        return isinstance(v, list)
    return False


def _type_name(v: Any) -> str:
    if v is None:
        return "empty"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, Mapping):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return f"a {type(v).__name__}"


Pos = tuple[int, int]  # 0-based line, column as ruamel keeps them


def _pos_of_key(container: Any, key: Any, default: Pos) -> Pos:
    try:
        line, col = container.lc.key(key)
        return (int(line), int(col))
    except Exception:  # merged keys (<<) and other exotic nodes keep no position
        return default


def _pos_of_value(container: Any, key: Any, default: Pos) -> Pos:
    try:
        lc: Any = container.lc
        line, col = lc.item(key) if isinstance(container, list) else lc.value(key)
        return (int(line), int(col))
    except Exception:
        return default


class _Validator:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[PiprovError] = []

    def add(self, pos: Pos, message: str, hint: str | None = None) -> None:
        loc = Location(self.file, pos[0] + 1, pos[1] + 1)
        self.problems.append(InventoryError(message, hint=hint, location=loc))

    def walk(self, v: Any, f: Field, pos: Pos, path: str) -> None:
        if v is None and f.nullable:
            return
        if not _type_ok(v, f.kind):
            hint = f.hint if f.kind == "str" and isinstance(v, (int, float)) else None
            if hint is None and f.kind == "str" and isinstance(v, (int, float, bool)):
                hint = "quote the value to make it a string"
            self.add(pos, f"{path} must be {_KIND_NAMES[f.kind]}, not {_type_name(v)}", hint)
            return
        if f.check is not None:
            msg = f.check(v)
            if msg:
                self.add(pos, f"{path}: {msg}", f.hint if f.kind != "str" else None)
        if f.kind == "map":
            self._walk_map(v, f, pos, path)
        elif f.kind == "dict":
            for k in v:
                kpos = _pos_of_key(v, k, pos)
                if not isinstance(k, str):
                    self.add(kpos, f"{path}: key {k!r} must be a string")
                    continue
                if f.key_check is not None:
                    msg = f.key_check(k)
                    if msg:
                        self.add(kpos, f"{path}: key {msg}")
                        continue
                assert f.items is not None
                self.walk(v[k], f.items, _pos_of_value(v, k, kpos), f"{path}.{k}")
        elif f.kind == "list":
            assert f.items is not None
            for i, item in enumerate(v):
                name = item.get("name") if isinstance(item, Mapping) else None
                label = name if isinstance(name, str) and is_hostname_label(name) else str(i)
                self.walk(item, f.items, _pos_of_value(v, i, pos), f"{path}[{label}]")

    def _walk_map(self, m: Mapping[Any, Any], f: Field, pos: Pos, path: str) -> None:
        fields = f.fields or {}
        prefix = f"{path}." if path else ""
        for k in m:
            kpos = _pos_of_key(m, k, pos)
            if not isinstance(k, str):
                self.add(kpos, f"{prefix or 'top level: '}key {k!r} must be a string")
                continue
            if k not in fields:
                where = f"in {path}" if path else "at the top level"
                self.add(
                    kpos,
                    f"unknown key {k!r} {where}{_did_you_mean(k, fields)}",
                    hint=f"known keys here: {', '.join(fields)}",
                )
                continue
            self.walk(m[k], fields[k], _pos_of_value(m, k, kpos), prefix + k)
        for name, sub in fields.items():
            if sub.required and name not in m:
                what = path or "the inventory"
                self.add(pos, f"{what}: missing required key {name!r}")


def _node_label(i: int, item: Any) -> str:
    name = item.get("name") if isinstance(item, Mapping) else None
    return f"nodes[{name}]" if isinstance(name, str) and is_hostname_label(name) else f"nodes[{i}]"


def _cross_checks(v: _Validator, doc: Mapping[Any, Any]) -> None:
    """Rules that span several fields: one master, unique names/addresses."""
    nodes = doc.get("nodes")
    if not isinstance(nodes, list):
        return
    nodes_pos = _pos_of_key(doc, "nodes", (0, 0))
    masters: list[int] = []
    seen: dict[str, dict[Any, int]] = {"name": {}, "address": {}, "mac": {}}
    net: ipaddress.IPv4Network | None = None
    network = doc.get("network")
    if isinstance(network, Mapping) and isinstance(network.get("flannel_network"), str):
        try:
            net = ipaddress.IPv4Network(network["flannel_network"], strict=True)
        except ValueError:
            net = None
    for i, item in enumerate(nodes):
        if not isinstance(item, Mapping):
            continue
        ipos = _pos_of_value(nodes, i, nodes_pos)
        if item.get("role") == "master":
            masters.append(i)
        for key in ("name", "address", "mac"):
            val = item.get(key)
            if not isinstance(val, str):
                continue
            norm: Any = val.lower()
            if key == "address":
                try:
                    norm = ipaddress.ip_address(val)
                except ValueError:
                    continue
            if norm in seen[key]:
                first = seen[key][norm]
                v.add(
                    _pos_of_value(item, key, ipos),
                    f"{_node_label(i, item)}: {key} {val!r} is already used by {_node_label(first, nodes[first])}",
                    hint=f"each node needs its own {key}",
                )
            else:
                seen[key][norm] = i
            if key == "address" and net is not None and isinstance(norm, ipaddress.IPv4Address) and norm in net:
                v.add(
                    _pos_of_value(item, key, ipos),
                    f"{_node_label(i, item)}: address {val} lies inside the pod network {net}",
                    hint="choose a flannel_network that does not overlap the LAN",
                )
    if not masters and nodes:
        v.add(nodes_pos, "nodes: no node has role: master", hint="exactly one node must be the master")
    elif not nodes:
        v.add(nodes_pos, "nodes: the list is empty", hint="add one node with role: master")
    for extra in masters[1:]:
        v.add(
            _pos_of_value(nodes, extra, nodes_pos),
            f"{_node_label(extra, nodes[extra])}: a second master "
            f"(the first is {_node_label(masters[0], nodes[masters[0]])})",
            hint="exactly one node must have role: master",
        )
    if isinstance(network, Mapping):
        ports = {k: network.get(k) for k in ("etcd_port", "apiserver_port")}
        if ports["etcd_port"] is not None and ports["etcd_port"] == ports["apiserver_port"]:
            v.add(
                _pos_of_value(network, "apiserver_port", nodes_pos),
                f"network: etcd_port and apiserver_port are both {ports['etcd_port']}",
            )
        sub = network.get("flannel_subnet_len")
        if net is not None and isinstance(sub, int) and not isinstance(sub, bool) and sub <= net.prefixlen:
            v.add(
                _pos_of_value(network, "flannel_subnet_len", nodes_pos),
                f"network.flannel_subnet_len /{sub} must be longer than the network's /{net.prefixlen} "
                f"({net}), so each node can lease a part of it",
            )


# ---------------------------------------------------------------------------
# Parsing


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    return y


def parse_yaml(text: str, file: str) -> Any:
    """Round-trip parse; any syntax problem becomes an InventoryError with line/column."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _yaml().load(text)
    except Exception as e:  # ruamel raises a zoo of classes; none may escape as a traceback
        raise _syntax_error(e, text, file) from None


def _syntax_error(e: Exception, text: str, file: str) -> InventoryError:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line = col = None
    if mark is not None and getattr(mark, "line", None) is not None:
        line, col = int(mark.line) + 1, int(mark.column) + 1
    elif isinstance(getattr(e, "position", None), int):
        pos = int(getattr(e, "position"))
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    problem = getattr(e, "problem", None)
    context = getattr(e, "context", None)
    if problem:
        msg = str(problem)
        if context:
            msg = f"{context}: {msg}"
    else:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "duplicate key" in msg:
        hint = "each key may appear only once in a mapping; remove or merge the repeated one"
    else:
        hint = "check the indentation and quoting around this position"
    return InventoryError(f"YAML syntax error: {msg}", hint=hint, location=Location(file, line, col))


def read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InventoryError(
            f"inventory file {path} does not exist",
            hint="create one from inventory.example.yaml, or `piprov lab inventory > inventory.yaml`; "
            "-i/--inventory or $PIPROV_INVENTORY choose another file",
        ) from None
    except IsADirectoryError:
        raise InventoryError(f"{path} is a directory, not an inventory file") from None
    except OSError as e:
        raise InventoryError(f"cannot read inventory {path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InventoryError(
            "the file is not valid UTF-8 text",
            location=Location(str(path), line),
        ) from None


def load(path: Path, *, image_names: Sequence[str] | None = None) -> Inventory:
    """Read, validate and return the inventory at ``path``.

    ``image_names`` are the ``images.<name>`` keys allowed (default: those the
    default playbooks run, :meth:`piprov.graph.ComponentGraph.image_names`).
    Raises InventoryError (file missing, YAML syntax) or ProblemList of
    InventoryErrors (every validation problem, each with file:line:column).
    """
    return load_text(read_text(path), path, image_names=image_names)


def load_text(text: str, path: Path, *, image_names: Sequence[str] | None = None) -> Inventory:
    """Validate ``text`` as if it were the content of ``path`` (used before writing an edit)."""
    file = str(path)
    doc = parse_yaml(text, file)
    names = tuple(image_names) if image_names is not None else default_image_names()
    validate_document(doc, file, image_names=names)
    return _build(doc, path, names)


def validate_document(doc: Any, file: str, *, image_names: Sequence[str] | None = None) -> None:
    if doc is None:
        raise InventoryError(
            "the inventory is empty",
            hint="start from inventory.example.yaml",
            location=Location(file, 1, 1),
        )
    v = _Validator(file)
    if not isinstance(doc, Mapping):
        line, col = getattr(getattr(doc, "lc", None), "line", 0) or 0, 0
        v.add((line, col), f"the inventory must be a mapping of sections (cluster:, ssh:, nodes:), not {_type_name(doc)}")
    else:
        v.walk(doc, schema(None if image_names is None else tuple(image_names)), (0, 0), "")
        _cross_checks(v, doc)
    if v.problems:
        v.problems.sort(key=lambda p: (p.location.line or 0, p.location.column or 0) if p.location else (0, 0))
        n = len(v.problems)
        raise ProblemList(
            f"{file}: {n} problem{'s' if n != 1 else ''} in the inventory",
            v.problems,
            hint="fix them and run `piprov inventory validate`",
        )


# ---------------------------------------------------------------------------
# Building the model (only after validation passed: types are known good)


def _resolve_path(value: str, base: Path) -> Path:
    # os.path, not Path.expanduser: "~nosuchuser/key" must not raise (it stays
    # a plain relative name, as a shell would leave it).
    p = Path(os.path.expanduser(value))
    if not p.is_absolute():
        p = base / p
    return p


def _ssh(m: Mapping[str, Any], base_settings: SshSettings, base_dir: Path) -> SshSettings:
    changes: dict[str, Any] = {}
    for key in ("user", "port", "host_key_policy"):
        if key in m:
            changes[key] = m[key]
    if "connect_timeout" in m:
        changes["connect_timeout"] = float(m["connect_timeout"])
    if "identity_file" in m:
        changes["identity_file"] = str(_resolve_path(m["identity_file"], base_dir))
    return dataclasses.replace(base_settings, **changes)


def _spec(m: Mapping[str, Any]) -> ImageSpec:
    return ImageSpec(repository=str(m["repository"]), tag=str(m["tag"]))


def _build(doc: Mapping[str, Any], path: Path, image_names: tuple[str, ...]) -> Inventory:
    base_dir = path.expanduser().absolute().parent
    ssh_doc = doc.get("ssh") or {}
    ssh = _ssh(ssh_doc, SshSettings(), base_dir)
    known_hosts = _resolve_path(ssh_doc.get("known_hosts", "known_hosts"), base_dir)

    img_doc = doc.get("images") or {}
    defaults = ImageSettings()
    specs = dict(defaults.specs)
    for c in image_names:
        if c in img_doc:
            specs[c] = _spec(img_doc[c])
    overrides = {
        str(arch): {str(c): _spec(s) for c, s in comps.items()}
        for arch, comps in (img_doc.get("arch_overrides") or {}).items()
    }
    images = ImageSettings(
        registry=str(img_doc.get("registry", defaults.registry)),
        insecure_registries=tuple(str(r) for r in img_doc.get("insecure_registries") or ()),
        specs=specs,
        arch_overrides=overrides,
    )

    net_doc = doc.get("network") or {}
    nd = NetworkSettings()
    network = NetworkSettings(
        flannel_network=str(net_doc.get("flannel_network", nd.flannel_network)),
        flannel_subnet_len=int(net_doc.get("flannel_subnet_len", nd.flannel_subnet_len)),
        flannel_backend=str(net_doc.get("flannel_backend", nd.flannel_backend)),
        mtu=net_doc.get("mtu", nd.mtu),
        etcd_port=int(net_doc.get("etcd_port", nd.etcd_port)),
        apiserver_port=int(net_doc.get("apiserver_port", nd.apiserver_port)),
    )

    nodes_doc = doc["nodes"]
    nodes: list[Node] = []
    for i, item in enumerate(nodes_doc):
        line, col = _pos_of_value(nodes_doc, i, (0, 0))
        nodes.append(
            Node(
                name=str(item["name"]),
                address=str(item["address"]),
                role=item["role"],
                ssh=_ssh(item.get("ssh") or {}, ssh, base_dir),
                arch=str(item["arch"]) if item.get("arch") is not None else None,
                labels={str(k): str(v) for k, v in (item.get("labels") or {}).items()},
                location=Location(str(path), line + 1, col + 1),
                mac=str(item["mac"]) if item.get("mac") is not None else None,
            )
        )
    return Inventory(
        path=path,
        cluster_name=str(doc["cluster"]["name"]),
        ssh=ssh,
        images=images,
        network=network,
        nodes=tuple(nodes),
        known_hosts=known_hosts,
    )
