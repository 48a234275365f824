"""Open-domain QA answers (``compat="fixed"``): exact match after Unicode folding and SQuAD normalisation.

Folding: NFKD with combining marks dropped (``José Martí`` == ``Jose Marti``), curly quotes to straight ones,
en/em dashes and minus signs to ``-``. Then SQuAD: lower-case, punctuation and articles removed, spaces
collapsed. An ``The answer is``/``Answer:`` prefix is dropped first. An answer that normalises to ``""`` is
never correct, and gold aliases that normalise to ``""`` (NQ has ``A+``, ``---``) are dropped with a warning.
Hedges: an answer that is not itself an alias but splits at ``or``, ``;`` or ``/`` -- or at ``,``/``and`` into
parts of which one is an alias -- is reported as hedged (it is wrong either way).
"""

from __future__ import annotations

import logging
import re
import string
import unicodedata
from collections import Counter
from functools import lru_cache

from hrpo.scoring.region import clean
from hrpo.scoring.verdict import Verdict

logger = logging.getLogger(__name__)

_PUNCT = frozenset(string.punctuation)
_FOLD = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    }
)  # fmt: skip
_OR_SPLIT = re.compile(r"\s+or\s+|\s*;\s*|\s+/\s+", re.IGNORECASE)
_LIST_SPLIT = re.compile(r"\s*,\s*|\s+and\s+|\s*&\s*", re.IGNORECASE)
_warned: set[str] = set()


def fold(s: str) -> str:
    """Unicode folding: quotes and dashes to ASCII, accents removed (NFKD without combining marks)."""
    s = unicodedata.normalize("NFKD", s.translate(_FOLD))
    return "".join(ch for ch in s if not unicodedata.combining(ch))


def normalize(s: str) -> str:
    """Fold, then SQuAD: lower-case, drop punctuation and articles, collapse whitespace."""
    s = "".join(ch for ch in fold(s).lower() if ch not in _PUNCT)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


@lru_cache(maxsize=65536)
def _alias_keys(aliases: tuple[str, ...]) -> tuple[str, ...]:
    keys = []
    for alias in aliases:
        key = normalize(alias)
        if key:
            keys.append(key)
        elif alias not in _warned:
            _warned.add(alias)
            logger.warning("QA gold alias %r normalises to an empty string; dropped", alias)
    return tuple(keys)


def judge(answer: str, aliases: list[str] | tuple[str, ...]) -> Verdict:
    text = clean(answer)
    pred = normalize(text)
    keys = _alias_keys(tuple(aliases))
    if not pred:
        return Verdict(False, pred)
    if pred in keys:
        return Verdict(True, pred)
    parts = [normalize(p) for p in _OR_SPLIT.split(text)]
    listed = [normalize(p) for p in _LIST_SPLIT.split(text)]
    hedged = len({p for p in parts if p}) > 1 or (
        len({p for p in listed if p}) > 1 and any(p in keys for p in listed)
    )
    return Verdict(False, pred, hedged)


def f1(answer: str, aliases: list[str] | tuple[str, ...]) -> float:
    """Token-level F1 against the best alias (SQuAD, on folded text; empty answers and aliases score 0)."""
    pred = normalize(clean(answer)).split()
    best = 0.0
    for ref in (k.split() for k in _alias_keys(tuple(aliases))):
        common = sum((Counter(pred) & Counter(ref)).values())
        if pred and common:
            p, r = common / len(pred), common / len(ref)
            best = max(best, 2 * p * r / (p + r))
    return best
