"""Confidence intervals for small evaluations: Wilson score intervals and a paired bootstrap.

* :func:`wilson` -- 95 % (by default) score interval of a binomial proportion ``k / n``; well behaved at 0 and
  ``n`` successes, unlike the normal approximation (Newcombe 1998, method 3).
* :func:`paired_bootstrap` -- percentile bootstrap CI of ``mean(a) - mean(b)`` where ``a[i]`` and ``b[i]`` are
  two methods' scores on the same item ``i`` (items are resampled, pairs kept together); seeded, so the same
  inputs give the same interval.

Example::

    >>> low, high = wilson(81, 263)
    >>> round(low, 4), round(high, 4)
    (0.2553, 0.3662)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

Z95 = 1.959963984540054  # the 97.5 % point of the standard normal


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` for ``successes`` out of ``n`` (``z`` = 1.96 for 95 %)."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    # Clamp rounding noise: at 0 (or n) successes the exact bound is 0 (or 1).
    return max(0.0, centre - half) if successes > 0 else 0.0, min(
        1.0, centre + half
    ) if successes < n else 1.0


@dataclass(frozen=True)
class Proportion:
    """``k`` of ``n`` with its Wilson interval."""

    k: float
    n: int
    rate: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.rate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def proportion(values: Sequence[float] | np.ndarray) -> Proportion:
    """Rate of a 0/1 sequence with its 95 % Wilson interval."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("no values")
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError("proportion() needs 0/1 values")
    k = float(arr.sum())
    low, high = wilson(k, arr.size)
    return Proportion(k, int(arr.size), k / arr.size, low, high)


@dataclass(frozen=True)
class Difference:
    """``mean(a) - mean(b)`` on paired items, with a bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    n: int
    resamples: int
    confidence: float

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Difference:
    """Percentile bootstrap CI of ``mean(a) - mean(b)``; ``a[i]``, ``b[i]`` are scores on the same item.

    Items are resampled with replacement (``resamples`` times, seeded by ``seed``); the interval is the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled mean differences.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"need two non-empty 1-d arrays of the same length, got {x.shape} and {y.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    diff = x - y
    n = diff.size
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)  # bounded memory: at most ~2M indices at a time
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diff[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Difference(float(diff.mean()), float(low), float(high), n, resamples, confidence)
