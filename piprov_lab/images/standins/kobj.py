"""Kubernetes object helpers shared by the hyperkube stand-in's subcommands.

Selectors, patches (JSON merge, strategic merge, JSON patch), timestamps, pod
and node conditions, and the server-side Table columns kubectl 1.20 prints.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import random
import re
import uuid
from typing import Any

Obj = dict[str, Any]


# -- time ----------------------------------------------------------------------
def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        return None


def human_age(ts: str | None, now: float | None = None) -> str:
    """kubectl's duration.HumanDuration of the time since ts."""
    start = parse_time(ts)
    if start is None:
        return "<unknown>"
    now = dt.datetime.now(dt.timezone.utc).timestamp() if now is None else now
    s = max(0, int(now - start))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


def new_uid() -> str:
    return str(uuid.uuid4())


_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(_NAME_CHARS) for _ in range(n))


DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# -- selectors -------------------------------------------------------------------
class SelectorError(ValueError):
    pass


def _split_top(s: str) -> list[str]:
    """Split a selector on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for c in s:
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


Requirement = tuple[str, str, list[str]]  # key, op (=, !=, in, notin, exists, !), values


def parse_label_selector(s: str | None) -> list[Requirement]:
    reqs: list[Requirement] = []
    for part in _split_top(s or ""):
        m = re.match(r"^([\w./-]+)\s+(in|notin)\s+\((.*)\)$", part)
        if m:
            reqs.append((m.group(1), m.group(2), [v.strip() for v in m.group(3).split(",") if v.strip()]))
            continue
        m = re.match(r"^([\w./-]+)\s*(==|!=|=)\s*([\w./-]*)$", part)
        if m:
            op = "=" if m.group(2) in ("=", "==") else "!="
            reqs.append((m.group(1), op, [m.group(3)]))
            continue
        m = re.match(r"^(!?)([\w./-]+)$", part)
        if m:
            reqs.append((m.group(2), "!" if m.group(1) else "exists", []))
            continue
        raise SelectorError(f"unable to parse requirement: {part!r}")
    return reqs


def match_requirements(reqs: list[Requirement], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    for key, op, values in reqs:
        present = key in labels
        v = labels.get(key)
        if op == "=" and v != values[0]:
            return False
        if op == "!=" and v == values[0]:
            return False
        if op == "in" and (not present or v not in values):
            return False
        if op == "notin" and present and v in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
    return True


def selector_requirements(sel: Obj | None) -> list[Requirement]:
    """A metav1.LabelSelector (matchLabels + matchExpressions) as requirements."""
    if not sel:
        return []
    reqs: list[Requirement] = [(k, "=", [str(v)]) for k, v in (sel.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for e in sel.get("matchExpressions") or []:
        reqs.append((e["key"], ops.get(e.get("operator", ""), "in"), list(e.get("values") or [])))
    return reqs


def map_selector_matches(selector: dict[str, str] | None, labels: dict[str, str] | None) -> bool:
    """RC-style selector (a plain map): empty matches nothing."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def get_path(obj: Obj, dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def parse_field_selector(s: str | None) -> list[tuple[str, str, str]]:
    out = []
    for part in _split_top(s or ""):
        m = re.match(r"^([\w.]+)\s*(==|!=|=)\s*(.*)$", part)
        if not m:
            raise SelectorError(f"invalid field selector: {part!r}")
        out.append((m.group(1), "!=" if m.group(2) == "!=" else "=", m.group(3)))
    return out


def match_fields(reqs: list[tuple[str, str, str]], obj: Obj) -> bool:
    for path, op, value in reqs:
        v = get_path(obj, path)
        v = "" if v is None else str(v)
        if (op == "=") != (v == value):
            return False
    return True


# -- patches -----------------------------------------------------------------------
def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = json_merge_patch(result.get(k), v)
    return result


