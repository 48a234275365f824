"""Generated arithmetic problems: correct answers, disjoint splits, determinism."""

import re

import pytest

from hrpo.data.arithmetic import arithmetic_rows, parse_levels
from hrpo.rewards import score


def test_splits_are_disjoint_and_deterministic():
    train, test = arithmetic_rows(400, "train", seed=3), arithmetic_rows(100, "test", seed=3)
    assert len({r["question"] for r in train}) == 400 and len({r["question"] for r in test}) == 100
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert arithmetic_rows(50, "train", seed=3) == train[:50]
    assert arithmetic_rows(50, "train", seed=4) != train[:50]


def test_gold_answers_are_right_and_score_with_the_gsm8k_scorer():
    for row in arithmetic_rows(200, "train"):
        x, y = (int(v) for v in re.findall(r"\d+", row["question"])[:2])  # the two operands, in text order
        q = row["question"]
        expected = (
            x + y if "buys" in q else x - y if "gave away" in q else x * y if "packs" in q else x + y - 3
        )
        assert int(row["gold"]) == expected, row
        assert row["task"] == "gsm8k"
        assert score(f"so the answer is #### {row['gold']}", row["gold"], "gsm8k").reward == 1.0


def _expected(question: str) -> int:
    """The answer recomputed from the question text (operands in text order)."""
    x, y, *rest = (int(v) for v in re.findall(r"\d+", question))
    if "gives away" in question and "buys" in question:
        return x + y - rest[0]
    if "buys" in question:
        return x + y
    if "gave away" in question:
        return x - y
    assert "packs" in question, question
    return x * y


@pytest.mark.parametrize("level", [0, 1, 2, 3, [0, 1], "0,2,3"])
def test_levels_answers_are_right_splits_disjoint_and_deterministic(level):
    train, test = (
        arithmetic_rows(300, "train", seed=1, level=level),
        arithmetic_rows(200, "test", seed=1, level=level),
    )
    for row in train + test:
        assert int(row["gold"]) == _expected(row["question"]) >= 0, row
        assert row["task"] == "gsm8k"
        assert score(f"#### {row['gold']}", row["gold"], "gsm8k").reward == 1.0
    assert len({r["question"] for r in train}) == 300 and len({r["question"] for r in test}) == 200
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert arithmetic_rows(300, "train", seed=1, level=level) == train
    assert arithmetic_rows(50, "train", seed=2, level=level) != train[:50]


def test_level_contents():
    def operands(level):
        return [
            [int(v) for v in re.findall(r"\d+", r["question"])]
            for r in arithmetic_rows(200, "train", level=level)
        ]

    assert all(len(o) == 2 and max(o) <= 9 for o in operands(0))
    assert all(len(o) == 2 and 10 <= o[0] <= 99 for o in operands(1))
    assert all("packs" in r["question"] for r in arithmetic_rows(50, "train", level=2))
    assert all(len(o) == 3 for o in operands(3))
    mixed = arithmetic_rows(200, "train", level=[0, 2])
    assert any("packs" in r["question"] for r in mixed) and any("packs" not in r["question"] for r in mixed)


def test_default_mix_is_unchanged_and_levels_validate():
    assert arithmetic_rows(5, "train", level=None) == arithmetic_rows(5, "train")
    assert arithmetic_rows(3, "test", level="default") == arithmetic_rows(3, "test")
    assert arithmetic_rows(1, "train")[0]["id"] == "arith-train-0"
    assert parse_levels("0+1") == parse_levels([1, 0]) == (0, 1)
    for bad in (7, [], "x"):
        with pytest.raises(ValueError):
            arithmetic_rows(1, "train", level=bad)
