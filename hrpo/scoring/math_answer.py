"""MATH answers (``compat="fixed"``): one LaTeX value, equal to the gold after the normaliser or by math-verify.

Candidates: every ``\\boxed{}`` on the answer line if there is one; else every math span (``$..$`` ...); else
the whole line (an answer prefix such as ``The answer is`` removed; a single trailing unit word dropped after a
number). Each candidate is split at top-level ``or`` (a plain word or ``\\text{ or }``) and ``;``, and, when the
gold is a single value, also at top-level ``and`` and commas (a list gold such as ``3, 5, 7`` or
``19 \\text{ and } 43`` is compared as a whole list). Two or more different candidates are a
hedge (wrong); the same value repeated is one answer. There is no last-number fallback (``7^{2}`` is 49).
"""

from __future__ import annotations

import re
from functools import lru_cache

from hrpo.scoring import verify
from hrpo.scoring.latex import (
    all_boxed,
    join_thousands,
    outside_spans,
    same,
    spans,
    split_top_level,
    strip_math,
)
from hrpo.scoring.region import clean
from hrpo.scoring.verdict import Verdict

# Alternatives: "or", ";", and layout that puts two values side by side (a LaTeX line break, \quad, "&").
_OR = re.compile(
    r"\s*(?:\\(?:text|mbox|textrm|mathrm)\s*\{\s*or\s*\}|\bor\b|(?<!\\);|\\\\|\\q?quad\b|&)\s*",
    re.IGNORECASE,
)
_LIST = re.compile(r"\s*(?:\\(?:text|mbox|textrm|mathrm)\s*\{\s*and\s*\}|\band\b|(?<!\\),)\s*", re.IGNORECASE)
_COMMA = re.compile(r"\s*,\s*")
_TEXT = re.compile(r"\\(?:text|mbox|textrm|mathrm)\s*\{([^{}]*)\}")
# "\boxed{5} or 6", "$4$ or 5": an alternative offered outside the boxes/spans.
_OR_AFTER = re.compile(r"(?:\bor\b|\\text\{\s*or\s*\})\s*\S", re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\}")
_ASSIGNMENT = re.compile(r"[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?\s*=\s*(.+)", re.DOTALL)
_RELATION = re.compile(
    r"=|<|>|\\(?:approx|neq?|leq?|geq?|leqslant|geqslant|sim|simeq|equiv|cong|to|implies|Rightarrow|iff|lt|gt)(?![A-Za-z])"
)
_ELLIPSIS = re.compile(r"\\[lcv]?dots|\.\.\.")
_NUMBER_UNIT = re.compile(r"(-?[0-9][0-9,]*(?:\.[0-9]+)?)\s+[A-Za-z]{2,12}\.?")


def _raw_candidates(answer: str) -> tuple[list[str], bool]:
    """The candidate strings and whether the text around the spans offers an alternative (``$4$ or 5``)."""
    boxed = all_boxed(answer)
    if boxed:
        return boxed, bool(_OR_AFTER.search(_BOXED.sub(" ", answer)))
    found = spans(answer)
    if found:
        return found, bool(_OR_AFTER.search(outside_spans(answer)))
    m = _NUMBER_UNIT.fullmatch(answer)
    return [m.group(1) if m else answer], False


@lru_cache(maxsize=8192)
def normalised_gold(gold: str) -> str:
    return strip_math(gold)


def candidates(answer: str, gold: str) -> tuple[list[str], bool]:
    """``(raw candidates, hedged)`` of an answer line: distinct after the normaliser."""
    raw, hedged = _raw_candidates(clean(answer))
    list_gold = len(split_top_level(normalised_gold(gold), _COMMA)) > 1
    pieces: list[str] = []
    for cand in raw:
        ors = split_top_level(cand, _OR)
        if len(ors) == 1:  # "\text{east or west}": alternatives inside a text wrapper count too
            ors = split_top_level(_TEXT.sub(r" \1 ", cand), _OR)
            ors = ors if len(ors) > 1 else [cand]
            hedged = hedged or bool(_OR_AFTER.search(_TEXT.sub(r" \1 ", cand)))  # "5 \text{ (or 6)}"
        for part in ors:
            pieces.extend([part] if list_gold else split_top_level(join_thousands(part), _LIST))
    out: list[str] = []
    seen: list[str] = []
    for piece in pieces:
        norm = strip_math(piece)
        if norm and not any(same(norm, s) for s in seen):
            seen.append(norm)
            out.append(piece)
    return out, hedged or len(out) > 1


def judge(
    answer: str, gold: str, *, use_math_verify: bool = True, timeout: float = verify.DEFAULT_TIMEOUT
) -> Verdict:
    cands, hedged = candidates(answer, gold)
    if not cands:
        return Verdict(False, None)
    parsed = strip_math(cands[0])
    if hedged:
        return Verdict(False, parsed, hedged=True)
    if same(parsed, normalised_gold(gold)):
        return Verdict(True, parsed)
    if use_math_verify and parsed and (plain := _for_math_verify(cands[0], gold)) is not None:
        return Verdict(bool(verify.equal(gold, plain, timeout)), parsed)
    return Verdict(False, parsed)


def _for_math_verify(cand: str, gold: str) -> str | None:
    """What math-verify may see of a candidate, or ``None`` if it must not decide it.

    math-verify is a lenient extractor: it drops ``\\text{}`` content, takes the right-hand side of an
    equation or relation and the first parsable piece of a messy string, so ``5 \\text{ maybe 6}``,
    ``6 = 5``, ``5 \\approx 6`` or ``5 $6`` would "equal" 5. So: a single-variable assignment (``x = 5``)
    is reduced to its value; text groups holding a digit, relations and ellipses the gold does not have, stray
    ``$`` and nested delimiters keep a candidate to the string match; other text groups (units) are removed."""
    if m := _ASSIGNMENT.fullmatch(cand.strip()):
        cand = m.group(1) if not _RELATION.search(gold) else cand
    if any(re.search(r"[0-9]", t.group(1)) for t in _TEXT.finditer(cand)):
        return None
    if re.search(r"(?<!\\)\$|\\boxed|\\fbox|\\[()\[\]]", cand):
        return None
    for pattern in (_RELATION, _ELLIPSIS):
        if pattern.search(cand) and not pattern.search(gold):
            return None
    return _TEXT.sub(" ", cand).strip() or None