# Merge keys of the lists kubectl's strategic merge patches touch (patchMergeKey tags).
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
    "volumeMounts": "mountPath", "ports": "containerPort", "conditions": "type",
    "addresses": "type", "ownerReferences": "uid", "imagePullSecrets": "name",
    "taints": "key", "finalizers": None, "hostAliases": "ip",
}


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k in ("$retainKeys", "$patch"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            result[field] = [x for x in result.get(field) or [] if x not in (v or [])]
            continue
        if v is None:
            result.pop(k, None)
        elif isinstance(v, list) and MERGE_KEYS.get(k) and isinstance(result.get(k), list):
            result[k] = _merge_list(result[k], v, MERGE_KEYS[k] or "")
        elif isinstance(v, list) and k == "finalizers" and isinstance(result.get(k), list):
            result[k] = list(dict.fromkeys(result[k] + v))
        elif isinstance(v, dict):
            merged = strategic_merge_patch(result.get(k), v)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        else:
            result[k] = copy.deepcopy(v)
    return result


def _merge_list(current: list[Any], patch: list[Any], key: str) -> list[Any]:
    out = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            continue
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
        elif idx is None:
            out.append({k: v for k, v in item.items() if k != "$patch"})
        else:
            out[idx] = strategic_merge_patch(out[idx], item)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json_patch(target: Any, ops: list[Obj]) -> Any:
    """RFC 6902 (add, remove, replace, test, move, copy)."""
    doc = copy.deepcopy(target)

    def parent(path: list[str]) -> tuple[Any, str]:
        cur = doc
        for p in path[:-1]:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur, path[-1]

    def get(path: list[str]) -> Any:
        cur = doc
        for p in path:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur

    def add(path: list[str], value: Any) -> None:
        nonlocal doc
        if not path:
            doc = value
            return
        c, last = parent(path)
        if isinstance(c, list):
            c.insert(len(c) if last == "-" else int(last), value)
        else:
            c[last] = value

    def remove(path: list[str]) -> Any:
        c, last = parent(path)
        return c.pop(int(last)) if isinstance(c, list) else c.pop(last)

    for op in ops:
        kind = op.get("op")
        path = _pointer(op.get("path", ""))
        try:
            if kind == "add":
                add(path, copy.deepcopy(op.get("value")))
            elif kind == "remove":
                remove(path)
            elif kind == "replace":
                remove(path)
                add(path, copy.deepcopy(op.get("value")))
            elif kind == "test":
                if get(path) != op.get("value"):
                    raise ValueError(f"test failed at {op.get('path')}")
            elif kind in ("move", "copy"):
                src = _pointer(op.get("from", ""))
                value = remove(src) if kind == "move" else copy.deepcopy(get(src))
                add(path, value)
            else:
                raise ValueError(f"unknown JSON patch op {kind!r}")
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"JSON patch {kind} {op.get('path')}: {exc}") from None
    return doc


