"""`piprov check`: a read-only preflight of every node, each finding saying what breaks and how to fix it.

ONE POSIX sh script per node (:mod:`.command`, one SSH round trip, framed
like the facts and built on their script) -> :class:`CheckFacts`
(:mod:`.parse`; garbage is a :class:`~piprov.errors.CheckError` naming the
host) -> findings (:mod:`.judge`, pure) with the thresholds and words of
``playbooks/check/checks.yaml`` (:mod:`.book`); :mod:`.run` does it over the
fleet, a node that cannot be reached being that node's error.
"""

from piprov.check.book import Book, load_book
from piprov.check.command import Probe, check_command
from piprov.check.judge import NodeContext, etcd_timeouts, judge
from piprov.check.model import CheckFacts, Finding, NodeCheck, Severity
from piprov.check.parse import parse_check
from piprov.check.run import check_fleet, check_node

__all__ = [
    "Book",
    "CheckFacts",
    "Finding",
    "NodeCheck",
    "NodeContext",
    "Probe",
    "Severity",
    "check_command",
    "check_fleet",
    "check_node",
    "etcd_timeouts",
    "judge",
    "load_book",
    "parse_check",
]
