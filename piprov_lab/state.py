"""A lab's state on disk (JSON), so another process sees a lab this one booted.

Every resource is recorded *before* it is created, so `lab down` (or
`lab down --all` after a crash) can find and remove it; removal tolerates
resources that were never created.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from piprov_lab.errors import LabError
from piprov_lab.system import ProcRef

LAB_ROOT = Path(os.environ.get("PIPROV_LAB_ROOT", "/var/lib/piprov-lab"))
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise LabError(
            f"invalid lab name {name!r}",
            hint="use 1-31 lowercase letters, digits and dashes, starting with a letter or digit",
        )


@dataclass
class NodeState:
    name: str
    index: int
    ip: str
    mac: str
    netns: str
    veth: str
    dir: str
    host_key: str = ""
    nspawn: ProcRef | None = None
    relay: ProcRef | None = None
    relay_port: int = 0
    rtt_ms: float = 0.0
    loss_pct: float = 0.0
    partitioned: bool = False
    mounted: bool = False
    # "rpios": Raspberry Pi OS's avahi defaults and host name only (`lab up --rpios`); "raspios": the
    # whole card (`--flavour raspios`); "hypriot-1x": device-init.yaml. See piprov_lab/README.md.
    flavour: str = "hypriot"
    user: str = "pirate"  # the login user the card was made with (raspios: the one chosen in Imager)
    os: str = "bookworm"  # the Debian release it runs (`lab up --os`; piprov_lab/image.py RELEASES)
    base: str = ""  # the base image under its overlay; "" in a state of before --os: the lab's


@dataclass
class DecoyState:
    name: str
    kind: str
    ip: str
    mac: str
    netns: str
    veth: str
    proc: ProcRef | None = None


@dataclass
class LabState:
    name: str
    dir: str
    subnet: str = ""
    bridge: str = ""
    bridge_ip: str = ""
    base: str = ""
    forward_rule: bool = False
    rtt_ms: float = 0.0
    profile: str = "seed"  # the image tags `lab inventory` names (`lab up --profile`)
    cpu_quota_pct: int = 0  # `lab up --cpu-quota`: every node's CFS quota, percent of one core (0: none)
    registry: ProcRef | None = None
    nodes: list[NodeState] = field(default_factory=list)
    decoys: list[DecoyState] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LabState:
        """A lab's state; keys this version does not know are left out: a lab booted by another checkout
        of piprov on the same machine must not stop this one from picking a free subnet."""
        d = json.loads(text)
        nodes = []
        for nd in d.pop("nodes", []):
            nd["nspawn"] = ProcRef.from_json(nd.get("nspawn"))
            nd["relay"] = ProcRef.from_json(nd.get("relay"))
            nodes.append(NodeState(**_known(NodeState, nd)))
        decoys = []
        for dd in d.pop("decoys", []):
            dd["proc"] = ProcRef.from_json(dd.get("proc"))
            decoys.append(DecoyState(**_known(DecoyState, dd)))
        d["registry"] = ProcRef.from_json(d.get("registry"))
        return cls(nodes=nodes, decoys=decoys, **_known(cls, d))


def _known(kind: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(kind)}
    return {k: v for k, v in d.items() if k in names}


def lab_dir(name: str) -> Path:
    return LAB_ROOT / name


def state_file(name: str) -> Path:
    return lab_dir(name) / "state.json"


def load(name: str) -> LabState | None:
    try:
        text = state_file(name).read_text()
    except FileNotFoundError:
        return None
    try:
        return LabState.from_json(text)
    except (ValueError, TypeError, KeyError) as e:
        raise LabError(
            f"the state of lab {name!r} ({state_file(name)}) is unreadable: {e}",
            hint="`piprov lab down --all` removes what the lab left behind",
        ) from e


def save(st: LabState) -> None:
    path = state_file(st.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(st.to_json())
    os.replace(tmp, path)


def all_lab_names() -> list[str]:
    if not LAB_ROOT.exists():
        return []
    return sorted(p.parent.name for p in LAB_ROOT.glob("*/state.json"))


@contextmanager
def locked(name: str) -> Iterator[None]:
    """Serialise changes to one lab across processes."""
    LAB_ROOT.mkdir(parents=True, exist_ok=True)
    with open(LAB_ROOT / f".{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@contextmanager
def global_lock() -> Iterator[None]:
    """Serialise subnet/bridge allocation between labs coming up at once."""
    LAB_ROOT.mkdir(parents=True, exist_ok=True)
    with open(LAB_ROOT / ".alloc.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
