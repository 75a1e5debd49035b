"""Versions as piprov reads them: from image tags and from programs' version strings.

Its own room (imports nothing of piprov): the facts read versions on nodes and
the support matrix (:mod:`piprov.graph.versions`) compares them, and neither
may import the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Lenient, as tags and `--version` outputs are: "v1.1.2", "3.4.13-0" (a build
# suffix), "17.05.0-ce", "20.10.24+dfsg1", "252" (systemd), "2.1".
_VERSION_RE = re.compile(r"^v?([0-9]{1,6})(?:\.([0-9]{1,6}))?(?:\.([0-9]{1,6}))?(?:[-+~].*)?$")


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int = 0
    patch: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def parse_version(text: str) -> Version | None:
    """The version a tag or a program's version word names, or None when it names none ("latest")."""
    m = _VERSION_RE.match(text.strip())
    if m is None:
        return None
    return Version(int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0))
