"""A Node's labels: the inventory's, applied with a PATCH; the ones piprov set and no longer wants, removed.

Pure. The fact is the Node object as the apiserver returns it
(:func:`node_labels`); the planner (:func:`plan_labels`) compares it with the
inventory's labels and returns a typed :class:`LabelChange` or the reason
there is none. Which keys piprov set is recorded on the Node itself, in the
annotation ``piprov.io/labels`` (a JSON list of keys), so that a label someone
else set (the kubelet's ``kubernetes.io/hostname``, an operator's
``kubectl label``) is never removed: only keys in that list that the
inventory no longer has are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ANNOTATION = "piprov.io/labels"


@dataclass(frozen=True)
class NodeLabels:
    """The fact: a Node's labels and the keys piprov recorded as its own (None: no Node object yet)."""

    labels: Mapping[str, str] = field(default_factory=dict)
    managed: tuple[str, ...] = ()
    note: str | None = None  # the annotation could not be read


def node_labels(obj: Mapping[str, Any] | None) -> NodeLabels | None:
    """Parse a Node object (garbage included) into :class:`NodeLabels`; None when there is no Node."""
    if obj is None:
        return None
    meta = _mapping(obj.get("metadata"))
    labels = {k: v for k, v in _mapping(meta.get("labels")).items() if isinstance(k, str) and isinstance(v, str)}
    raw = _mapping(meta.get("annotations")).get(ANNOTATION)
    if raw is None:
        return NodeLabels(labels)
    try:
        keys = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        keys = None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return NodeLabels(labels, (), f"annotation {ANNOTATION} is not a JSON list of keys; no label is removed")
    return NodeLabels(labels, tuple(sorted(set(keys))))


def _mapping(v: Any) -> Mapping[Any, Any]:
    return v if isinstance(v, Mapping) else {}


@dataclass(frozen=True)
class LabelChange:
    """Set ``set``, remove ``remove``, and record ``managed`` as piprov's keys, in one merge patch."""

    node: str  # the Node object's name
    set: Mapping[str, str]
    remove: tuple[str, ...]
    managed: tuple[str, ...]
    reason: str
    registered: bool = True  # False: no Node object yet; applied once the kubelet registers it

    def patch(self) -> dict[str, Any]:
        """The JSON merge patch (RFC 7386: null deletes a key)."""
        labels: dict[str, str | None] = {**self.set, **{k: None for k in self.remove}}
        return {"metadata": {"labels": labels, "annotations": {ANNOTATION: json.dumps(list(self.managed))}}}

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.set.items())] + [f"-{k}" for k in self.remove]
        return ", ".join(parts) or "record the keys piprov owns"


def plan_labels(node: str, desired: Mapping[str, str], fact: NodeLabels | None) -> LabelChange | str:
    """The change that makes Node ``node``'s labels what the inventory says, or why there is none."""
    managed = tuple(sorted(desired))
    if fact is None:
        if not desired:
            return "no labels in the inventory"
        return LabelChange(node, dict(desired), (), managed, "the Node is not registered yet: labels set once it is",
                           registered=False)  # fmt: skip
    to_set = {k: v for k, v in desired.items() if fact.labels.get(k) != v}
    to_remove = tuple(k for k in fact.managed if k not in desired and k in fact.labels)
    if not to_set and not to_remove and fact.managed == managed:
        return "labels are as the inventory says"
    why = []
    if to_set:
        why.append(f"{len(to_set)} label{'s' if len(to_set) != 1 else ''} to set")
    if to_remove:
        why.append(f"{len(to_remove)} label{'s' if len(to_remove) != 1 else ''} piprov set that the inventory no longer has")
    if not why:
        why.append(f"record which labels piprov owns ({ANNOTATION})")
    if fact.note:
        why.append(fact.note)
    return LabelChange(node, to_set, to_remove, managed, "; ".join(why))
