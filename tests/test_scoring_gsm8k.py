"""GSM8K accept/reject table (issue 11): one number on the answer line, exact value, sign kept, hedges wrong.

Golds are real GSM8K test answers (``../shared/data/gsm8k/test.jsonl``: 18, 3, 70000, 540, 20, 64, 260, 160,
"2,125", "114,200", "-10", "-3", ...)."""

from __future__ import annotations

import pytest

from hrpo.rewards import score

# (category, completion, gold, correct, hedged)
ACCEPT = [
    ("plain", "16 - 3 - 4 = 9 eggs, 9 * 2 = 18 #### 18", "18", True, False),
    ("plain", "#### 540", "540", True, False),
    ("answer on the next line", "####\n3", "3", True, False),
    ("sign", "#### -10", "-10", True, False),
    ("sign", "#### \u22123", "-3", True, False),  # Unicode minus
    ("sign", "#### -$10", "-10", True, False),
    ("currency", "#### $18", "18", True, False),
    ("currency", "#### \\$64", "64", True, False),
    ("currency", "#### $460.00", "460", True, False),
    ("thousands", "#### 70,000", "70000", True, False),
    ("thousands", "#### 2125", "2,125", True, False),
    ("thousands", "#### $114,200", "114,200", True, False),
    ("units", "#### 540 meters", "540", True, False),
    ("units", "#### 20 dollars per week", "20", True, False),
    ("units", "#### 64%", "64", True, False),
    ("units", "#### 50 m^2", "50", True, False),  # the exponent is not a second number
    ("trailing dot", "#### 260.", "260", True, False),
    ("trailing dot", "#### 160 .", "160", True, False),
    ("bold", "#### **18**", "18", True, False),
    ("bold", "#### **$366**", "366", True, False),
    ("boxed", "#### \\boxed{694}", "694", True, False),
    ("boxed", "#### $\\boxed{3}$", "3", True, False),
    ("decimals equal", "#### 18.00", "18", True, False),
    ("decimals equal", "#### 3.0", "3", True, False),
    ("decimals equal", "#### 70000.000", "70000", True, False),
    ("prefix", "#### The answer is 18.", "18", True, False),
    ("prefix", "#### Final answer: 45", "45", True, False),
    ("answer line first", "#### 18\nSo the total is 18 after 2 weeks.", "18", True, False),
    ("answer line first", "#### 3\n\nThat took 2 steps and 4 checks.", "3", True, False),
    ("same value repeated", "#### 18 (that is, 18 dollars)", "18", True, False),
    ("same value repeated", "#### 18 = 18.00", "18", True, False),
    ("arithmetic result", "#### 9 * 2 = 18", "18", True, False),
    ("arithmetic result", "#### 9 \\times \\$2 = \\$18", "18", True, False),
    ("arithmetic result", "#### (16 - 3 - 4) x 2 = 18", "18", True, False),
]
REJECT = [
    ("wrong value", "#### 17", "18", False, False),
    ("wrong value", "#### 18.5", "18", False, False),
    ("wrong value", "#### 3.0000001", "3", False, False),  # exact, no rounding
    ("sign kept", "#### -$20", "20", False, False),
    ("sign kept", "#### -18", "18", False, False),
    ("sign kept", "#### 10", "-10", False, False),
    ("hedge", "#### 21 or 20", "20", False, True),
    ("hedge", "#### 20 or 21", "20", False, True),
    ("hedge", "#### 18, 19", "18", False, True),
    ("hedge", "#### 17 and 18", "18", False, True),
    ("hedge", "#### between 17 and 19, most likely 18", "18", False, True),
    ("hedge", "#### 18 eggs after 2 weeks", "2", False, True),  # never the last number of the prose
    ("hedge on a later line", "#### 17\nor 18", "18", False, True),
    ("hedge on a later line", "#### 18\nOr maybe 19.", "18", False, True),
    ("trailing prose not read", "#### 19\n(Earlier I wrote 18 by mistake.)", "18", False, False),
    ("trailing prose not read", "#### see below\nThe answer is 18", "18", False, False),
    ("false equation", "#### 17 = 18", "18", False, True),
    ("false equation", "#### 9 * 2 = 19 = 18", "18", False, True),
    ("no number", "#### eighteen", "18", False, False),
    ("no number", "####", "18", False, False),
    ("separator is not thousands", "#### 1,2", "12", False, True),
]


@pytest.mark.parametrize(("category", "completion", "gold", "correct", "hedged"), ACCEPT + REJECT)
def test_gsm8k_table(category, completion, gold, correct, hedged):
    s = score(completion, gold, "gsm8k")
    assert (s.correct, s.hedged) == (correct, hedged), (category, s)
    assert s.reward == float(correct)  # every completion here has exactly one delimiter


def test_table_covers_every_issue_category():
    cats = {c for c, *_ in ACCEPT + REJECT}
    for required in ("sign", "currency", "thousands", "units", "trailing dot", "bold", "boxed", "hedge"):
        assert required in cats
    assert min(sum(c == k for c, *_ in ACCEPT + REJECT) for k in cats) >= 1


def test_a_gold_that_is_not_one_number_is_an_error():
    with pytest.raises(ValueError, match="single number"):
        score("#### 1", "1 or 2", "gsm8k")


def test_only_alternative_lines_after_the_answer_line_are_read():
    assert score("#### 18\nMaybe I should check: 16 - 3 - 4 = 9, 9 * 2 = 18.", "18", "gsm8k").correct
    assert score("#### 18\nAlternatively 20", "18", "gsm8k").hedged
    assert score("#### 18\notherwise 18", "18", "gsm8k").correct  # the same value again
