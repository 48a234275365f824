"""hrpo.stats: Wilson intervals against published values, the paired bootstrap against exact cases."""

import math

import numpy as np
import pytest

from hrpo.stats import paired_bootstrap, proportion, wilson


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Newcombe (1998), Stat. Med. 17:857, Table I, method 3 (score interval without continuity correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        # Hand computed: 0/10 -> [0, z^2/(n+z^2)] = [0, 0.2775]; 5/10 -> 0.5 +- 0.2634.
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_matches_published_values(k, n, low, high):
    got = wilson(k, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_closed_forms_and_errors():
    z2 = 1.959963984540054**2
    assert wilson(0, 10)[1] == pytest.approx(z2 / (10 + z2), rel=1e-12)
    low, high = wilson(5, 10)
    assert (low + high) / 2 == pytest.approx(0.5, abs=1e-12)
    assert wilson(3, 10, z=0.0) == pytest.approx((0.3, 0.3))
    for bad in [(1, 0), (-1, 5), (6, 5)]:
        with pytest.raises(ValueError):
            wilson(*bad)


def test_proportion():
    p = proportion([1, 0, 0, 1, 0, 0, 0, 0, 0, 0])
    assert (p.k, p.n, p.rate) == (2, 10, 0.2)
    assert (p.low, p.high) == pytest.approx(wilson(2, 10))
    with pytest.raises(ValueError):
        proportion([0.5, 1])


def test_bootstrap_identical_arrays_give_zero():
    a = np.random.default_rng(1).integers(0, 2, size=200).astype(float)
    d = paired_bootstrap(a, a.copy(), resamples=2000)
    assert (d.estimate, d.low, d.high) == (0.0, 0.0, 0.0)


def test_bootstrap_constant_shift_gives_exactly_the_shift():
    b = np.random.default_rng(2).integers(0, 2, size=150).astype(float)
    d = paired_bootstrap(b + 0.25, b, resamples=2000)
    assert (d.estimate, d.low, d.high) == (0.25, 0.25, 0.25)


def test_bootstrap_is_seeded_and_ordered():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 2, 120), rng.integers(0, 2, 120)
    first, again = paired_bootstrap(a, b, seed=7), paired_bootstrap(a, b, seed=7)
    assert first == again
    assert first.low <= first.estimate <= first.high
    assert first.estimate == pytest.approx(a.mean() - b.mean())
    assert paired_bootstrap(b, a, seed=7).estimate == pytest.approx(-first.estimate)
    with pytest.raises(ValueError):
        paired_bootstrap([1, 0], [1])


def test_bootstrap_width_matches_the_normal_theory_for_paired_binary_data():
    """n = 400 pairs with independent 0/1 scores: the CI half-width ~ 1.96 * sd(diff) / sqrt(n)."""
    rng = np.random.default_rng(4)
    a, b = (rng.random(400) < 0.5).astype(float), (rng.random(400) < 0.3).astype(float)
    d = paired_bootstrap(a, b, resamples=20_000)
    expected = 1.959964 * np.std(a - b) / math.sqrt(400)
    assert (d.high - d.low) / 2 == pytest.approx(expected, rel=0.05)


def test_bootstrap_coverage_on_a_seeded_simulation():
    """Repeated paired experiments with a known mean difference (0.2): the 95 % CI covers it ~95 % of the time."""
    rng = np.random.default_rng(5)
    covered, trials = 0, 300
    for t in range(trials):
        base = (rng.random(100) < 0.3).astype(float)
        better = np.maximum(base, (rng.random(100) < 2 / 7).astype(float))  # P(1) = 0.3 + 0.7 * 2/7 = 0.5
        d = paired_bootstrap(better, base, resamples=1000, seed=t)
        covered += d.low <= 0.2 <= d.high
    assert 0.90 <= covered / trials <= 0.99, covered / trials
