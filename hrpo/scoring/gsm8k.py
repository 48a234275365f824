"""GSM8K answers (``compat="fixed"``): exactly one number on the answer line, compared by exact value.

Read: currency signs, ``\\boxed{}``, ``\\text{}``, bold, ``%`` and units are ignored; thousands separators
(``1,234``) join; the sign is kept (``-$20`` is -20); ``18.00`` == ``18`` and ``0.75`` == ``3/4`` (exact
fractions, no rounding); a true arithmetic chain ``9 * 2 = 18`` is read as its result (``17 = 18`` is two
answers). Every other number on the
line is a second candidate: two different values are a hedge (wrong), the same value repeated is one answer.
Digits glued to a letter, ``^`` or ``_`` (``m^2``, ``H2O``) are not numbers.
"""

from __future__ import annotations

import ast
import re
from fractions import Fraction
from functools import lru_cache

from hrpo.scoring.region import clean
from hrpo.scoring.verdict import Verdict

_NUMBER = re.compile(r"(?<![A-Za-z0-9.^_])-?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:/[0-9]+(?:\.[0-9]+)?)?")
_THOUSANDS = re.compile(r"\b[0-9]{1,3}(?:,[0-9]{3})+\b")
_FRAC = re.compile(r"\\[dt]?frac\{(-?[0-9.]+)\}\{(-?[0-9.]+)\}")
_WRAPPER = re.compile(r"\\(?:boxed|text|textbf|mathrm|mbox|fbox)\s*\{([^{}]*)\}")
_ARITHMETIC = re.compile(r"[0-9\s.,+\-*/×x÷·()\[\]$%]+")
_DROP = ("\\$", "$", "€", "£", "\\%", "%", "\\!", "\\,", "\\;", "\\(", "\\)", "\\[", "\\]", "\\left", "\\right")  # fmt: skip


def _prepare(answer: str) -> str:
    s = (
        clean(answer)
        .replace("\u2212", "-")
        .replace("\u2013", "-")
        .replace("\\times", "×")
        .replace("\\cdot", "·")
    )
    for _ in range(3):  # nested wrappers: \boxed{\text{18}}
        s = _WRAPPER.sub(r"\1", s)
    s = _FRAC.sub(r"\1/\2", s)
    for token in _DROP:
        s = s.replace(token, "")
    s = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), s)
    parts = s.split("=")
    if len(parts) > 1 and all(_ARITHMETIC.fullmatch(p.strip() or "x") for p in parts[:-1]):
        values = {_arithmetic(p) for p in parts[:-1]}
        if len(values) == 1 and None not in values and values == set(numbers_in(parts[-1])):
            s = parts[-1]  # "9 * 2 = 18": a true chain; its result is the answer (else every number counts)
    return s


def _arithmetic(expr: str) -> Fraction | None:
    """Exact value of a plain arithmetic expression (``9 × 2``, ``(16 - 3 - 4) * 2``); ``None`` otherwise."""
    text = (
        expr.replace("×", "*").replace("·", "*").replace("÷", "/").replace(",", "").replace("x", "*").strip()
    )
    text = text.replace("[", "(").replace("]", ")")
    try:
        return _eval(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, TypeError, RecursionError):
        return None


def _eval(node: ast.expr) -> Fraction:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
        a, b = _eval(node.left), _eval(node.right)
        ops = {ast.Add: a.__add__, ast.Sub: a.__sub__, ast.Mult: a.__mul__, ast.Div: a.__truediv__}
        return ops[type(node.op)](b)
    raise ValueError("not plain arithmetic")


def _value(token: str) -> Fraction | None:
    try:
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def numbers(answer: str) -> list[Fraction]:
    """The distinct numeric values on the answer line, in order of appearance."""
    return numbers_in(_prepare(answer))


def numbers_in(text: str) -> list[Fraction]:
    out: list[Fraction] = []
    for token in _NUMBER.findall(text):
        value = _value(token)
        if value is not None and value not in out:
            out.append(value)
    return out


def canonical(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


@lru_cache(maxsize=4096)
def gold_value(gold: str) -> Fraction:
    """The gold's number (``"1,234"`` -> 1234); a gold that is not exactly one number is a data error."""
    values = numbers(gold)
    if len(values) != 1:
        raise ValueError(f"GSM8K gold {gold!r} is not a single number")
    return values[0]


def normalize(answer: str) -> str | None:
    """The canonical number of an answer (``"$1,234.00"`` -> ``"1234"``); ``None`` if none or a hedge."""
    values = numbers(answer)
    return canonical(values[0]) if len(values) == 1 else None


def judge(answer: str, gold: str) -> Verdict:
    values = numbers(answer)
    if len(values) != 1:
        return Verdict(False, None, hedged=len(values) > 1)
    return Verdict(values[0] == gold_value(gold), canonical(values[0]))
