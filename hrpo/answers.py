"""Answer extraction and per-task normalisers (spec 4.3), in a ``fixed`` and an ``original`` variant.

The implementation lives in :mod:`hrpo.scoring` (one module per task); this module keeps the helper names
other code imports. The rules are documented rule by rule, with examples, in ``tasks/README.md`` ("Scoring"):

* ``fixed`` (default) -- one answer or nothing: the first line after the last delimiter is read (plus lines of
  a still-open math group and ``or ...`` lines); two or more different candidates are a hedge and wrong.
* ``original`` -- the authors' ``utils.py`` parsers exactly, bugs included (:mod:`hrpo.scoring.original`).
"""

from __future__ import annotations

from typing import Literal

from hrpo.scoring import choice, gsm8k, latex, math_answer, original, qa, verify
from hrpo.scoring.choice import LETTERS
from hrpo.scoring.latex import last_boxed, strip_math
from hrpo.scoring.region import DEFAULT_DELIMITER, answer_region, delimiter_count, extract_answer

Compat = Literal["fixed", "original"]

__all__ = [
    "DEFAULT_DELIMITER",
    "LETTERS",
    "Compat",
    "answer_region",
    "delimiter_count",
    "extract_answer",
    "last_boxed",
    "math_candidates",
    "math_verify_equal",
    "normalize_gsm8k",
    "normalize_qa",
    "parse_choice",
    "qa_exact_match",
    "qa_f1",
    "strip_math",
]


def normalize_gsm8k(text: str, compat: Compat = "fixed") -> str | None:
    """Canonical number of a GSM8K answer (``fixed``: ``None`` if there is none or several)."""
    return original.gsm8k(text) if compat == "original" else gsm8k.normalize(text)


def math_candidates(answer: str, compat: Compat = "fixed", gold: str = "") -> list[str]:
    """Normalised candidate answers of an extracted MATH answer (``fixed``: more than one = a hedge)."""
    if compat == "original":
        return [original.math(answer)]
    return [latex.strip_math(c) for c in math_answer.candidates(answer, gold)[0]]


def math_verify_equal(gold: str, answer: str, timeout: float = verify.DEFAULT_TIMEOUT) -> bool:
    """Symbolic equivalence with math-verify (False if unavailable, unparsable or past ``timeout``)."""
    return bool(verify.equal(gold, answer, timeout))


def parse_choice(answer: str, choices: list[str] | None = None, compat: Compat = "fixed") -> str | None:
    """The option letter an answer names (``fixed``: ``None`` for none or a hedge; ``original``: its text)."""
    return original.mmlu(answer) if compat == "original" else choice.parse(answer, choices)[0]


def normalize_qa(s: str) -> str:
    """SQuAD normalisation after Unicode folding (quotes, dashes, accents)."""
    return qa.normalize(s)


def qa_exact_match(answer: str, aliases: list[str]) -> bool:
    return qa.judge(answer, aliases).correct


def qa_f1(answer: str, aliases: list[str]) -> float:
    """Token-level F1 against the best alias (SQuAD)."""
    return qa.f1(answer, aliases)
