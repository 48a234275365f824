"""The authors' answer parsers, reproduced exactly (bugs included) for ``compat="original"``.

Written here from a reading of the original ``utils.py`` (``extract_from_response``, ``delete_extra_zero``,
``find_box``, ``find_latex``, ``_strip_string``, ``process_{gsm8k,math,mmlu,qa}_answer``); no code was copied.
Every quirk is kept on purpose, because these functions define the paper's numbers:

* GSM8K numbers are found with ``-?\\d+/?\\.?\\d*`` on the raw text (``"1,234"`` reads as ``234``), converted
  through ``float`` (or Python's ``eval`` for ``a/b``, which we emulate without ``eval``) and printed by
  stripping zeros from ``str(float)`` -- no rounding (``2.0000001`` stays ``2.0000001``; ``1e20`` -> ``100.0``).
* MATH reads the last ``boxed``, else the last LaTeX span, else the last ``-?\\d*\\.?\\d+`` number, then the
  original ``_strip_string`` only: no ``0.5`` -> ``\\frac{1}{2}`` rule, ``%`` kept (only ``\\%`` removed),
  ``$`` stripped only at the ends, ``\\sqrt 2`` -> ``\\sqrt{ }2``.
* Multiple choice takes the last standalone letter A-J of the upper-cased text.
* QA is SQuAD normalisation; an empty prediction equals an empty alias.
"""

from __future__ import annotations

import re
import string

_GSM8K_NUMBER = re.compile(r"-?\d+/?\.?\d*")
_MATH_NUMBER = re.compile(r"-?\d*\.?\d+")
_LETTER = re.compile(r"\b(A|B|C|D|E|F|G|H|I|J)\b")
_LATEX = re.compile(
    r"(\\\[(?P<display>[\s\S]+?)\\\])|(\\\((?P<inline>[\s\S]+?)\\\))|((?P<dollar>\$\$?)(?P<dcontent>[\s\S]+?)(?P=dollar))"
)
# A Python int literal as ``eval`` accepts it: no leading zeros except an all-zero literal.
_INT_LITERAL = re.compile(r"-?(?:0+|[1-9][0-9]*)", re.ASCII)
_FLOAT_LITERAL = re.compile(r"\.[0-9]+", re.ASCII)


def extract(text: str, delimiter: str = "####") -> str:
    """``extract_from_response``: after the last delimiter, stripped; one trailing ``.`` removed, stripped."""
    answer = text.split(delimiter)[-1].strip()
    if answer.endswith("."):
        answer = answer[:-1].strip()
    return answer


def format_ok(text: str, delimiter: str = "####") -> bool:
    """The original's format regex (no delimiter, delimiter, no delimiter): exactly one non-overlapping copy."""
    return text.count(delimiter) == 1


def _float_text(value: float) -> str:
    """``delete_extra_zero`` on a float: zeros stripped from ``str``; an integral result printed as an int."""
    s = str(value).rstrip("0")
    return str(int(s.rstrip("."))) if s.endswith(".") else str(float(s))


def _eval_division(token: str) -> float | None:
    """What ``eval`` gives for ``a/b`` tokens of the GSM8K regex (``None`` where it raises)."""
    num, _, den = token.partition("/")
    if not _INT_LITERAL.fullmatch(num):
        return None  # "05/2" is a SyntaxError in Python 3
    try:
        if _INT_LITERAL.fullmatch(den) and not den.startswith("-"):
            return int(num) / int(den)  # true division of two ints, correctly rounded like eval
        if _FLOAT_LITERAL.fullmatch(den):
            return int(num) / float(den)
    except (ZeroDivisionError, OverflowError):
        return None
    return None  # "12/" or "12/.": a SyntaxError


def _delete_extra_zero(token: str) -> str:
    try:
        value = float(token)
    except ValueError:
        value = _eval_division(token)  # type: ignore[assignment]
        if value is None:
            return token  # the original prints a warning and returns the text unchanged
    return _float_text(value)


