"""The fleet: open transports to the inventory's nodes, and work done on all of them at once.

Partial failure is data: :func:`parallel` runs a function per node and returns a
:class:`FleetResult`, a mapping node -> result or the :class:`PiprovError` that
stopped it (fabric's ``GroupResult`` is the model), so one unreachable node
never hides what the others did.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Generic, Iterable, Iterator, Mapping, TypeVar

from piprov.errors import PiprovError
from piprov.inventory.model import HostKeyPolicy, Inventory
from piprov.jump import Jumps
from piprov.shell.probes import LOGIN_PROBE
from piprov.ssh.auth import KeyChain
from piprov.ssh.secrets import current
from piprov.transport import CommandResult, SshTransport, Transport

T = TypeVar("T")


class FleetResult(Mapping[str, "T | PiprovError"], Generic[T]):
    """Node name -> what ``fn`` returned there, or the error that stopped it; in the order run."""

    def __init__(self, results: Mapping[str, T | PiprovError] | None = None) -> None:
        self._results: dict[str, T | PiprovError] = dict(results or {})

    def __getitem__(self, node: str) -> T | PiprovError:
        return self._results[node]

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def __repr__(self) -> str:
        return f"FleetResult({self._results!r})"

    @property
    def succeeded(self) -> dict[str, T]:
        return {n: r for n, r in self._results.items() if not isinstance(r, PiprovError)}

    @property
    def failed(self) -> dict[str, PiprovError]:
        return {n: r for n, r in self._results.items() if isinstance(r, PiprovError)}


def naming(e: PiprovError, node: str) -> PiprovError:
    """``e``, naming ``node`` as where it happened unless it names a host already."""
    e.host = e.host or node
    return e


def reach(transport: Transport, *, timeout: float = 30) -> CommandResult:
    """Log in and run the one probe command: does the node answer over SSH (changing nothing)?

    A transport, not a fleet member, so keys can probe its key-only login with it too.
    """
    return transport.run(LOGIN_PROBE, timeout=timeout)


def parallel(names: Iterable[str], fn: Callable[[str], T], max_workers: int = 32) -> FleetResult[T]:
    """Run ``fn(name)`` for every name at once; a PiprovError is kept (naming its node) as that node's result."""
    names = list(names)
    if not names:
        return FleetResult()

    def guarded(n: str) -> T | PiprovError:
        try:
            return fn(n)
        except PiprovError as e:
            return naming(e, n)

    with ThreadPoolExecutor(max_workers=min(max_workers, len(names)), thread_name_prefix="piprov-node") as pool:
        return FleetResult(dict(zip(names, pool.map(guarded, names))))


@dataclass
class Fleet:
    """Open transports to the inventory's nodes; closed with the fleet."""

    inventory: Inventory
    transports: dict[str, Transport]
    jumps: Jumps | None = None

    @classmethod
    def connect(
        cls,
        inventory: Inventory,
        names: Iterable[str] | None = None,
        *,
        policy: HostKeyPolicy | None = None,
        password: str | None = None,
    ) -> Fleet:
        """One transport per node (or per node in ``names``), sharing the run's keys and jump hosts."""
        wanted = set(names) if names is not None else None
        session = current()
        keychain = KeyChain(session)
        ssh: dict[str, SshTransport] = {}
        jumps = Jumps(inventory.known_hosts, policy=policy, session=session, keychain=keychain,
                      nodes={n.name: n for n in inventory.nodes}, transports=ssh)
        for node in inventory.nodes:
            if wanted is None or node.name in wanted:
                ssh[node.name] = SshTransport(node, inventory.known_hosts, policy=policy, password=password,
                                              session=session, keychain=keychain, tunnels=jumps)
        return cls(inventory, dict(ssh), jumps)

    def close(self) -> None:
        # Nodes first: a jump host's connection carries the ones behind it.
        for t in self.transports.values():
            t.close()
        if self.jumps is not None:
            self.jumps.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def round_trips(self) -> dict[str, int]:
        return {name: t.round_trips for name, t in self.transports.items()}
