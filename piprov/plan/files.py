"""Planning one managed file: is it as desired, and if not, what differs (with a diff)."""

from __future__ import annotations

import difflib

from piprov.facts.model import FileFacts
from piprov.plan.desired import DesiredFile
from piprov.plan.model import FileChange

MAX_DIFF_LINES = 400


def unified_diff(path: str, old: bytes | None, new: bytes, old_size: int | None = None) -> str:
    """A unified diff of a file, or a one-line note when it cannot be shown."""
    if old is None and old_size is not None:
        return f"(old content of {path} not read: {old_size} bytes, larger than the facts limit)\n"
    try:
        old_text = "" if old is None else old.decode("utf-8")
        new_text = new.decode("utf-8")
    except UnicodeDecodeError:
        return f"(binary content of {path} differs)\n"
    lines = list(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile="/dev/null" if old is None else f"a{path}",
            tofile=f"b{path}",
        )
    )
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... ({len(lines) - MAX_DIFF_LINES} more diff lines)\n"]
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def plan_file(desired: DesiredFile, current: FileFacts) -> FileChange | None:
    """What to do about one managed file, or None when it is as desired."""
    if not current.exists:
        reason = "new file"
    elif not current.is_regular:
        reason = "exists but is not a regular file"
    elif current.sha256 != desired.sha256:
        reason = "secret changed" if desired.secret else "content differs"
    else:
        drift = []
        if current.mode != desired.mode:
            drift.append(f"mode {current.mode or 0:04o} -> {desired.mode:04o}")
        if (current.owner, current.group) != (desired.owner, desired.group):
            drift.append(f"owner {current.owner}:{current.group} -> {desired.owner}:{desired.group}")
        if not drift:
            return None
        reason = ", ".join(drift)
    old_sha = current.sha256 if current.exists and current.is_regular else None
    content_differs = old_sha != desired.sha256
    if content_differs and desired.secret:
        # Not world-readable (a private key, a kubeconfig naming one): no
        # diff, so no byte of it is in the plan, in --json or in a log.
        diff = ""
    elif content_differs:
        diff = unified_diff(desired.path, current.content if old_sha else None, desired.content, current.size if old_sha else None)
    else:
        diff = ""
    return FileChange(
        path=desired.path,
        content=desired.content,
        mode=desired.mode,
        owner=desired.owner,
        group=desired.group,
        old_sha256=old_sha,
        new_sha256=desired.sha256,
        diff=diff,
        reason=reason,
        component=desired.component,
        redacted=desired.redacted,
    )
