"""Errors of the lab, in piprov's one exception tree."""

from __future__ import annotations

from piprov.errors import PiprovError


class LabError(PiprovError):
    """The virtual Pi lab cannot do what was asked; nothing was changed."""
