"""LaTeX helpers for MATH answers: boxed/span extraction, top-level splitting and the ``fixed`` normaliser."""

from __future__ import annotations

import re
from fractions import Fraction

# Math spans; an escaped dollar (``\$``, a currency sign) is not a delimiter.
_SPAN = re.compile(
    r"(?<!\\)\$\$(.+?)(?<!\\)\$\$|(?<!\\)\$(.+?)(?<!\\)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL
)
_BOX = re.compile(r"\\(?:boxed|fbox)")


def _braced(text: str, i: int) -> tuple[str, int] | None:
    """Content of the brace group opening at ``text[i] == "{"`` and the index after it (``None`` if open)."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j], j + 1
    return None


def all_boxed(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}``/``\\fbox{...}`` (brace-matched; ``\\boxed 5`` form too), in order."""
    out = []
    for m in _BOX.finditer(text):
        i = m.end()
        if text.startswith("{", i):
            group = _braced(text, i)
            if group is not None:
                out.append(group[0])
        elif text.startswith(" ", i):  # "\boxed 5": the argument runs to the next space or dollar
            arg = re.split(r"[\s$]", text[i:].lstrip(), maxsplit=1)[0]
            if arg:
                out.append(arg)
    return out


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (``None`` if there is none or it is unclosed)."""
    found = all_boxed(text)
    return found[-1] if found else None


def spans(text: str) -> list[str]:
    """Contents of every ``$..$``, ``$$..$$``, ``\\(..\\)`` and ``\\[..\\]`` span, in order."""
    return [next(g for g in groups if g) for groups in _SPAN.findall(text)]


def outside_spans(text: str) -> str:
    return _SPAN.sub(" ", text)


def split_top_level(s: str, separators: re.Pattern[str]) -> list[str]:
    """``s`` split at matches of ``separators`` that are outside every (), [], {} group."""
    depth, parts, start = 0, [], 0
    opens, closes = "([{", ")]}"
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == "\\" and s.startswith(("\\{", "\\}"), i):
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if ch == "\\" and s.startswith(("\\begin{", "\\end{"), i):  # a matrix is one group
            depth = depth + 1 if s.startswith("\\begin{", i) else max(depth - 1, 0)
            i = s.index("{", i) + 1
            depth += 1  # the environment name's own brace, closed by the "}" that follows it
            continue
        if ch in opens:
            depth += 1
        elif ch in closes:
            depth = max(depth - 1, 0)
        elif depth == 0 and (m := separators.match(s, i)) and m.end() > i:
            parts.append(s[start:i])
            start = i = m.end()
            continue
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _fix_fracs(s: str) -> str:
    """``\\frac12`` / ``\\frac1{2}`` / ``\\frac{1}2`` -> ``\\frac{1}{2}``."""
    head, *pieces = s.split("\\frac")
    out = [head]
    for piece in pieces:
        args: list[str] = []
        rest = piece
        for _ in range(2):
            if rest.startswith("{"):
                group = _braced(rest, 0)
                if group is None:
                    break
                args.append("{" + group[0] + "}")
                rest = rest[group[1] :]
            elif rest:
                args.append("{" + rest[0] + "}")
                rest = rest[1:]
        out.append("\\frac" + "".join(args) + rest)
    return "".join(out)


_THOUSANDS = re.compile(r"(?<![0-9.])[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])")
_WRAPPERS = re.compile(r"\\(?:text|textbf|textrm|mbox|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}")
# A trailing unit after a value: "5 \text{ cm}", "10\;\text{edges}", "864 \mbox{ inches}^2" (not "and"/"or").
_UNIT = re.compile(
    r"(?<=\S)\s*\\(?:text|mbox|mathrm)\{\s*(?!(?:and|or)\s*\})[A-Za-z][A-Za-z .]*\}(?:\^\{?[0-9]\}?)?\s*$"
)
# "19 \text{ and } 43", "7, -2, and -5": a list joined by "and" is the same list joined by commas.
_AND = re.compile(r"\s*(?:\\(?:text|mbox|textrm|mathrm)\s*\{\s*and\s*\}|\band\b)\s*", re.IGNORECASE)


def join_thousands(s: str) -> str:
    """``1,234`` / ``10,\\!080`` -> ``1234`` / ``10080`` (groups of exactly three digits after each comma)."""
    s = re.sub(r",\\!\s*", ",", s)
    return _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), s)


def strip_math(s: str) -> str:
    """The ``fixed`` normaliser: Hendrycks' ``_strip_string`` rules plus thin spaces, ``%``, currency, units in
    ``\\mbox``, thousands separators, ``52_8`` == ``52_{8}``, ``(B)`` == ``B`` and ``-a/b`` == ``-\\frac{a}{b}``;
    ``\\text{}`` unwrapped and lower-cased."""
    s = join_thousands(s.replace("\n", " ")).replace("\\!", "").replace("\\\\", "\\")
    for thin in ("\\,", "\\;", "\\:", "\\ ", "~"):
        s = s.replace(thin, " ")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("°", "")
    s = s.replace("\\$", "").replace("$", "")
    s = _UNIT.sub("", s)
    s = re.sub(r"(?:\s*,)+", ",", _AND.sub(",", s))
    s = s.replace("\\%", "").replace("%", "")
    s = join_thousands(s.strip())
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    parts = s.split("=")
    if len(parts) == 2 and re.fullmatch(r"[A-Za-z][A-Za-z0-9]?", parts[0].strip()):  # "x = 5", not "6 = 5"
        s = parts[1]
    s = re.sub(r"\\sqrt\s*([^{\s\\])", r"\\sqrt{\1}", s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    s = re.sub(r"\\frac\{-([^{}]+)\}", r"-\\frac{\1}", s)  # \frac{-3}{8} -> -\frac{3}{8}
    s = re.sub(r"^(-?)([0-9]+)/([0-9]+)$", r"\1\\frac{\2}{\3}", s)
    s = re.sub(r"_([0-9A-Za-z])", r"_{\1}", s)  # 52_8 -> 52_{8}
    for _ in range(2):
        s = _WRAPPERS.sub(r"\1", s)
    s = s.rstrip(".").lower()
    return re.sub(r"^\(([a-z])\)$", r"\1", s)  # "(b)" -> "b"


_RATIONAL = re.compile(r"(-?)(?:([0-9]*\.?[0-9]+)|\\frac\{([0-9]+)\}\{([0-9]+)\})")


def rational(normalised: str) -> Fraction | None:
    """The exact value of a normalised plain number or ``\\frac{a}{b}`` (``None`` for anything else)."""
    m = _RATIONAL.fullmatch(normalised)
    if not m:
        return None
    try:
        value = Fraction(m.group(2)) if m.group(2) is not None else Fraction(int(m.group(3)), int(m.group(4)))
    except ZeroDivisionError:
        return None
    return -value if m.group(1) else value


def same(a: str, b: str) -> bool:
    """Equal normalised strings, or equal exact values (``0.25`` == ``\\frac{1}{4}``, ``36.00`` == ``36``)."""
    if a == b:
        return True
    va = rational(a)
    return va is not None and va == rational(b)
