"""`piprov check`: the check output parsed from data files (tests/unit/data/check/), the pure judge, the book, the CLI.

Each data file is a node's answer as the check script prints it (the lines
before the BEGIN marker describe the node); expected.yaml says what the
parser reads from it and every finding's severity.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from piprov.check import NodeContext, check_command, etcd_timeouts, judge, load_book, parse_check
from piprov.check import run as check_run
from piprov.check.book import Book, _load
from piprov.check.model import CheckFacts, Fsync
from piprov.cli.app import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_OK, EXIT_USAGE, out, run
from piprov.errors import CheckError, FactsError, UnreachableError
from piprov.transport import CommandResult, SshTransport

DATA = Path(__file__).parent / "data" / "check"
EXPECTED: dict[str, dict[str, Any]] = yaml.safe_load((DATA / "expected.yaml").read_text())


@pytest.fixture(scope="module")
def book() -> Book:
    return load_book()


def _facts(name: str) -> CheckFacts:
    case = EXPECTED[name]
    return parse_check(f"{name}-host", (DATA / f"{name}.txt").read_text(), asked=case["asked"],
                       answered=case["answered"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_node_output_parses_to_its_facts(name: str) -> None:
    facts = _facts(name)
    got = {k: (facts.flavour if k == "flavour" else getattr(facts, k)) for k in EXPECTED[name]["facts"]}
    assert got == EXPECTED[name]["facts"]
    assert facts.host == f"{name}-host"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_node_is_judged_as_expected(name: str, book: Book) -> None:
    findings = judge(_facts(name), book, NodeContext(**EXPECTED[name]["context"]))
    assert {f.code: f.severity for f in findings} == EXPECTED[name]["findings"]
    for f in findings:
        # Every warning and failure says what it breaks and how to fix it, every value filled in.
        assert f.detail
        if f.severity != "ok":
            assert f.breaks and f.fix and "{" not in f.breaks + f.fix, f


def test_a_64_bit_kernel_over_a_32_bit_userland_is_named_and_pinning_the_arch_answers_it(book: Book) -> None:
    facts = _facts("armhf-on-aarch64")
    assert (facts.node.machine, facts.kernel_bits, facts.userland, facts.userland_bits) == ("aarch64", 64, "armhf", 32)
    arch = next(f for f in judge(facts, book) if f.code == "arch")
    assert "aarch64" in arch.breaks and "armhf" in arch.breaks and "arch: arm" in arch.fix
    pinned = next(f for f in judge(facts, book, NodeContext(arch="arm")) if f.code == "arch")
    assert pinned.severity == "ok" and "pinned to arm" in pinned.detail


def test_the_memory_cgroup_effective_and_configured(book: Book) -> None:
    facts = _facts("bookworm-v2-swap")  # v2 root without memory, cmdline.txt silent
    memory = next(f for f in judge(facts, book) if f.code == "cgroup.memory")
    assert "cgroup_enable=memory" in memory.fix and "/boot/firmware/cmdline.txt" in memory.fix
    cases = {(False, True): "fail", (True, False): "warn", (True, None): "ok", (True, True): "ok"}
    for (effective, configured), severity in cases.items():
        f = replace(facts, memory_effective=effective, memory_configured=configured)
        got = next(x for x in judge(f, book) if x.code == "cgroup.memory")
        assert got.severity == severity, (effective, configured)
    pending = replace(facts, memory_effective=False, memory_configured=True)
    assert "reboot" in next(x for x in judge(pending, book) if x.code == "cgroup.memory").fix


def test_cgroup_v2_fails_with_a_docker_that_knows_only_v1(book: Book) -> None:
    facts = _facts("bookworm-v2-swap")
    old = replace(facts, node=replace(facts.node, versions={"docker": "1.11.2", "systemd": "215"}))
    hierarchy = next(f for f in judge(old, book) if f.code == "cgroup.hierarchy")
    assert hierarchy.severity == "fail" and "1.11.2" in hierarchy.breaks and "unified_cgroup_hierarchy=0" in hierarchy.fix


def test_throttling_bits(book: Book) -> None:
    facts = _facts("hypriot-2016")
    for value, severity, word in [(0x0, "ok", "none"), (0x1, "fail", "under-voltage"), (0x4, "warn", "throttled"),
                                  (0x8, "warn", "soft temperature"), (0x50000, "warn", "since boot"),
                                  (0x50005, "fail", "under-voltage")]:
        power = next(f for f in judge(replace(facts, throttled=value), book) if f.code == "power")
        assert power.severity == severity and word in power.detail, hex(value)


def test_a_clock_off_by_a_minute_warns_and_by_two_days_fails(book: Book) -> None:
    facts = _facts("hypriot-2016")
    for skew, severity in [(0.0, "ok"), (60.0, "warn"), (-2 * 86400.0, "fail")]:
        clock = next(f for f in judge(replace(facts, skew=skew, clock=1480000000 + int(skew)), book) if f.code == "clock")
        assert clock.severity == severity, skew


def test_busybox_df_and_the_uptime_clock(book: Book) -> None:
    facts = _facts("clock-1970")
    assert facts.disks["root"].mount == "/" and facts.disks["boot"].mount == "/boot"
    assert facts.disks["boot"].avail_kb == 44306
    assert facts.fsync is not None and facts.fsync.clock == "cs" and facts.fsync.writes_ms == (0, 0, 10, 0, 0)
    fsync = next(f for f in judge(facts, book) if f.code == "fsync")
    assert "hundredths" in fsync.detail


def test_a_slow_card_on_the_master_gets_etcd_timeouts_tuned_from_the_measure(book: Book) -> None:
    facts = _facts("bookworm-v2-swap")
    assert facts.fsync is not None and facts.fsync.max_ms == pytest.approx(44.9) and facts.fsync.base_ms == 2.4
    slow = next(f for f in judge(facts, book, NodeContext(runs_etcd=True)) if f.code == "fsync")
    assert slow.severity == "warn" and "44.9 ms" in slow.breaks
    assert "default timeouts still cover" in slow.fix  # 1.5 x 44.9 ms is below etcd's 100 ms heartbeat
    assert (slow.data["heartbeat_interval_ms"], slow.data["election_timeout_ms"]) == (100, 1000)
    slower = replace(facts, fsync=Fsync("/var/lib/kubernetes", "ns", (120.0, 180.0, 95.0), 2.0))
    tuned = next(f for f in judge(slower, book, NodeContext(runs_etcd=True)) if f.code == "fsync")
    assert tuned.severity == "warn" and "--heartbeat-interval=270 --election-timeout=2700" in tuned.fix
    awful = replace(facts, fsync=Fsync("/var/lib/kubernetes", "ns", (1500.0,), 2.0))
    very = next(f for f in judge(awful, book, NodeContext(runs_etcd=True)) if f.code == "fsync")
    assert very.severity == "fail" and "--election-timeout=22500" in very.fix
    # A worker runs no etcd: its card is reported, not judged.
    assert next(f for f in judge(facts, book) if f.code == "fsync").severity == "ok"


def test_a_measure_left_out_is_no_warning(book: Book) -> None:
    # The cheap checks of `piprov up`: the script says it left the measure out; not a finding of the card.
    facts = replace(_facts("hypriot-2016"), fsync=None, fsync_skipped=True)
    fsync = next(f for f in judge(facts, book, NodeContext(runs_etcd=True)) if f.code == "fsync")
    assert fsync.severity == "ok" and "left out" in fsync.detail
    cheap = check_command(book.probe, fsync=False)
    assert "conv=fsync" not in cheap and "mktemp" not in cheap and "fsync - !skipped" in cheap


def test_etcd_timeouts_follow_the_tuning_guide(book: Book) -> None:
    t = book.etcd
    assert etcd_timeouts(0.5, t) == (100, 1000)  # etcd's defaults are the floor
    assert etcd_timeouts(200, t) == (300, 3000)  # heartbeat 1.5 x the write, election 10 x the heartbeat
    heartbeat, election = etcd_timeouts(10_000, t)
    assert election == 50_000 and heartbeat * 10 <= election  # etcd refuses an election timeout above 50 s


GARBAGE = [
    ("", "it is empty"),
    ("PIPROV-CHECK-BEGIN 1\nuname armv7l\n", "truncated"),
    ("PIPROV-CHECK-BEGIN 1\nuname armv7l\nPIPROV-CHECK-END 5\n", "mangled"),
    ("PIPROV-CHECK-BEGIN 1\nuname armv7l\nhostname x\nkernel 4.4\nwhatever 1\nPIPROV-CHECK-END 4\n", "record 4"),
    ("PIPROV-CHECK-BEGIN 1\nuname armv7l\nhostname x\nkernel 4.4\ndf root / bm90IGRm\nPIPROV-CHECK-END 4\n",
     "not `df -P -k`'s"),
    ("PIPROV-CHECK-BEGIN 1\nuname armv7l\nhostname x\nkernel 4.4\nthrottled 12\nPIPROV-CHECK-END 4\n", "record 4"),
    ("PIPROV-CHECK-BEGIN 1\nuname armv7l\nhostname x\nfsyncwrite sync 1 2\nPIPROV-CHECK-END 3\n", "record 3"),
    ("PIPROV-CHECK-BEGIN 1\nuname armv7l\nhostname x\nfsync - !skipped\nfsyncwrite base 1 2\nPIPROV-CHECK-END 4\n",
     "record 4"),
    ("PIPROV-CHECK-BEGIN 1\nuname armv7l\nhostname x\nPIPROV-CHECK-END 2\n", "no kernel release"),
    ("PIPROV-FACTS-BEGIN 1\nuname armv7l\nPIPROV-FACTS-END 1\n", "no check in it"),
]


@pytest.mark.parametrize("text,what", GARBAGE, ids=[w for _, w in GARBAGE])
def test_garbage_is_a_check_error_naming_the_host(text: str, what: str) -> None:
    with pytest.raises(CheckError) as e:
        parse_check("rpi-node-9", text, asked=0, answered=1)
    assert e.value.host == "rpi-node-9" and what in e.value.message and e.value.hint
    assert "check output" in e.value.message
    assert isinstance(e.value, FactsError)  # what catches a node's unreadable facts catches this too


def test_the_book_names_file_and_line_of_a_wrong_placeholder(tmp_path: Path) -> None:
    text = (Path(load_book().path)).read_text().replace("only {free_mb} MB free on {mount}: the images",
                                                       "only {free} MB free on {mount}: the images")
    (tmp_path / "check").mkdir()
    (tmp_path / "check" / "checks.yaml").write_text(text)
    with pytest.raises(CheckError) as e:
        load_book(tmp_path)
    assert e.value.location is not None and e.value.location.line and "{free}" in e.value.message
    _load.cache_clear()


def test_the_script_asks_only_for_plain_paths(book: Book) -> None:
    with pytest.raises(CheckError):
        check_command(replace(book.probe, fsync_dirs=("/var/lib; rm -rf /",)))
    script = check_command(book.probe)
    assert "/var/lib/kubernetes /var/lib" in script and "conv=fsync" in script and "rm -f \"$tf\"" in script


# -- the CLI, over a fake SSH transport answering with the data files -----------------------------------

ANSWERS = {"rpi-master": "hypriot-2016", "rpi-node-1": "clock-1970", "rpi-node-2": "bookworm-v2-swap"}


@pytest.fixture
def fake_nodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Nodes answer the check with the data files; rpi-node-2 is unreachable. Returns the commands sent."""
    sent: list[str] = []

    def fake_run(self: SshTransport, command: str, *, sudo: bool = False, stdin: bytes | None = None,
                 timeout: float | None = None) -> CommandResult:
        sent.append(command)
        if self.node.name == "rpi-node-2":
            raise UnreachableError("nothing answered at 192.0.2.102:22 (connection refused)", host=self.host)
        text = (DATA / f"{ANSWERS[self.node.name]}.txt").read_text()
        return CommandResult(self.host, command, 0, text, "", 0.1)

    monkeypatch.setattr(SshTransport, "run", fake_run)
    monkeypatch.setattr(check_run, "now", lambda: 1480000122.0)
    monkeypatch.setattr(out, "width", 1000)
    return sent


