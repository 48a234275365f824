"""Which text after the delimiter is the answer (``compat="fixed"``; rules R1-R5 of ``tasks/README.md``).

R1 the text after the last delimiter (without a delimiter -- eval only, the reward needs one -- the last
``\boxed{}`` of the completion, else its last non-empty line); R2 the first non-empty line;
R3 later lines while a math group of that line is still open (``$``, ``$$``, ``\\[``, ``\\(``, ``{``);
R4 a later line that starts with ``or``, ``alternatively`` or ``otherwise`` is appended as
``or <line>``, so it counts as a second candidate; R5 markdown bold, an ``Answer:``/``The answer is`` prefix and
a trailing ``.`` are dropped. Everything else on later lines (explanations, restated numbers) is not read.
"""

from __future__ import annotations

import re

from hrpo.scoring.latex import last_boxed

DEFAULT_DELIMITER = "####"
_MAX_CONTINUATION = 20  # lines a still-open math group may run over (R3)
_ALTERNATIVE_LINE = re.compile(r"^\W*(?:or|alternatively|otherwise)\b", re.IGNORECASE)
_PREFIX = re.compile(
    r"^(?:so,?\s+|thus,?\s+|therefore,?\s+|hence,?\s+)?(?:the\s+)?(?:final\s+|correct\s+|best\s+)?"
    r"(?:answer|option|choice)\s*(?:is\b\s*:?|:)\s*",
    re.IGNORECASE,
)


def delimiter_count(text: str, delimiter: str = DEFAULT_DELIMITER) -> int:
    """How many times the answer delimiter occurs (the training format needs exactly one)."""
    return text.count(delimiter)


def extract_answer(text: str, delimiter: str = DEFAULT_DELIMITER) -> str:
    """Text after the last ``delimiter`` (all of it if absent), stripped, one trailing ``.`` removed (as the
    original's ``extract_from_response``)."""
    tail = text.rsplit(delimiter, 1)[-1].strip()
    return tail[:-1].strip() if tail.endswith(".") else tail


def _open_groups(s: str) -> bool:
    """True if ``s`` leaves a ``$``/``$$``/``\\[``/``\\(`` span or a ``{`` brace unclosed."""
    bare = s.replace("\\$", "").replace("\\{", "").replace("\\}", "")
    return (
        bare.count("$$") % 2 == 1
        or bare.replace("$$", "").count("$") % 2 == 1
        or bare.count("{") > bare.count("}")
        or s.count("\\[") > s.count("\\]")
        or s.count("\\(") > s.count("\\)")
    )


def answer_region(text: str, delimiter: str = DEFAULT_DELIMITER) -> str:
    """The answer a careful grader reads (R1-R4), whitespace-stripped; ``""`` if there is none."""
    if delimiter not in text:
        boxed = last_boxed(text)
        if boxed is not None:
            return f"\\boxed{{{boxed}}}"
        return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
    tail = text.rsplit(delimiter, 1)[-1]
    lines = [line.strip() for line in tail.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    if not lines:
        return ""
    answer, i = lines[0], 1
    while _open_groups(answer) and i < len(lines) and i <= _MAX_CONTINUATION:  # R3
        answer += " " + lines[i]
        i += 1
    for line in lines[i:]:  # R4
        if _ALTERNATIVE_LINE.match(line):
            answer += " or " + _ALTERNATIVE_LINE.sub("", line).strip()
    return answer.strip()


def clean(answer: str) -> str:
    """R5: markdown bold/italics markers, an answer prefix and a trailing ``.`` removed."""
    s = answer.replace("**", "").replace("__", "").strip()
    for _ in range(2):  # "Final answer: The answer is B"
        s = _PREFIX.sub("", s, count=1).strip()
    return s[:-1].rstrip() if s.endswith(".") and not s.endswith("..") else s
