"""Validate an inventory document against the schema, collecting EVERY problem.

The document comes from :mod:`piprov.yamlsrc` (each key and value knows its
line and column), so each problem names file:line:column, and all of them
are raised together as one :class:`~piprov.errors.ProblemList`: a user
fixes a file in one pass.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from typing import Any

from piprov.errors import InventoryError, Location, PiprovError, ProblemList
from piprov.inventory.model import Inventory, NetworkSettings
from piprov.inventory.schema import Field, _did_you_mean, is_hostname_label, schema
from piprov.yamlsrc import Pos, key_pos, location, value_pos

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


class _Validator:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[PiprovError] = []

    def add(self, pos: Pos, message: str, hint: str | None = None) -> None:
        self.problems.append(InventoryError(message, hint=hint, location=location(self.file, pos)))

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
                kpos = key_pos(v, k, pos)
                if not isinstance(k, str):
                    self.add(kpos, f"{path}: key {k!r} must be a string")
                    continue
                if f.key_check is not None:
                    msg = f.key_check(k)
                    if msg:
                        self.add(kpos, f"{path}: key {msg}")
                        continue
                assert f.items is not None
                self.walk(v[k], f.items, value_pos(v, k, kpos), f"{path}.{k}")
        elif f.kind == "list":
            assert f.items is not None
            for i, item in enumerate(v):
                name = item.get("name") if isinstance(item, Mapping) else None
                label = name if isinstance(name, str) and is_hostname_label(name) else str(i)
                self.walk(item, f.items, value_pos(v, i, pos), f"{path}[{label}]")

    def _walk_map(self, m: Mapping[Any, Any], f: Field, pos: Pos, path: str) -> None:
        fields = f.fields or {}
        prefix = f"{path}." if path else ""
        for k in m:
            kpos = key_pos(m, k, pos)
            if not isinstance(k, str):
                self.add(kpos, f"{prefix or 'top level: '}key {k!r} must be a string")
                continue
            sub = f.sub(k)
            if sub is None:
                where = f"in {path}" if path else "at the top level"
                known = ", ".join([*fields, *([f.extra_what] if f.extra_what else [])])
                self.add(
                    kpos,
                    f"unknown key {k!r} {where}{_did_you_mean(k, fields)}",
                    hint=f"known keys here: {known}",
                )
                continue
            self.walk(m[k], sub, value_pos(m, k, kpos), prefix + k)
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
    nodes_pos = key_pos(doc, "nodes", (0, 0))
    network = doc.get("network")
    net = _pod_network(network)
    masters = _check_nodes(v, nodes, nodes_pos, net)
    _check_masters(v, nodes, nodes_pos, masters)
    if isinstance(network, Mapping):
        _check_network(v, network, net, nodes_pos)


def _pod_network(network: Any) -> ipaddress.IPv4Network | None:
    if isinstance(network, Mapping) and isinstance(network.get("flannel_network"), str):
        try:
            return ipaddress.IPv4Network(network["flannel_network"], strict=True)
        except ValueError:
            return None
    return None


def _check_nodes(v: _Validator, nodes: list[Any], nodes_pos: Pos, net: ipaddress.IPv4Network | None) -> list[int]:
    """Unique names, addresses and MACs, addresses outside the pod network; the masters' indexes."""
    masters: list[int] = []
    seen: dict[str, dict[Any, int]] = {"name": {}, "address": {}, "mac": {}}
    for i, item in enumerate(nodes):
        if not isinstance(item, Mapping):
            continue
        ipos = value_pos(nodes, i, nodes_pos)
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
                why = address_problem(val)
                if why:
                    v.add(value_pos(item, key, ipos), f"{_node_label(i, item)}: address {why}",
                          hint="give the node's unicast IPv4 address on the LAN, e.g. 192.168.1.20")
            if norm in seen[key]:
                first = seen[key][norm]
                v.add(
                    value_pos(item, key, ipos),
                    f"{_node_label(i, item)}: {key} {val!r} is already used by {_node_label(first, nodes[first])}",
                    hint=f"each node needs its own {key}",
                )
            else:
                seen[key][norm] = i
            if key == "address" and net is not None and isinstance(norm, ipaddress.IPv4Address) and norm in net:
                v.add(
                    value_pos(item, key, ipos),
                    f"{_node_label(i, item)}: address {val} lies inside the pod network {net}",
                    hint="choose a flannel_network that does not overlap the LAN",
                )
    return masters


