"""``playbooks/check/checks.yaml`` typed: where the check looks, its thresholds, and each finding's words.

The YAML is the stack knowledge (what breaks, how to fix it, where ok ends);
the judge (:mod:`piprov.check.judge`) only picks a finding's variant and fills
in the values the finding lists. Every problem is a :class:`CheckError` at
file:line:column.
"""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from piprov import yamlsrc
from piprov.check.command import Probe
from piprov.check.model import SEVERITIES, Finding, Severity
from piprov.errors import CheckError
from piprov.facts.model import PATH_RE

BOOK_FILE = Path("check") / "checks.yaml"
_CODE_RE = re.compile(r"^[a-z][a-z0-9_.]*$")
_PROGRAM_RE = re.compile(r"^(/[A-Za-z0-9._/@+-]+|[A-Za-z0-9._+-]+)$")


@dataclass(frozen=True)
class Limits:
    """A warn and a fail line of one measure (fail beyond warn)."""

    warn: float
    fail: float


@dataclass(frozen=True)
class Thresholds:
    root_free_mb: Limits
    boot_free_mb: Limits
    min_year: int
    warn_skew_seconds: float
    fail_skew_seconds: float
    fsync_ms: Limits
    cgroup2_min_docker: str


@dataclass(frozen=True)
class EtcdTuning:
    component: str
    heartbeat_default_ms: int
    election_default_ms: int
    heartbeat_per_write: float
    election_per_heartbeat: float
    round_ms: int
    election_max_ms: int


@dataclass(frozen=True)
class Variant:
    severity: Severity
    breaks: str = ""
    fix: str = ""


@dataclass(frozen=True)
class FindingText:
    title: str
    values: tuple[str, ...]
    variants: Mapping[str, Variant]


@dataclass(frozen=True)
class Book:
    probe: Probe
    thresholds: Thresholds
    etcd: EtcdTuning
    findings: Mapping[str, FindingText]
    sources: tuple[str, ...]
    path: Path

    def ok(self, code: str, detail: str, **data: Any) -> Finding:
        return Finding(code, self._text(code).title, "ok", detail, data=data)

    def finding(self, code: str, variant: str, detail: str, *, data: Mapping[str, Any] | None = None,
                **values: object) -> Finding:
        """The finding ``code`` in its ``variant``, its words filled in with ``detail`` and ``values``."""
        text = self._text(code)
        v = text.variants.get(variant)
        if v is None:
            raise CheckError(f"{self.path}: findings.{code} has no variant {variant!r}")
        fill = {"detail": detail, **{k: str(x) for k, x in values.items()}}
        missing = [k for k in text.values if k not in fill]
        if missing:
            raise CheckError(f"findings.{code}: the judge gave no {', '.join(missing)}")
        return Finding(code, text.title, v.severity, detail, v.breaks.format_map(fill), v.fix.format_map(fill),
                       dict(data or {}))

    def _text(self, code: str) -> FindingText:
        try:
            return self.findings[code]
        except KeyError:
            raise CheckError(f"{self.path}: no finding {code!r}") from None


def load_book(playbooks_dir: Path | None = None) -> Book:
    """The check book under ``playbooks_dir`` (default: the data directory's playbooks/)."""
    from piprov import resources

    return _load(Path(playbooks_dir or resources.playbooks_dir()).resolve() / BOOK_FILE)


@functools.lru_cache(maxsize=4)
def _load(path: Path) -> Book:
    doc = yamlsrc.load_file(path, CheckError, what="the check book")
    r = yamlsrc.Reader(CheckError, str(path), doc, "checks.yaml", (0, 0))
    r.check_keys(["version", "probe", "thresholds", "etcd", "sources", "findings"])
    if r.data.get("version") != 1:
        raise r.err("version" if "version" in r.data else None, "version must be 1")
    findings = r.sub("findings", r.data.get("findings"), "findings")
    return Book(_probe(r.sub("probe", r.data.get("probe"), "probe")),
                _thresholds(r.sub("thresholds", r.data.get("thresholds"), "thresholds")),
                _etcd(r.sub("etcd", r.data.get("etcd"), "etcd")),
                {str(code): _finding(findings, str(code)) for code in findings.data},
                r.str_list("sources"), path)