def test_check_all_ok_exits_0(inv: Path, fake_nodes: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["check", "rpi-master", "-i", str(inv)]) == EXIT_OK
    text = capsys.readouterr().out
    assert "rpi-master" in text and "memory cgroup" in text and "fix:" not in text
    assert len(fake_nodes) == 1  # one round trip


def test_a_failed_finding_exits_3_and_says_what_breaks_and_the_fix(inv: Path, fake_nodes: list[str],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["check", "rpi-node-1", "-i", str(inv)]) == EXIT_CHECK_FAILED
    text = capsys.readouterr().out
    assert "✗ fail" in text and "breaks:" in text and "timedatectl set-ntp true" in text


def test_an_unreachable_node_exits_1_and_the_others_are_still_judged(inv: Path, fake_nodes: list[str],
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["check", "-i", str(inv), "--json"]) == EXIT_ERROR
    doc = json.loads(capsys.readouterr().out)
    nodes = {n["node"]: n for n in doc["nodes"]}
    assert list(nodes) == ["rpi-master", "rpi-node-1", "rpi-node-2"] and doc["ok"] is False
    assert "connection refused" in nodes["rpi-node-2"]["error"] and nodes["rpi-node-2"]["findings"] == []
    master = nodes["rpi-master"]
    assert master["worst"] == "ok" and master["facts"]["flavour"] == "hypriotos"
    assert master["facts"]["fsync"]["directory"] == "/var/lib/kubernetes"
    assert {f["code"] for f in master["findings"]} >= {"cgroup.memory", "fsync", "clock", "power"}
    clock = next(f for f in nodes["rpi-node-1"]["findings"] if f["code"] == "clock")
    assert clock["severity"] == "fail" and clock["breaks"] and clock["fix"]


