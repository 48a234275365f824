"""One scorer for RL rewards and for evaluation (spec 4.3): :func:`score` is what both call.

* Training reward (TRL): ``1.0`` iff the answer is correct AND the completion has exactly one delimiter
  (no partial credit). :func:`make_reward_funcs` returns that reward plus a format-only reward meant to be
  logged with weight 0 (``GRPOConfig(reward_weights=reward_weights(funcs))``), so TRL reports both as
  ``rewards/<name>/mean`` while optimising only the paper's reward; the first also logs ``accuracy`` and
  ``hedged`` rates.
* Evaluation (lm-eval ``process_results`` in ``tasks/utils.py``): :func:`eval_metrics` -- correctness only
  (no format check, as the paper's eval), the format rate, the hedged rate and, for QA, token F1.

``compat="fixed"`` (default) reads one answer or nothing (:mod:`hrpo.scoring`; rules in ``tasks/README.md``);
``compat="original"`` reproduces the authors' parsers exactly (:mod:`hrpo.scoring.original`). Example::

    >>> funcs = make_reward_funcs("gsm8k")
    >>> funcs[0](["3 + 4 = 7 #### 7", "7 #### 7 #### 7", "#### 7 or 8"], gold=["7", "7", "7"])
    [1.0, 0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hrpo.answers import DEFAULT_DELIMITER, Compat
from hrpo.scoring import choice, gsm8k, math_answer, original, qa, region, verify
from hrpo.scoring.verdict import Verdict

TASKS = ("gsm8k", "math", "multiple_choice", "qa")


@dataclass(frozen=True)
class Score:
    """Outcome of scoring one completion.

    ``answer`` is the text that was read (``fixed``: the answer line; ``original``: everything after the last
    delimiter), ``parsed`` the normalised prediction that was compared (``None`` if nothing parseable), ``f1``
    the token F1 (QA only), ``hedged`` whether the answer held several different candidates (judged by the
    ``fixed`` reader under either ``compat``; under ``fixed`` a hedge is never correct).
    """

    correct: bool
    format_ok: bool
    answer: str
    parsed: str | None
    f1: float | None = None
    hedged: bool = False

    @property
    def reward(self) -> float:
        """The training reward: correct AND exactly one delimiter."""
        return float(self.correct and self.format_ok)


def score(
    completion: str,
    gold: str | Sequence[str],
    task: str,
    *,
    choices: Sequence[str] | None = None,
    gold_raw: str | None = None,
    delimiter: str = DEFAULT_DELIMITER,
    compat: Compat = "fixed",
    math_verify: bool | None = None,
    verify_timeout: float = verify.DEFAULT_TIMEOUT,
) -> Score:
    """Score ``completion`` against ``gold`` for ``task`` (``gsm8k``, ``math``, ``multiple_choice``, ``qa``).

    ``gold`` is the row's gold (a list of aliases for QA). ``choices`` (multiple choice) are the option texts;
    ``gold_raw`` is the source's own label, used by ``compat="original"``. ``math_verify`` (MATH): symbolic
    equivalence when the string match fails, on by default under ``fixed``, never under ``original`` (the
    authors used a string match); each check is cut off after ``verify_timeout`` seconds (then: string match).
    """
    if compat not in ("fixed", "original"):
        raise ValueError(f"compat must be 'fixed' or 'original', got {compat!r}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if compat == "original" and math_verify:
        raise ValueError("compat='original' reproduces the authors' string match; math_verify must be off")
    fmt = region.delimiter_count(completion, delimiter) == 1
    line = region.answer_region(completion, delimiter)
    verdict = _judge_fixed(
        line, gold, task, choices, math_verify is not False and compat == "fixed", verify_timeout
    )
    if compat == "fixed":
        f1 = qa.f1(line, _aliases(gold)) if task == "qa" else None
        return Score(verdict.correct, fmt, line, verdict.parsed, f1, verdict.hedged)
    ans = original.extract(completion, delimiter)
    correct, parsed = _judge_original(ans, gold, task, gold_raw)
    f1 = qa.f1(ans, _aliases(gold)) if task == "qa" else None
    return Score(correct, fmt, ans, parsed, f1, verdict.hedged)


def _judge_fixed(
    line: str,
    gold: str | Sequence[str],
    task: str,
    choices: Sequence[str] | None,
    use_math_verify: bool,
    timeout: float,
) -> Verdict:
    if task == "gsm8k":
        return gsm8k.judge(line, _one(gold))
    if task == "math":
        return math_answer.judge(line, _one(gold), use_math_verify=use_math_verify, timeout=timeout)
    if task == "multiple_choice":
        return choice.judge(line, _one(gold), list(choices) if choices else None)
    return qa.judge(line, _aliases(gold))


def _judge_original(
    ans: str, gold: str | Sequence[str], task: str, gold_raw: str | None
) -> tuple[bool, str | None]:
    """The original reward's comparison: the same ``process_*_answer`` on prediction and gold."""
    if task == "gsm8k":
        pred = original.gsm8k(ans)
        return pred == original.gsm8k(_one(gold)), pred
    if task == "math":
        pred = original.math(ans)
        return pred == original.math_gold(_one(gold)), pred
    if task == "multiple_choice":
        pred = original.mmlu(ans)
        return pred == original.mmlu(gold_raw or _one(gold)), pred
    pred = original.qa(ans)
    return any(pred == original.qa(a) for a in _aliases(gold)), pred


