"""Reward/scoring tables (issue 4, test group 1): real gold solutions score 1.0, parser fixes, original compat.

The per-task accept/reject tables of issue 11 are in ``tests/test_scoring_*.py``."""

from __future__ import annotations

import pytest

from hrpo import answers
from hrpo.data import load_benchmark
from hrpo.rewards import eval_metrics, make_reward_funcs, reward_weights, score

# ---- real data: every gold solution is a perfect completion ------------------------------------------------


@pytest.mark.parametrize("compat", ["fixed", "original"])
def test_every_gsm8k_test_solution_scores_one(shared_data, compat):
    rows = load_benchmark("gsm8k", "test", data_dir=shared_data)
    assert len(rows) == 1319
    failures = []
    for row in rows:
        body, final = row["solution"].rsplit("####", 1)
        completion = f"{body.strip()}\n#### {final.strip()}"
        s = score(completion, row["gold"], "gsm8k", compat=compat)
        if s.reward != 1.0:
            failures.append((row["id"], final, s))
    assert not failures, failures[:5]


def test_every_math500_answer_scores_one_against_its_solution(shared_data):
    rows = load_benchmark("math500", "test", data_dir=shared_data)
    assert len(rows) == 500
    failures = []
    for row in rows:
        # the reference solution as reasoning, then the gold answer after the delimiter, bare and boxed
        for tail in (row["gold"], f"\\boxed{{{row['gold']}}}", f"${row['gold']}$"):
            s = score(f"{row['solution']}\n#### {tail}", row["gold"], "math")
            if s.reward != 1.0:
                failures.append((row["id"], tail, s.parsed))
        # no delimiter: the last \boxed{} of the solution itself is the answer (eval ignores the format)
        if not score(row["solution"], row["gold"], "math").correct:
            failures.append((row["id"], "solution", None))
    assert not failures, failures[:5]


def test_every_math_test_solution_boxed_answer_is_its_gold(shared_data):
    rows = load_benchmark("math", "test", data_dir=shared_data)
    wrong = [r["id"] for r in rows if not score(r["solution"], r["gold"], "math").correct]
    assert len(rows) == 5000 and not wrong


# ---- tables of good and bad completions -------------------------------------------------------------------

CASES = [
    # (task, completion, gold, choices, correct, format_ok)
    ("gsm8k", "16 - 3 - 4 = 9, 9 * 2 = 18 #### 18", "18", None, True, True),
    ("gsm8k", "so #### $18.00.", "18", None, True, True),
    ("gsm8k", "#### 18 dollars", "18", None, True, True),
    ("gsm8k", "#### -3", "-3", None, True, True),
    ("gsm8k", "#### 0.75", "3/4", None, True, True),
    ("gsm8k", "#### 17", "18", None, False, True),
    ("gsm8k", "#### eighteen", "18", None, False, True),
    ("gsm8k", "the answer is 18", "18", None, True, False),  # eval: no delimiter, last number
    ("gsm8k", "#### 18 #### 18", "18", None, True, False),
    ("math", "#### \\boxed{\\frac{1}{2}}", "\\frac12", None, True, True),
    ("math", "#### $\\dfrac{1}{2}$", "\\frac{1}{2}", None, True, True),
    ("math", "#### 1/2", "\\frac{1}{2}", None, True, True),
    ("math", "#### 0.5", "\\frac{1}{2}", None, True, True),
    ("math", "#### x = 5", "5", None, True, True),
    ("math", "#### 90^\\circ", "90", None, True, True),
    ("math", "#### 10\\%", "10", None, True, True),
    ("math", "#### \\sqrt2", "\\sqrt{2}", None, True, True),
    (
        "math",
        "#### \\left( 3, \\frac{\\pi}{2} \\right)",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        None,
        True,
        True,
    ),
    ("math", "#### \\text{(C)}", "\\text{(C)}", None, True, True),
    ("math", "#### 5 \\text{ cm}", "5", None, True, True),
    ("math", "#### \\boxed{3}", "4", None, False, True),
    ("math", "#### \\frac{1}{3}", "\\frac{1}{2}", None, False, True),
    ("multiple_choice", "#### B", "B", ["w", "x", "y", "z"], True, True),
    ("multiple_choice", "#### (B)", "B", ["w", "x", "y", "z"], True, True),
    ("multiple_choice", "#### The answer is C", "C", ["w", "x", "y", "z"], True, True),
    ("multiple_choice", "#### Answer: D) zebra", "D", ["w", "x", "y", "zebra"], True, True),
    ("multiple_choice", "#### zebra", "D", ["w", "x", "y", "zebra"], True, True),
    ("multiple_choice", "#### (c)", "C", ["w", "x", "y", "z"], True, True),
    ("multiple_choice", "#### I think A is wrong, so C", "C", ["w", "x", "y", "z"], False, True),  # 2 letters
    ("multiple_choice", "#### E", "A", ["w", "x", "y", "z"], False, True),
    ("multiple_choice", "#### A", "B", ["w", "x", "y", "z"], False, True),
    ("multiple_choice", "#### I am not sure", "B", ["w", "x", "y", "z"], False, True),
    ("qa", "#### The Beatles!", ["Beatles"], None, True, True),
    ("qa", "#### james madison", ["James Madison"], None, True, True),
    ("qa", "#### John Adams", ["James Madison"], None, False, True),
    ("qa", "#### Paris #### London", ["London"], None, True, False),
]


