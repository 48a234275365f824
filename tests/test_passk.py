"""The unbiased pass@k estimator (:mod:`hrpo.passk`) against brute force: the mean over every k-subset of the n
samples of "some member is correct" (what Chen et al. 2021's estimator is the closed form of)."""

from __future__ import annotations

import itertools
import math

import pytest

from hrpo.passk import pass_at_k, pass_at_ks


def brute_force(correct: list[bool], k: int) -> float:
    subsets = list(itertools.combinations(range(len(correct)), k))
    return sum(any(correct[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 11))
def test_equals_the_mean_over_all_k_subsets(n):
    for c in range(n + 1):
        # the estimator depends on c only, but the brute force sees where the correct samples are
        for correct in ([True] * c + [False] * (n - c), [i % 2 == 0 for i in range(n)][:n]):
            c_here = sum(correct)
            for k in range(1, n + 1):
                assert pass_at_k(n, c_here, k) == pytest.approx(brute_force(correct, k), rel=1e-12, abs=1e-15)


def test_edge_values_and_k_1_is_the_sample_mean():
    assert pass_at_k(16, 0, 8) == 0.0 and pass_at_k(16, 16, 1) == 1.0
    assert pass_at_k(16, 9, 8) == 1.0  # 7 wrong samples cannot fill a subset of 8
    assert pass_at_k(16, 5, 1) == pytest.approx(5 / 16, rel=1e-12)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(4, 2))


def test_stable_where_the_binomials_overflow_a_float():
    n, c, k = 2000, 3, 500
    assert math.comb(n, k) > 1e308  # float(C(n, k)) would overflow
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)  # exact integer arithmetic, then one division
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12)


def test_pass_at_ks_leaves_out_k_above_n_and_bad_input_says_why():
    assert pass_at_ks([1.0, 0.0, 0.0, 1.0], (1, 2, 4, 8)) == {1: 0.5, 2: pytest.approx(5 / 6), 4: 1.0}
    with pytest.raises(ValueError, match=r"pass@8 needs 1 <= k <= n samples, got n=4; sample more"):
        pass_at_k(4, 1, 8)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(4, 5, 1)
