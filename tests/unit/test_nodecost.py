"""bench/nodecost.py's readings of a node's process accounting and /proc: pure, no root."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import nodecost  # noqa: E402
from nodecost import Proc  # noqa: E402


def _record(pid: int, ppid: int, comm: str, version: int = 3) -> bytes:
    return nodecost.ACCT_V3.pack(0, version, 0, 0, 0, 0, pid, ppid, 0, 0.0, *([0] * 8), comm.encode())


def test_acct_v3_records_are_64_bytes_and_read_back() -> None:
    assert nodecost.ACCT_V3.size == 64
    data = _record(41, 7, "sh") + _record(42, 41, "systemctl")
    assert nodecost.parse_acct(data) == [(41, 7, "sh"), (42, 41, "systemctl")]
    # A record the kernel is still writing is left for the next read.
    assert nodecost.parse_acct(data + _record(43, 41, "x")[:20]) == [(41, 7, "sh"), (42, 41, "systemctl")]


def test_an_acct_record_of_another_version_is_refused() -> None:
    with pytest.raises(ValueError):
        nodecost.parse_acct(_record(1, 0, "x", version=2))


def test_parse_stat_survives_a_command_name_with_spaces_and_parentheses() -> None:
    rest = " ".join(["S", "7", *(["0"] * 9), "5", "6", "7", "8", *(["0"] * 4), "12345", "0"])
    assert nodecost.parse_stat(f"42 (sshd: pirate (x)) {rest}") == ("sshd: pirate (x)", 7, 11, 15, 12345)


def test_ns_pid_is_the_innermost() -> None:
    assert nodecost.ns_pid("Name:\tsh\nNSpid:\t81234\t57\n") == 57


def test_reaches_follows_parents_and_stops_on_a_loop_or_a_gap() -> None:
    parents = {5: 4, 4: 3, 3: 1, 9: 9}
    assert nodecost.reaches(5, 3, parents)
    assert nodecost.reaches(3, 3, parents)
    assert not nodecost.reaches(5, 2, parents)
    assert not nodecost.reaches(9, 3, parents)
    assert not nodecost.reaches(77, 3, parents)


def _p(host: int, ns: int, ppid: int, own: int = 0, reaped: int = 0, comm: str = "x", start: int = 1) -> Proc:
    return Proc(host, ns, ppid, start, comm, own, reaped)


def test_session_ticks_counts_reaped_and_live_descendants_once() -> None:
    procs = {
        100: _p(100, 1, 90),  # PID 1
        110: _p(110, 20, 100, own=3, reaped=50),  # sshd listener: 50 reaped from finished connections
        120: _p(120, 30, 110, own=4, reaped=6),  # a connection kept open (ControlPersist) ...
        121: _p(121, 31, 120, own=2),  # ... and its session shell
        130: _p(130, 40, 100, own=99, reaped=99),  # kubelet: background, not counted
    }
    assert nodecost.session_ticks(procs, 110) == 50 + (4 + 6) + 2


def test_window_processes_tell_the_sessions_from_the_background() -> None:
    before = {110: _p(110, 20, 100, comm="sshd"), 100: _p(100, 1, 90)}
    after = {**before, 150: _p(150, 60, 110, comm="sshd"), 151: _p(151, 61, 150, comm="sh")}
    records = [(50, 20, "sshd"), (51, 50, "sh"), (52, 51, "systemctl"), (53, 1, "iptables"), (54, 61, "stat")]
    got = nodecost.window_processes(records, before, after, 20)
    assert got["all"] == 7
    assert got["sessions"] == 6  # iptables (kubelet's, parent PID 1) is background
    assert got["commands"] == {"sshd": 2, "sh": 2, "systemctl": 1, "stat": 1}


def test_a_pid_alive_at_both_ends_is_new_only_if_it_started_again() -> None:
    before = {110: _p(110, 20, 100, comm="sshd"), 200: _p(200, 70, 110, start=5)}
    after = {110: before[110], 200: _p(200, 70, 110, start=9)}
    assert nodecost.window_processes([], before, after, 20)["sessions"] == 1
    assert nodecost.window_processes([], before, before, 20)["sessions"] == 0
