"""The lab's cgroup arithmetic (`piprov lab up --cpu-quota`): pure, no root."""

from __future__ import annotations

from pathlib import Path

import pytest

from piprov_lab import system
from piprov_lab.errors import LabError
from piprov_lab.state import LabState

# This machine's layout: cgroup v1 with one hierarchy per controller, cgroup2 on unified.
MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
# Debian's own hybrid layout co-mounts cpu and cpuacct.
COMOUNTED = "35 31 0:32 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"


def test_v1_hierarchy_finds_the_controller_s_own_mount_and_not_a_prefix_of_it() -> None:
    assert system.v1_hierarchy("cpu", MOUNTINFO) == Path("/sys/fs/cgroup/cpu")
    assert system.v1_hierarchy("cpuacct", MOUNTINFO) == Path("/sys/fs/cgroup/cpuacct")
    assert system.v1_hierarchy("cpu", COMOUNTED) == system.v1_hierarchy("cpuacct", COMOUNTED)
    assert system.v1_hierarchy("memory", MOUNTINFO) is None
    assert system.v1_hierarchy("cpu", MOUNTINFO.replace(" - cgroup cgroup rw,cpu\n", " - cgroup2 cgroup2 rw\n")) is None


@pytest.mark.parametrize("pct, period, quota", [
    (0, 100_000, -1),  # no cap
    (100, 10_000, 10_000),
    (25, 10_000, 2_500),
    (10, 10_000, 1_000),  # the shortest period the kernel's 1 ms minimum quota allows at 10%
    (5, 20_000, 1_000),
    (3, 33_334, 1_000),
    (1, 100_000, 1_000),
    (200, 10_000, 20_000),  # two cores' worth
])
def test_cfs_settings_use_a_short_period_and_never_a_quota_under_1_ms(pct: int, period: int, quota: int) -> None:
    assert system.cfs_settings(pct) == (period, quota)
    if pct:
        assert abs(system.quota_pct(period, quota) - pct) < 0.01


def test_a_negative_quota_is_refused() -> None:
    with pytest.raises(LabError):
        system.cfs_settings(-5)


def test_quota_pct_reads_no_cap_as_zero() -> None:
    assert system.quota_pct(100_000, -1) == 0.0
    assert system.quota_pct(10_000, 1_000) == 10.0


def test_parse_cpu_stat_v1_and_v2() -> None:
    assert system.parse_cpu_stat("nr_periods 12\nnr_throttled 3\nthrottled_time 4500000\n") == {
        "nr_periods": 12, "nr_throttled": 3, "throttled_time": 4500000}
    assert system.parse_cpu_stat("usage_usec 10\nnr_bursts 0\ngarbage\n")["usage_usec"] == 10


def test_the_quota_is_kept_in_the_lab_state_and_an_old_state_reads_as_none() -> None:
    s = LabState(name="t", dir="/x", cpu_quota_pct=10)
    assert LabState.from_json(s.to_json()).cpu_quota_pct == 10
    old = s.to_json().replace('"cpu_quota_pct": 10,', "")
    assert LabState.from_json(old).cpu_quota_pct == 0