def gsm8k(pred: str) -> str:
    """``process_gsm8k_answer``."""
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ")
    found = [_delete_extra_zero(s.replace(",", "")) for s in _GSM8K_NUMBER.findall(pred)]
    return found[-1].rstrip(".").rstrip("/") if found else ""


def find_box(text: str) -> str:
    """``find_box``: after the last ``boxed``, brace-matched (to the end if unbalanced), or up to a ``$``."""
    rest = text.split("boxed")[-1]
    if not rest:
        return ""
    if rest[0] != "{":
        return rest.split("$")[0].strip()
    depth, out = 1, []
    for ch in rest[1:]:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                break
        out.append(ch)
    return "".join(out)


def find_latex(text: str) -> str:
    """``find_latex``: content of the last ``\\[..\\]``, ``\\(..\\)``, ``$..$`` or ``$$..$$``, stripped."""
    matches = list(_LATEX.finditer(text))
    if not matches:
        return ""
    last = matches[-1]
    return (last.group("display") or last.group("inline") or last.group("dcontent")).strip()


def _fix_fracs(s: str) -> str:
    pieces = s.split("\\frac")
    out = pieces[0]
    for piece in pieces[1:]:
        out += "\\frac"
        if not piece:
            continue
        if piece[0] == "{":
            out += piece
            continue
        if len(piece) < 2:
            return s
        a, b, rest = piece[0], piece[1], piece[2:]
        out += "{" + a + "}{" + b + "}" + rest if b != "{" else "{" + a + "}" + b + rest
    return out


def _fix_sqrt(s: str) -> str:
    if "\\sqrt" not in s:
        return s
    pieces = s.split("\\sqrt")
    out = pieces[0]
    for piece in pieces[1:]:
        out += "\\sqrt{" + piece[0] + "}" + piece[1:] if piece and piece[0] != "{" else "\\sqrt" + piece
    return out


def _fix_a_slash_b(s: str) -> str:
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return s
    return "\\frac{" + str(a) + "}{" + str(b) + "}" if s == f"{a}/{b}" else s


def strip_string(s: str) -> str:
    """The original ``_strip_string`` (Hendrycks' normaliser as the authors modified it)."""
    for old, new in (
        ("\n", ""),
        ("\\!", ""),
        ("\\\\", "\\"),
        ("tfrac", "frac"),
        ("dfrac", "frac"),
        ("\\left", ""),
        ("\\right", ""),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
    ):
        s = s.replace(old, new)
    s = s.strip("$").replace("\\$", "")
    if "\\text{ " in s:  # _remove_right_units
        s = s.split("\\text{ ")[0]
    s = s.replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    parts = s.split("=")
    if len(parts) == 2 and len(parts[0]) <= 2:
        s = parts[1]
    s = _fix_sqrt(s).replace(" ", "")
    return _fix_a_slash_b(_fix_fracs(s))


def math(pred: str) -> str:
    """``process_math_answer``."""
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ")
    if "boxed" in pred:
        pred = find_box(pred)
    elif latex := find_latex(pred):
        pred = latex
    else:
        found = _MATH_NUMBER.findall(pred)
        pred = found[-1] if found else ""
    pred = strip_string(pred).rstrip(".").rstrip("/")
    return re.sub(r"\\text\{([^}]*)\}", r"\1", pred).lower()


def math_gold(gold: str) -> str:
    """The original's MATH gold: ``"\\boxed{" + answer + "}"`` through :func:`math`."""
    return math("\\boxed{" + gold.strip() + "}")


def mmlu(pred: str) -> str:
    """``process_mmlu_answer``: the last standalone letter A-J of the upper-cased text, else the text."""
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ")
    found = _LETTER.findall(pred.upper()) or [pred.strip().strip(".")]
    return found[-1].rstrip(".").rstrip("/")


_PUNCT = frozenset(string.punctuation)


def qa(pred: str) -> str:
    """``process_qa_answer``: lower-case, drop punctuation, drop articles, collapse whitespace."""
    s = "".join(ch for ch in pred.lower() if ch not in _PUNCT)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())
