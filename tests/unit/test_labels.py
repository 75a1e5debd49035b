"""Node labels: the pure planner from data, the merge patch it makes, the kube side with a fake API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from piprov.errors import ClusterError
from piprov.inventory import load_text
from piprov.kube.labels import apply_node_labels, plan_node_labels
from piprov.plan.labels import ANNOTATION, LabelChange, node_labels, plan_labels

CASES = json.loads((Path(__file__).parent / "data" / "plan" / "labels" / "cases.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_plan_labels_from_data(case: dict[str, Any]) -> None:
    got = plan_labels("10.0.0.2", case["desired"], node_labels(case["node"]))
    if "no_change" in case:
        assert isinstance(got, str) and case["no_change"] in got
        return
    assert isinstance(got, LabelChange), got
    assert dict(got.set) == case["set"] and list(got.remove) == case["remove"] and list(got.managed) == case["managed"]
    assert got.registered == case.get("registered", True)
    assert case.get("reason", "") in got.reason


def test_the_merge_patch_removes_with_null_and_records_the_keys() -> None:
    c = LabelChange("10.0.0.2", {"disk": "ssd"}, ("shelf",), ("disk",), "r")
    assert c.patch() == {"metadata": {"labels": {"disk": "ssd", "shelf": None},
                                      "annotations": {ANNOTATION: '["disk"]'}}}  # fmt: skip
    assert c.describe() == "disk=ssd, -shelf"


class FakeApi:
    """Nodes in memory; PATCH applies an RFC 7386 merge patch."""

    def __init__(self, nodes: dict[str, Any] | None) -> None:
        self.objs = nodes
        self.patches: list[tuple[str, Any]] = []

    def nodes(self) -> list[Any]:
        if self.objs is None:
            raise ClusterError("cannot reach the Kubernetes API")
        return list(self.objs.values())

    def patch_node(self, name: str, patch: Any) -> None:
        assert self.objs is not None
        self.patches.append((name, patch))
        _merge(self.objs[name], patch)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict):
            _merge(target.setdefault(k, {}), v)
        else:
            target[k] = v


INV = ("cluster: {name: lab}\nnodes:\n  - {name: m, address: 10.0.0.1, role: master}\n"
       "  - {name: w, address: 10.0.0.2, role: worker, labels: {shelf: top}}\n")  # fmt: skip


def test_up_sets_then_a_removed_label_goes_and_foreign_labels_stay() -> None:
    api = FakeApi({ip: {"metadata": {"name": ip, "labels": {"kubernetes.io/hostname": ip, "team": "ops"}}}
                   for ip in ("10.0.0.1", "10.0.0.2")})  # fmt: skip
    inv = load_text(INV, Path("inv.yaml"))
    done = apply_node_labels(inv, api)  # type: ignore[arg-type]
    assert isinstance(done["w"], LabelChange) and isinstance(done["m"], str)
    assert api.objs is not None and api.objs["10.0.0.2"]["metadata"]["labels"]["shelf"] == "top"
    assert all(isinstance(v, str) for v in plan_node_labels(inv, api).values())  # type: ignore[arg-type]
    inv2 = load_text(INV.replace(", labels: {shelf: top}", ""), Path("inv.yaml"))
    apply_node_labels(inv2, api)  # type: ignore[arg-type]
    assert api.objs["10.0.0.2"]["metadata"]["labels"] == {"kubernetes.io/hostname": "10.0.0.2", "team": "ops"}
    assert len(api.patches) == 2


def test_apiserver_down_is_a_change_for_later_not_an_error() -> None:
    inv = load_text(INV, Path("inv.yaml"))
    lp = plan_node_labels(inv, FakeApi(None))  # type: ignore[arg-type]
    w = lp["w"]
    assert isinstance(w, LabelChange) and not w.registered and "does not answer" in w.reason
    done = apply_node_labels(inv, FakeApi(None))  # type: ignore[arg-type]
    assert done["w"] == "its Node is not registered: labels not set yet"
