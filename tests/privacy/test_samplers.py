"""The exact samplers draw the distributions they claim (chi-square against the exact pmf)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from sharechain.privacy.samplers import (
    bernoulli_exp,
    check_gaussian,
    check_laplace,
    discrete_gaussian,
    discrete_gaussian_pmf,
    discrete_laplace,
    discrete_laplace_pmf,
)

N = 200_000


def chi2_critical(df: int, z: float = 3.09) -> float:
    """Upper 0.1% point of chi-square(df), Wilson-Hilferty approximation."""
    h = 2 / (9 * df)
    return float(df * (1 - h + z * math.sqrt(h)) ** 3)


def chi_square(draws: np.ndarray, pmf: object) -> tuple[float, int]:
    """Statistic and degrees of freedom, cells with expected count >= 5, tails pooled."""
    assert callable(pmf)
    values, counts = np.unique(draws, return_counts=True)
    observed = dict(zip(values.tolist(), counts.tolist(), strict=True))
    lo = hi = 0
    while N * pmf(lo - 1) >= 5:
        lo -= 1
    while N * pmf(hi + 1) >= 5:
        hi += 1
    stat, cells = 0.0, 0
    inside = 0.0
    for x in range(lo, hi + 1):
        expected = N * pmf(x)
        inside += pmf(x)
        stat += (observed.get(x, 0) - expected) ** 2 / expected
        cells += 1
    tail_expected = N * (1 - inside)
    tail_observed = sum(c for x, c in observed.items() if x < lo or x > hi)
    if tail_expected > 0:
        stat += (tail_observed - tail_expected) ** 2 / tail_expected
        cells += 1
    return stat, cells - 1


@pytest.mark.parametrize("scale", [Fraction(1, 2), Fraction(3, 2), Fraction(7)])
def test_discrete_laplace_matches_its_pmf(scale: Fraction) -> None:
    draws = discrete_laplace(np.random.default_rng(11), scale, N)
    stat, df = chi_square(draws, lambda x: discrete_laplace_pmf(scale, x))
    assert stat < chi2_critical(df), (stat, df)


@pytest.mark.parametrize("sigma2", [Fraction(1, 4), Fraction(2), Fraction(29), Fraction(101, 3)])
def test_discrete_gaussian_matches_its_pmf(sigma2: Fraction) -> None:
    draws = discrete_gaussian(np.random.default_rng(12), sigma2, N)
    stat, df = chi_square(draws, lambda x: discrete_gaussian_pmf(sigma2, x))
    assert stat < chi2_critical(df), (stat, df)


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng, n: discrete_laplace(rng, Fraction(2000), n),
        lambda rng, n: discrete_gaussian(rng, Fraction(5300**2), n),
    ],
    ids=["laplace", "gaussian"],
)
def test_noise_is_unbiased(draw: object) -> None:
    assert callable(draw)
    x = draw(np.random.default_rng(13), 400_000)
    standard_error = x.std() / math.sqrt(len(x))
    assert abs(x.mean()) < 4 * standard_error


def test_variance_is_the_distributions() -> None:
    rng = np.random.default_rng(14)
    scale = Fraction(50)
    lap = discrete_laplace(rng, scale, N)
    e = math.exp(-1 / 50)
    assert lap.var() == pytest.approx(2 * e / (1 - e) ** 2, rel=0.03)
    gauss = discrete_gaussian(rng, Fraction(400), N)
    assert gauss.var() == pytest.approx(400, rel=0.03)


@pytest.mark.parametrize("gamma", [Fraction(0), Fraction(1, 3), Fraction(1), Fraction(5, 2)])
def test_bernoulli_exp_frequency(gamma: Fraction) -> None:
    num = np.full(N, gamma.numerator, np.int64)
    coins = bernoulli_exp(np.random.default_rng(15), num, gamma.denominator)
    p = math.exp(-gamma)
    assert abs(coins.mean() - p) < 4 * math.sqrt(p * (1 - p) / N) + 1e-12


def test_the_same_seed_gives_the_same_draws() -> None:
    a = discrete_gaussian(np.random.default_rng(5), Fraction(10), 1000)
    b = discrete_gaussian(np.random.default_rng(5), Fraction(10), 1000)
    assert (a == b).all()
    assert discrete_laplace(np.random.default_rng(5), Fraction(3), 0).size == 0


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        check_laplace(Fraction(0))
    with pytest.raises(ValueError, match="too large"):
        check_laplace(Fraction(1, 1 << 63))
    with pytest.raises(ValueError, match="positive"):
        check_gaussian(Fraction(-1))
    with pytest.raises(ValueError, match="too large"):
        check_gaussian(Fraction(10**10))
    with pytest.raises(ValueError, match="denominator"):
        bernoulli_exp(np.random.default_rng(1), np.zeros(1, np.int64), 0)


def test_coins_the_single_draw_leaves_undecided_continue_the_loop() -> None:
    """U = 0 means K > m: the coin continues the paper's loop from K = m + 1."""
    from sharechain.privacy import samplers

    class ZeroFirst:
        """A generator whose first draw is all zeros (the rare case), then a real one."""

        def __init__(self) -> None:
            self.inner = np.random.default_rng(16)
            self.first = True

        def integers(self, low: int, high: object, size: int, dtype: object) -> np.ndarray:
            if self.first:
                self.first = False
                return np.zeros(size, np.int64)
            return self.inner.integers(low, high, size=size, dtype=dtype)

    coins = samplers._bernoulli_exp1(ZeroFirst(), 50_000)  # type: ignore[arg-type]
    # Given K >= s (s = m + 1), the loop stops at k with probability
    # (1/s)(1/(s+1))...(1/(k-1)) (1 - 1/k); the coin is 1 when k is odd.
    table = samplers._table(1)
    assert table is not None
    start = table[0] + 1
    expected, reach = 0.0, 1.0
    for k in range(start, start + 30):
        if k % 2:
            expected += reach * (1 - 1 / k)
        reach /= k
    assert abs(coins.mean() - expected) < 0.01
