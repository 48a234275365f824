"""Generated arithmetic word problems: a task a small model can improve on within minutes on a CPU.

Rows follow :mod:`hrpo.data`'s schema with ``task="gsm8k"`` (numeric answer after ``####``), so the GSM8K
scorer, prompts and lm-eval machinery apply unchanged. ``split="train"`` and ``split="test"`` draw from disjoint
question sets (a question is assigned to a split by a hash of its text), so held-out accuracy measures
generalisation to unseen problems, not memorisation.

``level`` selects a difficulty (for calibrating the task to a model, issue 12); ``None`` (default) keeps the
original mix of four templates (roughly levels 1-3):

* 0 -- one addition or subtraction of single-digit numbers (``5 + 3``, ``9 - 4``);
* 1 -- one addition or subtraction with larger numbers (``47 + 8``, ``53 - 6``: first operand 10-99);
* 2 -- one multiplication (``7 x 6``: 2-12 times 2-9);
* 3 -- two steps (``a + b - c``: buy some, then give some away).

A list of levels draws each problem's level uniformly from it. The split hash depends on the question text
only, so a question is in the same split whatever the level mix that produced it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

# (template, answer) pairs; names and items vary so that problems do not repeat verbatim.
_NAMES = ["Ava", "Ben", "Chloe", "Dan", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jack", "Lena", "Omar"]
_ITEMS = ["apples", "pencils", "stickers", "marbles", "books", "coins", "cards", "shells"]
_TEMPLATES: list[tuple[str, Callable[[int, int], int]]] = [
    ("{n} has {a} {i}. {n} buys {b} more {i}. How many {i} does {n} have now?", lambda a, b: a + b),
    ("{n} had {a} {i} and gave away {b} of them. How many {i} does {n} have left?", lambda a, b: a - b),
    ("{n} packs {b} bags with {a} {i} in each bag. How many {i} are there in total?", lambda a, b: a * b),
    ("{n} has {a} {i} and finds {b} more, then loses 3. How many {i} does {n} have?", lambda a, b: a + b - 3),
]


def _split_of(question: str) -> str:
    """Deterministic 80/20 train/test assignment from the question text."""
    return "test" if int(hashlib.sha256(question.encode()).hexdigest(), 16) % 5 == 0 else "train"


# Difficulty levels: level -> [(template, answer, operand sampler)]; the sampler returns the operands in the
# order the template names them (a, b[, c]), already constrained so that every answer is a natural number.
_ADD, _SUB, _MUL = _TEMPLATES[0][0], _TEMPLATES[1][0], _TEMPLATES[2][0]
_TWO_STEP = "{n} has {a} {i}. {n} buys {b} more {i} and then gives away {c}. How many {i} does {n} have now?"


def _sub_operands(rng: random.Random, low: int, high: int, b_high: int) -> tuple[int, ...]:
    a = rng.randint(low, high)
    return a, rng.randint(1, min(a, b_high))


def _two_step_operands(rng: random.Random) -> tuple[int, ...]:
    a, b = rng.randint(4, 40), rng.randint(2, 9)
    return a, b, rng.randint(1, min(a + b, 20))


_LEVELS: dict[int, list[tuple[str, Callable[..., int], Callable[[random.Random], tuple[int, ...]]]]] = {
    0: [
        (_ADD, lambda a, b: a + b, lambda r: (r.randint(1, 9), r.randint(1, 9))),
        (_SUB, lambda a, b: a - b, lambda r: _sub_operands(r, 2, 9, 9)),
    ],
    1: [
        (_ADD, lambda a, b: a + b, lambda r: (r.randint(10, 99), r.randint(2, 9))),
        (_SUB, lambda a, b: a - b, lambda r: _sub_operands(r, 10, 99, 9)),
    ],
    2: [(_MUL, lambda a, b: a * b, lambda r: (r.randint(2, 12), r.randint(2, 9)))],
    3: [(_TWO_STEP, lambda a, b, c: a + b - c, _two_step_operands)],
}
LEVELS = tuple(sorted(_LEVELS))


def parse_levels(level: int | str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``None``/``"default"`` -> None (the original mix); ``2``, ``"0,1"``, ``[0, 1]`` -> sorted unique levels."""
    if level is None or (isinstance(level, str) and level.strip().lower() in ("", "default", "none")):
        return None
    if isinstance(level, str):
        items = [int(x) for x in level.replace("+", ",").split(",") if x.strip()]
    elif isinstance(level, int):
        items = [level]
    else:
        items = [int(x) for x in level]
    bad = [x for x in items if x not in _LEVELS]
    if not items or bad:
        raise ValueError(
            f"arithmetic levels must be among {LEVELS} (or None for the default mix), got {level!r}"
        )
    return tuple(sorted(set(items)))


def arithmetic_rows(
    n: int, split: str = "train", seed: int = 0, level: int | str | Sequence[int] | None = None
) -> list[dict[str, str]]:
    """``n`` distinct word problems of ``split`` ("train" or "test"); the same seed gives the same rows.

    ``level`` (an int, a list or ``"0,1"``) restricts the problems to those difficulty levels (module docstring);
    ``None`` gives the original mix, unchanged. Row ids name the level mix (``arith-L01-train-3``).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    levels = parse_levels(level)
    if levels is not None:
        return _level_rows(n, split, seed, levels)
    rng = random.Random(f"{seed}-{split}")
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    while len(rows) < n:
        template, answer = rng.choice(_TEMPLATES)
        a, b = rng.randint(4, 60), rng.randint(2, 9)
        if answer is _TEMPLATES[1][1] and b > a:
            continue
        question = template.format(n=rng.choice(_NAMES), i=rng.choice(_ITEMS), a=a, b=b)
        if question in seen or _split_of(question) != split:
            continue
        seen.add(question)
        rows.append({"id": f"arith-{split}-{len(rows)}", "question": question, "gold": str(answer(a, b)),
                     "task": "gsm8k"})  # fmt: skip
    return rows


def _level_rows(n: int, split: str, seed: int, levels: tuple[int, ...]) -> list[dict[str, str]]:
    tag = "".join(str(x) for x in levels)
    rng = random.Random(f"{seed}-{split}-levels{tag}")
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    misses = 0
    while len(rows) < n:
        template, answer, operands = rng.choice(_LEVELS[rng.choice(levels)])
        values = operands(rng)
        question = template.format(
            n=rng.choice(_NAMES), i=rng.choice(_ITEMS), **dict(zip("abc", values, strict=False))
        )
        if question in seen or _split_of(question) != split:
            misses += 1
            if misses > 1000 * (n + 10):
                raise ValueError(f"only {len(rows)} distinct {split} problems exist for levels {levels}")
            continue
        seen.add(question)
        rows.append({"id": f"arith-L{tag}-{split}-{len(rows)}", "question": question,
                     "gold": str(answer(*values)), "task": "gsm8k"})  # fmt: skip
    return rows
