"""The outcome of parsing one answer against one gold, shared by the per-task scorers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """``parsed``: the normalised prediction (``None`` if nothing was read); ``hedged``: the answer held two or
    more different candidates (always wrong under ``fixed``)."""

    correct: bool
    parsed: str | None
    hedged: bool = False
