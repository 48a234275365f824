"""Multiple-choice answers (``compat="fixed"``): the answer line names exactly one option.

Read as option X: ``X``, ``(X)``, ``[X]``, ``X.``, ``X:``, ``X)`` alone (lower case too, as the whole answer);
``X) text`` / ``X. text`` / ``X - text`` (a capital letter; a lower-case one only with its own option text);
``The answer is X`` / ``Option X`` / ``**X**`` / ``\\boxed{X}``; the full text of exactly one option (case,
spacing, ``$`` and a final ``.`` ignored; compared as plain strings, so ``$`` or regex-special option text is
fine). A capital option letter anywhere else on the line also names that option. Naming two options -- two
letters (``C and B``, ``C or B``, ``C because option B is incorrect``), or a letter plus the full text of
another option -- is a hedge (wrong): the line after the delimiter must state the answer, not discuss others.
Letters inside the named option's own text (``B. Vitamin C``) do not count. Where option texts are letters
themselves (MMLU has options ``C`` or ``c``): a lone capital letter is always a letter; a lone lower-case letter
that is exactly an option's text is that option. Only the answer line is read, so an option whose text spans
several lines can be named by its letter only.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from hrpo.scoring.region import clean
from hrpo.scoring.verdict import Verdict

LETTERS = "ABCDEFGHIJ"
_WRAPPER = re.compile(r"\\(?:boxed|text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
_OPTION_WORD = re.compile(r"\b(?:option|choice)\s+(?=[(\[]?[A-Ja-j]\b)", re.IGNORECASE)
_LONE = re.compile(r"[(\[]?([A-Ja-j])[)\]]?[.:]?")
_LEADING = re.compile(r"[(\[]?([A-Ja-j])(?:[)\]]\s*[.:]?|[.:]|\s+[-\u2013\u2014]\s)\s*(.+)", re.DOTALL)


def _prep(s: str) -> str:
    """LaTeX wrappers (``\\boxed{}``, ``\\text{}``) unwrapped and ``$`` dropped, in answers and options alike."""
    for _ in range(2):
        s = _WRAPPER.sub(r"\1", s)
    return s.replace("$", "")


def _exact(s: str) -> str:
    return " ".join(_prep(s).replace("**", "").strip().rstrip(".").split())


def _key(s: str) -> str:
    """Comparison form of an option text: as :func:`_exact`, case-folded."""
    return _exact(s).casefold()


def _letters(s: str, allowed: str) -> list[str]:
    found = re.findall(rf"(?<![A-Za-z0-9'\u2019])([{allowed}])(?![A-Za-z0-9'\u2019])", s)
    return list(dict.fromkeys(found))


def _mentions(s: str, key: str) -> bool:
    return len(key) >= 3 and re.search(rf"(?<!\w){re.escape(key)}(?!\w)", _key(s)) is not None


def _remove(s: str, text: str) -> str:
    """``s`` without the option text ``text`` (texts under 3 characters, e.g. an option "C", stay)."""
    return re.sub(re.escape(text.strip()), " ", s, flags=re.IGNORECASE) if len(text.strip()) >= 3 else s


def parse(answer: str, choices: list[str] | None = None) -> tuple[str | None, bool]:
    """``(letter or None, hedged)`` for an answer line."""
    s = clean(_OPTION_WORD.sub("", _prep(clean(answer))).strip())
    allowed = LETTERS[: len(choices)] if choices else LETTERS
    keys = [_key(c) for c in choices] if choices else []
    text_of = dict(zip(allowed, [_prep(c) for c in choices or []], strict=False))

    def other_text(letter: str, rest: str) -> bool:  # the full text of another option is named too
        own = keys[allowed.index(letter)] if keys else ""
        return any(_mentions(rest, k) and k != own for i, k in enumerate(keys) if allowed[i] != letter)

    def by_text(key: str, form: Callable[[str], str]) -> str | None:
        hits = [allowed[i] for i, c in enumerate(choices or []) if form(c) == key]
        return hits[0] if len(hits) == 1 else None

    lone = _LONE.fullmatch(s)
    if lone and lone.group(1).isupper() and lone.group(1) in allowed:  # a capital letter first (options "C")
        return lone.group(1), False
    if choices and (hit := by_text(_exact(s), _exact)):  # exact option text ("Bb Bb" vs "Bb bb")
        return hit, False
    if lone:  # a lower-case letter, unless it is an option's exact text (then it is that option, above)
        letter = lone.group(1).upper()
        return (letter, False) if letter in allowed else (None, False)
    if choices and _key(s) in keys:  # option text, case-folded
        return by_text(_key(s), _key), False
    if (m := _LEADING.fullmatch(s)) and m.group(1).upper() in allowed:
        letter, rest = m.group(1).upper(), m.group(2).strip()
        if keys and _key(rest) == keys[allowed.index(letter)]:
            return letter, False
        if keys and _key(rest) in keys:
            return None, True  # "B) <text of option C>": contradicted by its own text
        if m.group(1).islower():
            return None, False  # a lower-case letter in prose is not read
        others = set(_letters(_remove(rest, text_of.get(letter, "")), allowed)) - {letter}
        return (None, True) if others or other_text(letter, rest) else (letter, False)
    found = _letters(s, allowed)
    if len(found) > 1:  # letters inside the named option's own text do not count
        named = [x for x in found if set(_letters(_remove(s, text_of.get(x, "")), allowed)) <= {x}]
        if len(named) != 1:
            return None, True
        found = named
    if not found:
        return None, False
    letter = found[0]
    return (None, True) if other_text(letter, _remove(s, text_of.get(letter, ""))) else (letter, False)


def judge(answer: str, gold: str, choices: list[str] | None = None) -> Verdict:
    letter, hedged = parse(answer, choices)
    return Verdict(letter is not None and letter == gold.strip().upper(), letter, hedged)
