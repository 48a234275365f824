"""Property tests over every real gold (issue 11): equivalent spellings are accepted, hedges never are.

* GSM8K test (1,319 golds): ``#### g`` in 8 equivalent spellings accepted; ``#### g or g+1``,
  ``#### g+1 or g`` and ``#### g+1`` rejected.
* MATH500 (500) and MATH test (5,000): ``#### \\boxed{gold}`` accepted; ``#### gold or X`` and
  ``\\boxed{gold} \\text{ or } \\boxed{X}`` rejected (X a different value).
* MMLU-STEM / ARC-Challenge: the gold letter and the gold option's text accepted, two letters rejected.
* NQ-open / Bamboogle: every alias accepted; ``alias or X`` rejected.

math-verify is on (the default) but never needed here: equal strings or a hedge decide, so the whole file takes
a few seconds (measured: 7 s on 2 shared cores).
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from hrpo.data import load_benchmark
from hrpo.rewards import score
from hrpo.scoring import gsm8k


def _spellings(g: str) -> list[str]:
    v = gsm8k.gold_value(g)
    assert v.denominator == 1, g
    n = int(v)
    sign, mag = ("-" if n < 0 else ""), abs(n)
    return [
        f"#### {g}",
        f"#### {n}",
        f"#### {sign}${mag:,}",
        f"#### {n}.00",
        f"#### **{n}**.",
        f"#### \\boxed{{{n}}}",
        f"#### The answer is {sign}{mag:,} dollars.",
        f"#### {n}\nSo the answer is {n}, after {mag + 7} tries.",
    ]


def test_every_gsm8k_gold_in_8_spellings_and_its_hedges(shared_data):
    rows = load_benchmark("gsm8k", "test", data_dir=shared_data)
    assert len(rows) == 1319
    failures = []
    for row in rows:
        g = row["gold"]
        nxt = int(gsm8k.gold_value(g)) + 1
        for completion in _spellings(g):
            if score(completion, g, "gsm8k").reward != 1.0:
                failures.append(("accept", completion, g))
        for completion in (f"#### {g} or {nxt}", f"#### {nxt} or {g}"):
            s = score(completion, g, "gsm8k")
            if s.correct or not s.hedged:
                failures.append(("hedge", completion, g))
        if score(f"#### {nxt}", g, "gsm8k").correct:
            failures.append(("wrong", nxt, g))
    assert not failures, failures[:10]


@pytest.mark.parametrize("name", ["math500", "math"])
def test_every_math_gold_boxed_is_accepted_and_its_hedges_rejected(shared_data, name):
    rows = load_benchmark(name, "test", data_dir=shared_data)
    assert len(rows) == {"math500": 500, "math": 5000}[name]
    failures = []
    for row in rows:
        g = row["gold"]
        other = "12345" if g.strip() != "12345" else "54321"
        if not score(f"#### \\boxed{{{g}}}", g, "math").correct:  # the default: math-verify on
            failures.append(("accept", g))
        for completion in (f"#### {g} or {other}", f"#### \\boxed{{{g}}} \\text{{ or }} \\boxed{{{other}}}"):
            s = score(completion, g, "math")
            if s.correct or not s.hedged:
                failures.append(("hedge", completion))
    assert not failures, failures[:10]


@pytest.mark.parametrize(("name", "split"), [("mmlu_stem", "test"), ("arc_challenge", "test")])
def test_every_choice_row(shared_data, name, split):
    rows = load_benchmark(name, split, data_dir=shared_data)
    failures = []
    for row in rows:
        gold, choices = row["gold"], row["choices"]
        letters = "ABCDEFGHIJ"[: len(choices)]
        other = next(x for x in letters if x != gold)
        text = choices[letters.index(gold)]
        # the text names the option when it is unique, on one line (only the answer line is read) and not
        # itself a capital letter (mmlu_stem/2147 has options As, P, Sb, B: "B" is the letter B)
        unique = sum(c.strip() == text.strip() for c in choices) == 1
        unique = unique and "\n" not in text and not (len(text.strip()) == 1 and text.strip().isupper())
        accepts = [f"#### {gold}", f"#### ({gold})", f"#### The answer is {gold}."]
        accepts += [f"#### {text}", f"#### {gold}. {text}"] if unique else []
        for completion in accepts:
            if not score(completion, gold, "multiple_choice", choices=choices).correct:
                failures.append(("accept", row["id"], completion))
        for completion in (f"#### {gold} or {other}", f"#### {other} and {gold}"):
            if completion[5:].casefold() in (c.casefold() for c in choices):
                continue  # mmlu_stem/148 has an option "A and D"
            s = score(completion, gold, "multiple_choice", choices=choices)
            if s.correct or not s.hedged:
                failures.append(("hedge", row["id"], completion))
    assert not failures, failures[:10]


@pytest.mark.parametrize("name", ["nq", "bamboogle"])
def test_every_qa_alias(shared_data, name):
    rows = load_benchmark(name, "test", data_dir=shared_data)
    failures = []
    for row in rows:
        for alias in row["gold"]:
            s = score(f"#### {alias}", row["gold"], "qa")
            if s.parsed and not s.correct:  # aliases that normalise to "" are dropped
                failures.append(("accept", alias))
            h = score(f"#### {alias} or Zyxwvut Qrstuv", row["gold"], "qa")
            if h.correct or (s.parsed and not h.hedged):
                failures.append(("hedge", alias))
    assert not failures, failures[:10]


def test_gsm8k_values_are_exact():
    assert gsm8k.gold_value("1,450,000") == 1450000
    assert gsm8k.numbers("#### 0.75 = 3/4") == [Fraction(3, 4)]