def address_problem(raw: str) -> str | None:
    """Why ``raw`` cannot be a node's address, or None for a unicast IPv4 address.

    The seed stack is IPv4-only (etcd 2 peer URLs, flannel 0.5's
    ``--public-ip``, hyperkube 1.x ``--hostname-override`` and Node names),
    and each of these breaks later, far from the inventory line: an IPv6
    address needs brackets in URLs and puts ``:`` in a Node name, a
    link-local one carries ``%eth0`` and changes with every boot.
    """
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        return f"{raw!r} is not a valid IP address"
    if ip.version != 4:
        return f"{raw} is an IPv6 address: the seed stack (etcd 2, flannel, hyperkube 1.x) is IPv4-only"
    reasons = (
        (ip.is_unspecified, "0.0.0.0 is the unspecified address, not a host's"),
        (ip == ipaddress.IPv4Address("255.255.255.255"), "is the broadcast address"),
        (ip.is_loopback, "is a loopback address (127.0.0.0/8): it names this machine, not a node"),
        (ip.is_link_local, "is link-local (169.254.0.0/16): a Pi takes one when DHCP failed, and it changes"),
        (ip.is_multicast, "is a multicast address (224.0.0.0/4), not a host's"),
        (ip.is_reserved, "is in the reserved range 240.0.0.0/4, not a host's"),
    )
    for hit, why in reasons:
        if hit:
            return why if why.startswith("0.0.0.0") else f"{raw} {why}"
    return None


def _check_masters(v: _Validator, nodes: list[Any], nodes_pos: Pos, masters: list[int]) -> None:
    if not masters and nodes:
        v.add(nodes_pos, "nodes: no node has role: master", hint="exactly one node must be the master")
    elif not nodes:
        v.add(nodes_pos, "nodes: the list is empty", hint="add one node with role: master")
    for extra in masters[1:]:
        v.add(
            value_pos(nodes, extra, nodes_pos),
            f"{_node_label(extra, nodes[extra])}: a second master "
            f"(the first is {_node_label(masters[0], nodes[masters[0]])})",
            hint="exactly one node must have role: master",
        )


def _check_network(v: _Validator, network: Mapping[Any, Any], net: ipaddress.IPv4Network | None, nodes_pos: Pos) -> None:
    keys = ("etcd_port", "apiserver_port", "apiserver_secure_port")
    # The secure port has a default every cluster uses; the others clash only when both are given.
    defaults = {"apiserver_secure_port": NetworkSettings().apiserver_secure_port}
    ports = {k: network.get(k, defaults.get(k)) for k in keys}
    for i, first in enumerate(keys):
        for second in keys[i + 1:]:
            if ports[first] is not None and ports[first] == ports[second]:
                shown = second if second in network else first
                v.add(
                    value_pos(network, shown, nodes_pos),
                    f"network: {first} and {second} are both {ports[first]}",
                )
    sub = network.get("flannel_subnet_len")
    if net is not None and isinstance(sub, int) and not isinstance(sub, bool) and sub <= net.prefixlen:
        v.add(
            value_pos(network, "flannel_subnet_len", nodes_pos),
            f"network.flannel_subnet_len /{sub} must be longer than the network's /{net.prefixlen} "
            f"({net}), so each node can lease a part of it",
        )


def validate_document(doc: Any, file: str) -> None:
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
        v.walk(doc, schema(), (0, 0), "")
        _cross_checks(v, doc)
    _raise(file, v.problems)


def check_images(inventory: Inventory, names: Collection[str]) -> None:
    """Refuse ``images.<name>`` keys of ``inventory`` that name no image in ``names``.

    ``names`` are the images the playbooks run (graph.image_names); the
    inventory does not know them, so whoever holds both inventory and graph
    calls this once. Raises ProblemList of InventoryErrors, as validation does.
    Then the versions the image tags name are checked against the support
    matrix (:func:`piprov.graph.support.check_inventory_versions`): an
    unsupported version or mix is refused here, at every load that runs images.
    """
    images = inventory.images
    file = str(inventory.path)
    top = ["registry", "insecure_registries", *names, "arch_overrides"]
    problems: list[PiprovError] = []

    def unknown(name: str, where: str, known: list[str], loc: Location | None) -> None:
        problems.append(
            InventoryError(
                f"unknown key {name!r} in {where}{_did_you_mean(name, known)}",
                hint=f"known keys here: {', '.join(known)}",
                location=loc,
            )
        )

    for name, spec in images.specs.items():
        if name not in names:
            unknown(name, "images", top, spec.location)
    for arch, specs in images.arch_overrides.items():
        for name, spec in specs.items():
            if name not in names:
                unknown(name, f"images.arch_overrides.{arch}", list(names), spec.location)
    _raise(file, problems)
    from piprov.graph.support import check_inventory_versions

    check_inventory_versions(inventory)


def _raise(file: str, problems: list[PiprovError]) -> None:
    """Every problem at once, in file order, as one ProblemList (nothing when there are none)."""
    if problems:
        problems.sort(key=lambda p: (p.location.line or 0, p.location.column or 0) if p.location else (0, 0))
        n = len(problems)
        raise ProblemList(
            f"{file}: {n} problem{'s' if n != 1 else ''} in the inventory",
            problems,
            hint="fix them and run `piprov inventory validate`",
        )