def test_an_unknown_node_is_a_usage_error(inv: Path, fake_nodes: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["check", "rpi-node-9", "-i", str(inv)]) == EXIT_USAGE
    assert "rpi-node-9" in capsys.readouterr().err and fake_nodes == []


def test_check_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["check", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in ("Changes nothing", "--json", "fsync", "cmdline.txt", "3 a finding fails", "checks.yaml"):
        assert words in text


def test_check_fix_without_a_terminal_wants_yes_and_changes_nothing(inv: Path, fake_nodes: list[str],
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # rpi-node-1 (clock-1970) has nothing --fix mends; rpi-master neither: only the check ran.
    assert run(["check", "--fix", "rpi-master", "rpi-node-1", "-i", str(inv)]) == EXIT_CHECK_FAILED
    assert "nothing piprov can mend" in capsys.readouterr().err and len(fake_nodes) == 2


def test_check_fix_of_a_node_with_fixes_needs_yes(inv: Path, fake_nodes: list[str], monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(ANSWERS, "rpi-node-1", "bookworm-v2-swap")
    assert run(["check", "--fix", "rpi-node-1", "-i", str(inv)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--yes" in err and "cgroup_enable=memory cgroup_memory=1" in err and "swap off" in err
    assert len(fake_nodes) == 1  # the check, and nothing else was sent