# -- pods and nodes ------------------------------------------------------------------
def condition(obj: Obj, ctype: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def set_condition(obj: Obj, cond: Obj) -> bool:
    """Set a condition, keeping lastTransitionTime unless the status changed. True if changed."""
    status = obj.setdefault("status", {})
    conds = status.setdefault("conditions", [])
    for i, c in enumerate(conds):
        if c.get("type") == cond["type"]:
            if c.get("status") == cond.get("status"):
                cond = {**cond, "lastTransitionTime": c.get("lastTransitionTime", cond.get("lastTransitionTime"))}
            changed = c != cond
            conds[i] = cond
            return changed
    conds.append(cond)
    return True


def pod_ready(pod: Obj) -> bool:
    c = condition(pod, "Ready")
    return bool(c and c.get("status") == "True") and not pod["metadata"].get("deletionTimestamp")


def pod_active(pod: Obj) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def node_ready(node: Obj) -> bool:
    c = condition(node, "Ready")
    return bool(c and c.get("status") == "True")


def controller_ref(obj: Obj) -> Obj | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        frac = float(value[:-1]) * total / 100.0
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(value)


# -- server-side tables (kubectl >= 1.16 prints what the server sends) -----------------
def _col(name: str, typ: str = "string", priority: int = 0, fmt: str = "") -> Obj:
    return {"name": name, "type": typ, "format": fmt, "description": name, "priority": priority}


def _pod_row(p: Obj) -> list[Any]:
    st = p.get("status") or {}
    spec = p.get("spec") or {}
    statuses = st.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    reason = st.get("reason") or st.get("phase") or "Unknown"
    for c in statuses:
        state = c.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state and reason == "Running":
            reason = state["terminated"].get("reason") or "Completed"
    if p["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return [p["metadata"]["name"], f"{ready}/{total}", reason, restarts, human_age(p["metadata"].get("creationTimestamp")),
            st.get("podIP") or "<none>", spec.get("nodeName") or "<none>", "<none>", "<none>"]


def _node_row(n: Obj) -> list[Any]:
    st = n.get("status") or {}
    c = condition(n, "Ready")
    status = "Unknown" if c is None else ("Ready" if c.get("status") == "True" else "NotReady")
    if (n.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = n["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")) or ["<none>"]
    addrs = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    info = st.get("nodeInfo") or {}
    return [n["metadata"]["name"], status, ",".join(roles), human_age(n["metadata"].get("creationTimestamp")),
            info.get("kubeletVersion", ""), addrs.get("InternalIP", "<none>"), addrs.get("ExternalIP", "<none>"),
            info.get("osImage", "<unknown>"), info.get("kernelVersion", "<unknown>"), info.get("containerRuntimeVersion", "<unknown>")]


def _rc_row(rc: Obj) -> list[Any]:
    spec, st = rc.get("spec") or {}, rc.get("status") or {}
    cs = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    sel = ",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items())
    return [rc["metadata"]["name"], spec.get("replicas", 1), st.get("replicas", 0), st.get("readyReplicas", 0),
            human_age(rc["metadata"].get("creationTimestamp")), ",".join(c.get("name", "") for c in cs),
            ",".join(c.get("image", "") for c in cs), sel]


def _pdb_row(pdb: Obj) -> list[Any]:
    spec, st = pdb.get("spec") or {}, pdb.get("status") or {}
    return [pdb["metadata"]["name"], str(spec.get("minAvailable", "N/A")), str(spec.get("maxUnavailable", "N/A")),
            st.get("disruptionsAllowed", 0), human_age(pdb["metadata"].get("creationTimestamp"))]


def _ns_row(ns: Obj) -> list[Any]:
    return [ns["metadata"]["name"], (ns.get("status") or {}).get("phase", "Active"), human_age(ns["metadata"].get("creationTimestamp"))]


TABLES: dict[str, tuple[list[Obj], Any]] = {
    "Pod": ([_col("Name", fmt="name"), _col("Ready"), _col("Status"), _col("Restarts", "integer"), _col("Age"),
             _col("IP", priority=1), _col("Node", priority=1), _col("Nominated Node", priority=1),
             _col("Readiness Gates", priority=1)], _pod_row),
    "Node": ([_col("Name", fmt="name"), _col("Status"), _col("Roles"), _col("Age"), _col("Version"),
              _col("Internal-IP", priority=1), _col("External-IP", priority=1), _col("OS-Image", priority=1),
              _col("Kernel-Version", priority=1), _col("Container-Runtime", priority=1)], _node_row),
    "ReplicationController": ([_col("Name", fmt="name"), _col("Desired", "integer"), _col("Current", "integer"),
                               _col("Ready", "integer"), _col("Age"), _col("Containers", priority=1),
                               _col("Images", priority=1), _col("Selector", priority=1)], _rc_row),
    "PodDisruptionBudget": ([_col("Name", fmt="name"), _col("Min Available"), _col("Max Unavailable"),
                             _col("Allowed Disruptions", "integer"), _col("Age")], _pdb_row),
    "Namespace": ([_col("Name", fmt="name"), _col("Status"), _col("Age")], _ns_row),
}


def to_table(kind: str, items: list[Obj], resource_version: str, include: str) -> Obj:
    cols, row_fn = TABLES.get(kind, ([_col("Name", fmt="name"), _col("Age")],
                                     lambda o: [o["metadata"]["name"], human_age(o["metadata"].get("creationTimestamp"))]))
    rows = []
    for o in items:
        row: Obj = {"cells": row_fn(o)}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": cols, "rows": rows}


def template_hash(template: Obj) -> str:
    """A stable short hash of a pod template (what controller-revision-hash labels carry)."""
    import hashlib
    import json
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return str(int(digest[:8], 16))[:10]
