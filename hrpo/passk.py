"""pass@k: the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code", eq. 1).

From ``n`` sampled completions of one problem, ``c`` of them correct, the probability that at least one of ``k``
completions drawn without replacement is correct is

    pass@k = 1 - C(n - c, k) / C(n, k)

(exactly the mean over all k-subsets of "some member is correct"; averaged over problems it is an unbiased
estimate of the model's pass@k). The binomials overflow floats for realistic ``n``, so it is computed as the
product ``1 - prod_{i = n-c+1}^{n} (1 - k / i)``, the same ratio term by term (Chen et al.'s numpy form).

Used by the sampled ``hrpo_*_passk`` lm-eval tasks (``tasks/utils.py``: :func:`process_results_passk`); plain
Python, no dependencies.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of a problem with ``c`` correct out of ``n`` samples; needs ``1 <= k <= n``."""
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(
            f"pass@{k} needs 1 <= k <= n samples, got n={n}; sample more (lm-eval repeats >= {k})"
        )
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_ks(correct: Sequence[bool | float], ks: Iterable[int]) -> dict[int, float]:
    """``{k: pass@k}`` of one problem's per-sample correctness, for each ``k <= len(correct)`` of ``ks``
    (larger ``k`` are left out: they need more samples)."""
    n = len(correct)
    c = sum(1 for x in correct if x)
    return {k: pass_at_k(n, c, k) for k in ks if k <= n}
