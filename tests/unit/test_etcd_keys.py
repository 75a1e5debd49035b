"""The etcd keys piprov owns, read from the controller: etcd's answers → facts (data file), and the read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from piprov import http
from piprov.errors import InventoryError
from piprov.facts import EtcdKeyFacts
from piprov.inventory import load
from piprov.kube import etcd

CASES = yaml.safe_load((Path(__file__).parent / "data/etcd/keys.yaml").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_an_answer_becomes_a_fact(case: dict[str, Any]) -> None:
    fact = etcd.key_facts("/coreos.com/network/config", case["status"], case["body"].encode())
    assert fact == EtcdKeyFacts("/coreos.com/network/config", case["fact"]["state"], case["fact"].get("value"))


def test_nothing_answering_makes_every_key_unavailable(monkeypatch: pytest.MonkeyPatch, inv: Path) -> None:
    asked: list[str] = []

    def refuse(method: str, url: str, **kw: Any) -> http.Response:
        asked.append(url)
        raise http.Unreachable(url, "connection refused")

    monkeypatch.setattr(etcd, "client_tls", lambda inv: None)
    monkeypatch.setattr(http, "request", refuse)
    # A LAN address: the example's documentation ones are refused before any request (next test).
    inv.write_text(inv.read_text().replace("192.0.2.", "10.99.0."))
    got = etcd.read_keys(load(inv), ["/a", "/b"])
    assert got == {"/a": EtcdKeyFacts("/a", "unavailable"), "/b": EtcdKeyFacts("/b", "unavailable")}
    assert len(asked) == 1 and asked[0].endswith(":4001/v2/keys/a")  # one refusal is enough


def test_a_documentation_address_is_refused_before_any_request(monkeypatch: pytest.MonkeyPatch, inv: Path) -> None:
    asked: list[str] = []
    monkeypatch.setattr(http, "request", lambda method, url, **kw: asked.append(url))
    with pytest.raises(InventoryError, match="documentation address"):
        etcd.read_keys(load(inv), ["/a"])
    assert asked == []
