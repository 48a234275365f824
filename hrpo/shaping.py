"""An explicit, default-off format-shaping reward for models that rarely write one clean ``#### answer``.

The paper's reward (:func:`hrpo.rewards.make_reward_funcs`) is 1 only for a correct answer after exactly one
``####``; nothing here changes it, and held-out metrics stay that reward. A small model such as SmolLM2-135M
writes the delimiter but often several times (``#### 1\\n#### 2\\n...`` until the token cap), so on most prompts all
G completions score 0 and the group carries no policy-gradient signal (calibration: ``benchmark/README.md``,
"Calibration (issue 12)"). :func:`make_format_shaping_reward` adds a second, separately logged reward:

    shaping = weight * [exactly one delimiter AND one parseable, unhedged answer after it]

Correctness is not looked at, so the shaped total is ``1 + weight`` (correct), ``weight`` (well formed, wrong)
or 0. With TRL's group-std advantage scaling a group where only the format varies gets a full-size signal toward
the format whatever the weight; the weight (default 0.25) sets how much a correct answer is preferred to a
merely well-formed one within a group where both occur. It is never on unless passed to the trainer::

    funcs = make_reward_funcs("gsm8k") + [make_format_shaping_reward(0.25)]
    GRPOConfig(reward_weights=reward_weights(funcs))   # -> [1.0, 0.0, 0.25]

TRL logs it as ``rewards/format_shaping_reward/mean``; its ``reward`` column is the weighted total, so read the
paper's reward from ``rewards/<task>_reward/mean``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hrpo.answers import DEFAULT_DELIMITER
from hrpo.rewards import completion_text, score

DEFAULT_SHAPING_WEIGHT = 0.25


def make_format_shaping_reward(
    weight: float = DEFAULT_SHAPING_WEIGHT, task: str = "gsm8k", delimiter: str = DEFAULT_DELIMITER
) -> Callable[..., list[float]]:
    """A TRL reward function: 1.0 for a well-formed answer (one delimiter, one unhedged parseable answer), else 0.

    The returned function carries ``reward_weight = weight`` (see :func:`hrpo.rewards.reward_weights`).
    """
    if not weight > 0:
        raise ValueError(
            f"a shaping weight must be > 0 (leave the function out to switch shaping off), got {weight}"
        )

    def format_shaping_reward(completions: list[Any], **kwargs: Any) -> list[float]:
        golds = kwargs.get("gold")
        if golds is None:
            raise KeyError("the training dataset needs a 'gold' column (rows from hrpo.data have one)")
        out = []
        for completion, gold in zip(completions, golds, strict=True):
            s = score(completion_text(completion), gold, task, delimiter=delimiter)
            out.append(float(s.format_ok and s.parsed is not None and not s.hedged))
        return out

    format_shaping_reward.reward_weight = float(weight)  # type: ignore[attr-defined]
    return format_shaping_reward