def _aliases(gold: str | Sequence[str]) -> list[str]:
    return [gold] if isinstance(gold, str) else [str(g) for g in gold]


def _one(gold: str | Sequence[str]) -> str:
    if isinstance(gold, str):
        return gold
    if len(gold) == 0:
        raise ValueError("empty gold")
    return str(gold[0])


def eval_metrics(doc: dict[str, Any], completion: str, **opts: Any) -> dict[str, float]:
    """lm-eval metrics for one doc (a row of :mod:`hrpo.data`): ``exact_match`` (correctness, no format
    check), ``format`` (exactly one delimiter), ``hedged`` (several different answers) and, for QA, ``f1``.
    ``opts`` go to :func:`score`."""
    s = score(
        completion, doc["gold"], doc["task"], choices=doc.get("choices"), gold_raw=doc.get("gold_raw"), **opts
    )
    out = {"exact_match": float(s.correct), "format": float(s.format_ok), "hedged": float(s.hedged)}
    if doc["task"] == "qa":
        out["f1"] = float(s.f1 or 0.0)
    return out


# ---- TRL reward functions ----------------------------------------------------------------------------------


def completion_text(completion: Any) -> str:
    """Text of a TRL completion: a string, or a conversational list of messages (assistant contents joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    if isinstance(completion, Sequence):
        return "".join(
            completion_text(m)
            for m in completion
            if not isinstance(m, dict) or m.get("role", "assistant") == "assistant"
        )
    raise TypeError(f"cannot read a completion of type {type(completion).__name__}")


def _column(kwargs: dict[str, Any], key: str, n: int) -> list[Any]:
    value = kwargs.get(key)
    return list(value) if value is not None else [None] * n


def make_reward_funcs(
    task: str | None = None,
    *,
    delimiter: str = DEFAULT_DELIMITER,
    compat: Compat = "fixed",
    math_verify: bool | None = None,
    verify_timeout: float = verify.DEFAULT_TIMEOUT,
) -> list[Callable[..., list[float]]]:
    """``[<task>_reward, format_reward]`` for ``GRPOTrainer(reward_funcs=...)``.

    ``task=None`` reads each sample's ``task`` column (mixed datasets); otherwise every sample is scored as
    ``task``. Dataset columns arrive as kwargs lists: ``gold`` (required), ``choices``, ``gold_raw``, ``task``.
    The first function is the paper's reward (correct AND one delimiter, weight 1); the second is the format
    rate (weight 0, logged only). Each function has a ``reward_weight`` attribute; see :func:`reward_weights`.
    Under TRL the first also logs ``<task>_reward/accuracy`` (correct, format ignored: the eval metric) and
    ``<task>_reward/hedged`` (share of completions holding several different answers), and adds the answer
    that was read to the completions table. ``compat``, ``math_verify`` and ``verify_timeout`` go to
    :func:`score`.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)} or None")

    def scores(completions: list[Any], kwargs: dict[str, Any]) -> list[Score]:
        n = len(completions)
        if "gold" not in kwargs:
            raise KeyError("the training dataset needs a 'gold' column (rows from hrpo.data have one)")
        tasks = [task] * n if task is not None else _column(kwargs, "task", n)
        if None in tasks:
            raise KeyError("make_reward_funcs(task=None) needs a 'task' column in the dataset")
        return [
            score(
                completion_text(c),
                g,
                t,
                choices=ch,
                gold_raw=gr,
                delimiter=delimiter,
                compat=compat,
                math_verify=math_verify,
                verify_timeout=verify_timeout,
            )
            for c, g, t, ch, gr in zip(
                completions,
                kwargs["gold"],
                tasks,
                _column(kwargs, "choices", n),
                _column(kwargs, "gold_raw", n),
                strict=True,
            )
        ]

    def reward(completions: list[Any], **kwargs: Any) -> list[float]:
        result = scores(completions, kwargs)
        # TRL >= 1.x hands reward functions these loggers: report the eval metric (correct, format ignored),
        # the hedging rate (a policy that learns to list several answers shows here first) and the answers read.
        if callable(log_metric := kwargs.get("log_metric")):
            n = max(len(result), 1)
            log_metric(f"{reward.__name__}/accuracy", sum(s.correct for s in result) / n)
            log_metric(f"{reward.__name__}/hedged", sum(s.hedged for s in result) / n)
        if callable(log_extra := kwargs.get("log_extra")):
            log_extra("answer", [s.answer for s in result])
        return [s.reward for s in result]

    def format_reward(completions: list[Any], **kwargs: Any) -> list[float]:
        return [float(region.delimiter_count(completion_text(c), delimiter) == 1) for c in completions]

    reward.__name__ = reward.__qualname__ = f"{task or 'hrpo'}_reward"
    format_reward.__name__ = format_reward.__qualname__ = "format_reward"
    reward.reward_weight = 1.0  # type: ignore[attr-defined]
    format_reward.reward_weight = 0.0  # type: ignore[attr-defined]
    return [reward, format_reward]


def reward_weights(funcs: Sequence[Callable[..., Any]]) -> list[float]:
    """``GRPOConfig.reward_weights`` for ``funcs`` (1.0 unless a function carries ``reward_weight``)."""
    return [float(getattr(f, "reward_weight", 1.0)) for f in funcs]
