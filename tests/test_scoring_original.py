"""``compat="original"`` reproduces the authors' ``utils.py`` verdicts exactly (issue 10, item 4).

Each expected original verdict below was derived by hand from the original code (the comment traces it);
the ``fixed`` verdict is the default scorer's. Rows where the two agree are kept when the issue names them."""

from __future__ import annotations

import pytest

from hrpo.rewards import score
from hrpo.scoring import original

# (task, completion, gold, original verdict, fixed verdict)  -- why the original decides so
CASES = [
    # process_gsm8k_answer: regex -?\d+/?\.?\d* on the raw text, last match, float/eval, zeros stripped
    ("gsm8k", "#### 1,234", "1234", False, True),  # matches "1", "234" -> "234" != "1234"
    ("gsm8k", "#### 2,125", "2,125", True, True),  # both sides read "125"
    ("gsm8k", "#### 2125", "2,125", False, True),  # "2125" != "125"
    ("gsm8k", "#### 2.0000001", "2", False, False),  # str(float) keeps 2.0000001: no rounding
    ("gsm8k", "#### -$20", "20", True, False),  # "-" not followed by a digit: reads "20", sign lost
    ("gsm8k", "#### 21 or 20", "20", True, False),  # last number wins
    ("gsm8k", "#### 18\nSo the total is 18 after 2 weeks.", "18", False, True),  # last number "2"
    ("gsm8k", "#### 19\n(Earlier I wrote 18 by mistake.)", "18", True, False),  # last number "18"
    ("gsm8k", "#### $5.$", "5", True, True),  # "5." -> float 5.0 -> "5"
    ("gsm8k", "#### 5/0", "5", False, False),  # eval raises ZeroDivisionError: text "5/0" kept
    ("gsm8k", "#### 3/4", "0.75", True, True),  # eval("3/4") = 0.75
    ("gsm8k", "#### 18.50", "18.5", True, True),  # "18.5" both
    # process_math_answer: boxed > last LaTeX span > last number -?\d*\.?\d+, then _strip_string only
    ("math", "#### 1/2", "\\frac{1}{2}", False, True),  # no span: last number "2"
    ("math", "#### \\frac{1}{2}", "2", True, False),  # likewise "2" == "2"
    ("math", "#### $5.$", "5", True, True),  # span "5." -> _strip_string -> rstrip(".") -> "5"
    ("math", "#### \\boxed{2.0000001}", "2", False, False),  # string compare, no rounding
    ("math", "#### 0.5", "\\frac{1}{2}", False, True),  # this _strip_string has no 0.5 -> \frac{1}{2} rule
    ("math", "#### $50%$", "50", False, True),  # only "\%" is removed, "%" stays
    ("math", "#### $50\\%$", "50", True, True),
    ("math", "#### $\\sqrt 2$", "\\sqrt{2}", False, True),  # _fix_sqrt makes "\sqrt{ }2" -> "\sqrt{}2"
    ("math", "#### $-3/8$", "-\\frac{3}{8}", False, True),  # _fix_a_slash_b gives "\frac{-3}{8}"
    ("math", "#### $4$ or $5$", "5", True, False),  # last span
    ("math", "#### 7^{2}", "2", True, False),  # last number
    ("math", "#### \\boxed{8,000}", "8000", False, True),
    ("math", "#### \\$36.00", "\\$36", False, True),  # one "$": no span; number "36.00" != "36"
    ("math", "#### B", "\\text{(B)}", False, True),  # no number: "" != "(b)"
    ("math", "#### \\boxed{\\dfrac{14}{3}}", "\\frac{14}{3}", True, True),
    # process_mmlu_answer: last standalone A-J of the upper-cased text
    ("multiple_choice", "#### C because option B is incorrect", "B", True, False),
    ("multiple_choice", "#### B because option C is incorrect", "B", False, False),
    ("multiple_choice", "#### C or B", "B", True, False),
    ("multiple_choice", "#### B. A lesson", "B", False, True),  # reads the article "A"
    ("multiple_choice", "#### i think it is c", "C", True, False),  # upper-cased: "I", "C" -> "C"
    # process_qa_answer: SQuAD normalisation, any alias, empty == empty
    ("qa", "####", ["---"], True, False),
    ("qa", "#### The answer is Omar Khayyam.", ["Omar Khayyam"], False, True),
    ("qa", "#### Jose Marti", ["José Martí"], False, True),
    ("qa", "#### 3-4 April 2018", ["3–4 April 2018"], False, True),  # en dash is not ASCII punctuation
]

CHOICES = ["It rhymes", "A lesson", "It is long", "It is short"]


@pytest.mark.parametrize(("task", "completion", "gold", "orig", "fixed"), CASES)
def test_original_and_fixed_verdicts(task, completion, gold, orig, fixed):
    kw = {"choices": CHOICES} if task == "multiple_choice" else {}
    assert score(completion, gold, task, compat="original", **kw).correct is orig
    assert score(completion, gold, task, **kw).correct is fixed


def test_the_table_has_cases_where_they_differ_in_every_task():
    for task in ("gsm8k", "math", "multiple_choice", "qa"):
        assert sum(o != f for t, _, _, o, f in CASES if t == task) >= 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18", "18"),
        ("18.00", "18"),
        ("$1,234.", "234"),
        ("2.0000001", "2.0000001"),
        ("1" + "0" * 20, "100.0"),  # str(1e20) = "1e+20" -> rstrip("0") -> "1e+2" -> 100.0
        ("1" + "0" * 19, "1e+19"),
        ("-0", "0"),
        ("5/0", "5/0"),
        ("05/2", "05/2"),  # eval: leading zeros are a SyntaxError, the text is kept
        ("12/", "12"),  # eval fails; rstrip("/")
        ("7/.5", "14"),
        ("no digits", ""),
    ],
)
def test_original_gsm8k_number_printing(text, expected):
    assert original.gsm8k(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{\\frac12}", "\\frac{1}{2}"),
        ("\\boxed{\\frac1{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\frac{1}2}", "\\frac{1}2"),  # an argument in braces is left as it is
        ("\\boxed{x = 5}", "5"),
        ("\\boxed{5 \\text{ cm}}", "5"),
        ("\\boxed{\\text{(B)}}", "(b)"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "(3,\\frac{\\pi}{2})"),
        ("\\boxed 5$", "5"),
        ("so \\[ \\frac{1}{3} \\] or $\\frac{1}{2}$", "\\frac{1}{2}"),
        ("3/4", "4"),
    ],
)
def test_original_math_normaliser(text, expected):
    assert original.math(text) == expected


def test_original_format_and_extraction():
    assert original.extract("a #### b #### 42 .") == "42"
    assert original.format_ok("x #### 1") and not original.format_ok("#### 1 #### 1")
    assert score("#### 18 #### 18", "18", "gsm8k", compat="original").reward == 0.0
    # the fixed reader flags the hedge even where the original pays it
    s = score("#### 21 or 20", "20", "gsm8k", compat="original")
    assert s.correct and s.hedged
