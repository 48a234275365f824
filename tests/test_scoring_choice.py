"""Multiple-choice accept/reject table (issue 11): exactly one option, named by letter or by its full text.

Options and golds are real rows: ARC-Challenge test (Mercury/planets question, gold C), MMLU-STEM test
(embryo membranes, gold A; a ridge-regression gradient whose options are LaTeX with ``$`` and ``\\``)."""

from __future__ import annotations

import pytest

from hrpo.data import load_benchmark
from hrpo.rewards import score

PLANETS = [  # ARC-Challenge, gold "C"
    "Planetary density will decrease.",
    "Planetary years will become longer.",
    "Planetary days will become shorter.",
    "Planetary gravity will become stronger.",
]
MEMBRANES = ["amnion", "chorion", "allantois", "yolk sac"]  # MMLU-STEM, gold "A"
GRADIENT = [  # MMLU-STEM machine learning, gold "C": regex-special option text
    "$\\nabla_w f(w) = (X^\\top X + \\lambda I)w - X^\\top y + \\lambda w$",
    "$\\nabla_w f(w) = X^\\top X w - X^\\top y + \\lambda$",
    "$\\nabla_w f(w) = X^\\top X w - X^\\top y + \\lambda w$",
    "$\\nabla_w f(w) = X^\\top X w - X^\\top y + (\\lambda+1) w$",
]

# (category, completion, gold, choices, correct, hedged)
ACCEPT = [
    ("letter", "#### C", "C", PLANETS, True, False),
    ("letter", "#### (C)", "C", PLANETS, True, False),
    ("letter", "#### C.", "C", PLANETS, True, False),
    ("letter", "#### [A]", "A", MEMBRANES, True, False),
    ("letter and text", "#### C) Planetary days will become shorter.", "C", PLANETS, True, False),
    ("letter and text", "#### C. Planetary days will become shorter", "C", PLANETS, True, False),
    ("letter and text", "#### A - amnion", "A", MEMBRANES, True, False),
    ("letter and prose", "#### C, since a faster spin shortens the day", "C", PLANETS, True, False),
    ("markup", "#### **C**", "C", PLANETS, True, False),
    ("markup", "#### $\\boxed{A}$", "A", MEMBRANES, True, False),
    ("markup", "#### \\text{(C)}", "C", GRADIENT, True, False),
    ("prefix", "#### The answer is C", "C", PLANETS, True, False),
    ("prefix", "#### The correct answer is (A).", "A", MEMBRANES, True, False),
    ("prefix", "#### Answer: Option C", "C", GRADIENT, True, False),
    ("lower case", "#### c", "C", PLANETS, True, False),
    ("lower case", "#### (a)", "A", MEMBRANES, True, False),
    ("lower case", "#### c) planetary days will become shorter", "C", PLANETS, True, False),
    ("full option text", "#### Planetary days will become shorter.", "C", PLANETS, True, False),
    ("full option text", "#### amnion", "A", MEMBRANES, True, False),
    ("full option text", "#### YOLK SAC", "D", MEMBRANES, True, False),
    ("regex-special option", f"#### {GRADIENT[2]}", "C", GRADIENT, True, False),
    (
        "regex-special option",
        "#### \\nabla_w f(w) = X^\\top X w - X^\\top y + \\lambda w",
        "C",
        GRADIENT,
        True,
        False,
    ),
    ("answer line first", "#### C\nB would make days longer, so not B.", "C", PLANETS, True, False),
    # real MMLU-STEM rows whose option texts are letters or differ only in case
    ("letter-like options", "#### c", "D", ["Error", "a", "b", "c"], True, False),  # mmlu_stem/1298
    ("letter-like options", "#### Bb Bb", "C", ["BB BB", "BB Bb", "Bb Bb", "Bb bb"], True, False),  # /473
    ("letter-like options", "#### C", "C", ["L", "R", "1/C", "C"], True, False),  # /411: the letter wins
]
REJECT = [
    ("wrong letter", "#### B", "C", PLANETS, False, False),
    ("wrong letter", "#### yolk sac", "A", MEMBRANES, False, False),
    ("letter not an option", "#### E", "A", MEMBRANES, False, False),
    ("two letters", "#### C and B", "B", PLANETS, False, True),
    ("two letters", "#### C or B", "B", PLANETS, False, True),
    ("two letters", "#### A, C", "A", MEMBRANES, False, True),
    ("letter contradicted", "#### C because option B is incorrect", "B", PLANETS, False, True),
    ("letter contradicted", "#### B because option C is incorrect", "B", PLANETS, False, True),
    ("letter contradicted", "#### A) chorion", "A", MEMBRANES, False, True),
    ("letter contradicted", "#### A, i.e. the allantois", "A", MEMBRANES, False, True),
    ("hedge on a later line", "#### C\nor maybe D", "C", PLANETS, False, True),
    ("lower case in prose", "#### i think it is c", "C", PLANETS, False, False),
    ("no option named", "#### I am not sure", "C", PLANETS, False, False),
    ("no option named", "#### CD", "C", PLANETS, False, False),
    ("regex-special option, other one", f"#### {GRADIENT[1]}", "C", GRADIENT, False, False),
    ("letter-like options", "#### B", "D", ["As", "P", "Sb", "B"], False, False),  # /2147: letter B, not "B"
    (
        "letter-like options",
        "#### C or A",
        "C",
        ["C", "NO_{2}", "O_{2}", "CO"],
        False,
        True,
    ),  # ARC Mercury_402547
]


@pytest.mark.parametrize(("category", "completion", "gold", "choices", "correct", "hedged"), ACCEPT + REJECT)
def test_choice_table(category, completion, gold, choices, correct, hedged):
    s = score(completion, gold, "multiple_choice", choices=choices)
    assert (s.correct, s.hedged) == (correct, hedged), (category, s)


def test_option_texts_are_real(shared_data):
    arc = load_benchmark("arc_challenge", "test", data_dir=shared_data)
    mmlu = load_benchmark("mmlu_stem", "test", data_dir=shared_data)
    assert any(r["choices"] == PLANETS and r["gold"] == "C" for r in arc)
    assert any(r["choices"] == MEMBRANES and r["gold"] == "A" for r in mmlu)
    assert any(r["choices"] == GRADIENT and r["gold"] == "C" for r in mmlu)


def test_letters_inside_the_named_options_text_do_not_count():
    choices = ["Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K"]
    assert score("#### B. Vitamin C", "B", "multiple_choice", choices=choices).correct
    assert score("#### B (Vitamin C)", "B", "multiple_choice", choices=choices).correct
    assert score("#### Vitamin C", "B", "multiple_choice", choices=choices).correct
    assert score("#### B. Vitamin A", "B", "multiple_choice", choices=choices).hedged
