"""Where the cluster's store is and where the inventory wants it: the master moved (issue 17).

The inventory names one master; each node's record (``plan.owned``) says what
piprov last wrote there. When the inventory's master holds no unit of the
component that keeps etcd's data (the playbooks' ``backup``) and exactly one
other node's record does, the master moved: `piprov up` takes a backup on the
old master, restores it on the new one and only then applies the plan, whose
prune turns the old master into a worker. Planning the new master as a fresh
one instead would start an empty etcd there and lose every object, so the
doubtful cases are refused rather than guessed:

* two or more other nodes hold etcd: which one is the cluster's is not ours to pick;
* the new master was a worker (its record names units, none of etcd) and no
  node holds etcd, or a node whose record could not be read may: `up` would
  start an empty cluster on a former worker. A fresh Pi as master (no record)
  is a new cluster or a restore, as before.

Pure: the records in, a :class:`MasterMove`, None, or the refusal out (``settle_move`` puts it in the plan).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from piprov.errors import PlanError
from piprov.facts.model import NodeFacts
from piprov.plan.model import RECORD, MasterMove, Plan
from piprov.plan.owned import Owned, parse_record

RESTORE_HINT = ("to make it the master from a backup of the old one: `piprov restore FILE`; "
                "to start an empty cluster there: `piprov reset` it first")


def master_move(master: str, records: Mapping[str, Sequence[Owned] | None], holder: str) -> MasterMove | None:
    """The move ``up`` must make before its plan, None when etcd is where the inventory wants it.

    ``records``: every inventory node's parsed record (empty: none on the node),
    None for a node whose record could not be read. ``holder``: the component
    holding etcd's data. Raises PlanError (naming the master) on a doubtful case.
    """
    def holds(owned: Sequence[Owned]) -> bool:
        return any(o.kind == "unit" and o.component == holder for o in owned)

    mine = records.get(master)
    if mine is None or holds(mine):
        return None
    others = sorted(n for n, r in records.items() if n != master and r is not None and holds(r))
    if len(others) == 1:
        return MasterMove(old=others[0], new=master, component=holder)
    if others:
        raise PlanError(f"{master} is the inventory's master, but {' and '.join(others)} all hold {holder}: "
                        "which one is the cluster's store is not for piprov to guess", host=master,
                        hint="make the inventory's master the node that runs etcd, or `piprov reset` the others")
    if not mine:
        return None
    unread = sorted(n for n, r in records.items() if r is None)
    why = (f"{', '.join(unread)} could not be read and may hold it" if unread
           else "no node of the inventory holds it")
    raise PlanError(f"{master} was a worker (its record names no {holder}) and is now the inventory's master, "
                    f"but {why}: `piprov up` would start an empty cluster there", host=master,
                    hint=RESTORE_HINT if not unread else "make the nodes reachable, then plan again")


def settle_move(plan: Plan, master: str, facts: Mapping[str, NodeFacts | None], holder: str) -> None:
    """``plan.move`` from the nodes' records (``facts``: None for a node that has no plan); a doubtful
    case becomes the master's error, and the master gets no plan."""
    records = {n: None if f is None else parse_record(n, f.file(RECORD)) for n, f in facts.items()}
    try:
        plan.move = master_move(master, records, holder)
    except PlanError as e:
        plan.errors[master] = e
        plan.nodes = [p for p in plan.nodes if p.node != master]