def _number(r: yamlsrc.Reader[CheckError], key: str, low: float = 0) -> float:
    v = r.data.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < low:
        raise r.err(key if key in r.data else None, f"{key!r} must be a number >= {low}")
    return float(v)


def _limits(r: yamlsrc.Reader[CheckError], key: str, *, higher_is_worse: bool) -> Limits:
    sub = r.sub(key, r.data.get(key), f"{r.where}.{key}")
    sub.check_keys(["warn", "fail"])
    warn, fail = _number(sub, "warn"), _number(sub, "fail")
    if (fail < warn) if higher_is_worse else (fail > warn):
        raise sub.err("fail", "fail must lie beyond warn")
    return Limits(warn, fail)


def _probe(r: yamlsrc.Reader[CheckError]) -> Probe:
    r.check_keys(["cmdline", "boot", "fsync_dirs", "fsync_writes", "fsync_bytes", "vcgencmd"])
    lists = {k: r.str_list(k, PATH_RE) for k in ("cmdline", "boot", "fsync_dirs")}
    for k, v in lists.items():
        if not v:
            raise r.err(k if k in r.data else None, f"{k!r} needs at least one path")
    return Probe(lists["cmdline"], lists["boot"], lists["fsync_dirs"], r.str_list("vcgencmd", _PROGRAM_RE),
                 int(_number(r, "fsync_writes", 1)), int(_number(r, "fsync_bytes", 512)))


def _thresholds(r: yamlsrc.Reader[CheckError]) -> Thresholds:
    r.check_keys(["root_free_mb", "boot_free_mb", "clock", "fsync_ms", "cgroup2_min_docker"])
    clock = r.sub("clock", r.data.get("clock"), "thresholds.clock")
    clock.check_keys(["min_year", "warn_skew_seconds", "fail_skew_seconds"])
    return Thresholds(_limits(r, "root_free_mb", higher_is_worse=False), _limits(r, "boot_free_mb", higher_is_worse=False),
                      int(_number(clock, "min_year", 1970)), _number(clock, "warn_skew_seconds"),
                      _number(clock, "fail_skew_seconds"), _limits(r, "fsync_ms", higher_is_worse=True),
                      r.text("cgroup2_min_docker"))


def _etcd(r: yamlsrc.Reader[CheckError]) -> EtcdTuning:
    keys = ["heartbeat_default_ms", "election_default_ms", "heartbeat_per_write", "election_per_heartbeat",
            "round_ms", "election_max_ms"]
    r.check_keys(["component", *keys])
    n = {k: _number(r, k, 1) for k in keys}
    return EtcdTuning(r.text("component"), int(n["heartbeat_default_ms"]), int(n["election_default_ms"]),
                      n["heartbeat_per_write"], n["election_per_heartbeat"], int(n["round_ms"]),
                      int(n["election_max_ms"]))


def _finding(findings: yamlsrc.Reader[CheckError], code: str) -> FindingText:
    if not _CODE_RE.match(code):
        raise findings.err(code, f"finding code {code!r} is not valid")
    r = findings.sub(code, findings.data[code], f"findings.{code}")
    values = r.str_list("values", re.compile(r"^[a-z_]+$"))
    variants = {}
    for name in r.data:
        if name in ("title", "values"):
            continue
        v = r.sub(name, r.data[name], f"findings.{code}.{name}")
        v.check_keys(["severity", "breaks", "fix"])
        severity = next((s for s in SEVERITIES if s == v.text("severity")), None)
        if severity is None:
            raise v.err("severity", f"severity must be one of {', '.join(SEVERITIES)}")
        words = {k: v.text(k) if severity != "ok" else v.text(k, "-").strip("-") for k in ("breaks", "fix")}
        for k, text in words.items():
            _check_fields(v, k, text, {"detail", *values})
        variants[str(name)] = Variant(severity, words["breaks"], words["fix"])
    return FindingText(r.text("title"), values, variants)


def _check_fields(r: yamlsrc.Reader[CheckError], key: str, text: str, allowed: set[str]) -> None:
    """Every {name} in ``text`` is one the judge fills in."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as e:
        raise r.err(key, f"{key!r}: {e}") from None
    unknown = sorted(n for n in names if n not in allowed)
    if unknown:
        raise r.err(key, f"{key!r} uses {', '.join('{' + n + '}' for n in unknown)}; it may use "
                    f"{', '.join('{' + n + '}' for n in sorted(allowed))}")