@pytest.mark.parametrize(("task", "completion", "gold", "choices", "correct", "fmt"), CASES)
def test_reward_table(task, completion, gold, choices, correct, fmt):
    s = score(completion, gold, task, choices=choices)
    assert (s.correct, s.format_ok) == (correct, fmt), s
    assert s.reward == float(correct and fmt)  # training reward = correct AND exactly one delimiter


def test_extraction_after_last_delimiter_and_custom_delimiter():
    assert answers.extract_answer("a #### b #### 42.") == "42"
    assert answers.extract_answer("no delimiter 7") == "no delimiter 7"
    s = score("work <answer> 12", "12", "gsm8k", delimiter="<answer>")
    assert s.correct and s.format_ok
    assert not score("work #### 12", "12", "gsm8k", delimiter="<answer>").format_ok


def test_qa_f1_is_max_over_aliases():
    s = score("#### the red house", ["red barn", "blue house"], "qa")
    assert not s.correct
    assert s.f1 == pytest.approx(0.5)  # "red house" vs either alias: 1 of 2 tokens each way
    assert score("#### red barn", ["red barn", "x"], "qa").f1 == 1.0


# ---- the original's parser bugs: fixed by default, reproduced by compat="original" --------------------------


def test_gsm8k_thousands_separator_fixed_and_original():
    assert answers.normalize_gsm8k("1,234") == "1234"
    assert answers.normalize_gsm8k("1,234", "original") == "234"  # spec 8.13
    assert score("#### 1,234", "1234", "gsm8k").correct
    assert not score("#### 1,234", "1234", "gsm8k", compat="original").correct
    # the original bug is symmetric for golds with commas: "2,125" only matches when written with a comma
    assert score("#### 2,125", "2,125", "gsm8k", compat="original").correct
    assert not score("#### 2125", "2,125", "gsm8k", compat="original").correct
    assert score("#### 2125", "2,125", "gsm8k").correct


def test_choice_letter_followed_by_text_fixed_and_original():
    choices = ["It rhymes", "It teaches a lesson", "It is long", "It is short"]
    assert answers.parse_choice("B. It teaches a lesson", choices) == "B"
    assert answers.parse_choice("B. It teaches a lesson", choices, "original") == "A"  # spec 8.14
    assert score("#### B. It teaches a lesson", "B", "multiple_choice", choices=choices).correct
    assert not score(
        "#### B. It teaches a lesson", "B", "multiple_choice", choices=choices, compat="original"
    ).correct


def test_arc_numeric_label_fixed_and_original():
    # ARC row with labels "1".."4" and answerKey "3": the loader maps gold to "C" and keeps gold_raw "3"
    kw = {"choices": ["a", "b", "c", "d"], "gold_raw": "3"}
    assert score("#### C", "C", "multiple_choice", **kw).correct
    assert not score("#### C", "C", "multiple_choice", compat="original", **kw).correct  # never matchable


def test_math_without_box_fixed_and_original():
    assert score("#### \\frac{1}{2}", "\\frac{1}{2}", "math").correct
    assert not score("#### \\frac{1}{2}", "\\frac{1}{2}", "math", compat="original").correct  # read as "2"
    assert score("#### \\frac{1}{2}", "2", "math", compat="original").correct


def test_math_verify_is_on_by_default_in_fixed_and_can_be_turned_off():
    pytest.importorskip("math_verify")
    assert not score("#### 2\\sqrt{2}", "\\sqrt{8}", "math", math_verify=False).correct
    assert score("#### 2\\sqrt{2}", "\\sqrt{8}", "math").correct
    assert score("#### 2\\sqrt{2}", "\\sqrt{8}", "math", math_verify=True).correct
    assert not score("#### 3\\sqrt{2}", "\\sqrt{8}", "math").correct
    # exact rational values need no math-verify: 2/4 == 1/2, 0.25 == 1/4
    assert score("#### \\frac{2}{4}", "\\frac{1}{2}", "math", math_verify=False).correct
    # the original reward is a string match: math-verify is off there and cannot be turned on
    assert not score("#### \\boxed{2\\sqrt{2}}", "\\sqrt{8}", "math", compat="original").correct
    with pytest.raises(ValueError, match="math_verify"):
        score("#### 1", "1", "math", compat="original", math_verify=True)


def test_unknown_task_and_compat_are_errors():
    with pytest.raises(ValueError, match="unknown task"):
        score("#### 1", "1", "chess")
    with pytest.raises(ValueError, match="compat"):
        score("#### 1", "1", "gsm8k", compat="paper")


# ---- TRL reward functions ----------------------------------------------------------------------------------


def test_trl_reward_funcs_strings_and_conversational():
    reward, fmt = make_reward_funcs("gsm8k")
    assert (reward.__name__, fmt.__name__) == ("gsm8k_reward", "format_reward")
    assert reward_weights([reward, fmt]) == [1.0, 0.0]
    completions = ["x #### 7", "x #### 7 #### 7", "x #### 8", "no delimiter 7"]
    gold = ["7"] * 4
    assert reward(completions, gold=gold, trainer_state=None) == [1.0, 0.0, 0.0, 0.0]
    assert fmt(completions, gold=gold) == [1.0, 0.0, 1.0, 0.0]
    conversational = [[{"role": "assistant", "content": c}] for c in completions]
    assert reward(conversational, gold=gold) == [1.0, 0.0, 0.0, 0.0]
    metrics, extra = {}, {}
    reward(completions, gold=gold, log_metric=metrics.__setitem__, log_extra=extra.__setitem__)
    assert metrics == {"gsm8k_reward/accuracy": 0.75, "gsm8k_reward/hedged": 0.0}  # correct, format ignored
    metrics.clear()
    reward(["#### 7 or 8", "#### 7", "#### 8, 9", "#### 7"], gold=gold, log_metric=metrics.__setitem__)
    assert metrics == {"gsm8k_reward/accuracy": 0.5, "gsm8k_reward/hedged": 0.5}
    assert extra == {"answer": ["7", "7", "8", "no delimiter 7"]}


def test_trl_reward_funcs_mixed_tasks_use_task_column():
    reward, _ = make_reward_funcs()
    out = reward(
        ["#### B", "#### Paris", "#### \\frac{1}{2}"],
        gold=["B", ["Paris"], "\\frac12"],
        task=["multiple_choice", "qa", "math"],
        choices=[["a", "b", "c", "d"], None, None],
        gold_raw=["B", None, None],
    )
    assert out == [1.0, 1.0, 1.0]
    with pytest.raises(KeyError, match="task"):
        reward(["#### 1"], gold=["1"])


def test_eval_metrics_ignore_format_like_the_paper_eval():
    doc = {"gold": ["Paris"], "task": "qa"}
    m = eval_metrics(doc, "London #### Rome #### Paris")
    assert m == {"exact_match": 1.0, "format": 0.0, "hedged": 0.0, "f1": 1.0}
    m = eval_metrics(doc, "#### Paris or Rome")
    assert m["exact_match"] == 0.0 and m["hedged"] == 1.0 and m["format"] == 1.0


def test_every_task_yaml_reports_the_hedged_rate():
    from pathlib import Path

    tasks = Path(__file__).resolve().parents[1] / "tasks"
    with_metrics = [p for p in tasks.iterdir() if p.name.endswith("yaml") and "metric_list:" in p.read_text()]
    assert len(with_metrics) >= 7  # the template and every task that lists its own metrics
    for path in with_metrics:
        text = path.read_text()
        if "aggregate_metric_list" not in text:  # groups aggregate exact_match (and f1) only
            assert "- metric: hedged" in text, path.name
