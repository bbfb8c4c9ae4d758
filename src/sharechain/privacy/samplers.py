"""Exact samplers for the discrete Laplace and discrete Gaussian distributions.

Differential privacy on a computer goes wrong when noise is drawn with
floating point: the gaps between representable doubles leak the value that was
noised (Mironov 2012, "On significance of the least significant bits for
differential privacy"). The mechanisms here therefore add *integer* noise drawn
exactly, following Canonne, Kamath and Steinke 2020, "The Discrete Gaussian for
Differential Privacy" (NeurIPS 2020, arXiv:2004.00010):

- Algorithm 1: a Bernoulli(exp(-gamma)) coin for a rational gamma >= 0, built
  only from Bernoulli coins with rational probabilities;
- Algorithm 2: the discrete Laplace distribution Lap_Z(t/s), P[x] ∝ exp(-|x| s/t);
- Algorithm 3: the discrete Gaussian N_Z(0, sigma²) for a rational sigma², by
  rejection from a discrete Laplace proposal.

Every probability is a ratio of integers, so the only randomness used is a
uniform integer below a bound (`Generator.integers`, which numpy draws by
exact rejection from uniform bits). The algorithms are the paper's, run on
whole arrays at once: each loop of the paper becomes a loop over the samples
still undecided, so a million draws cost a few dozen numpy passes instead of a
million Python loops. Parameters are `fractions.Fraction` or integers, never
floats; the integer arithmetic stays below 2^63 (checked, `ValueError` if not).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from functools import lru_cache
from math import isqrt

import numpy as np
import numpy.typing as npt

__all__ = [
    "IntArray",
    "bernoulli_exp",
    "check_gaussian",
    "check_laplace",
    "discrete_gaussian",
    "discrete_gaussian_pmf",
    "discrete_laplace",
    "discrete_laplace_pmf",
]

IntArray = npt.NDArray[np.int64]
"""A one-dimensional array of 64-bit integers."""
BoolArray = npt.NDArray[np.bool_]
"""A one-dimensional array of coins."""

_LIMIT = 1 << 62
"""Bound on every integer a sampler draws below, with room for one doubling."""
_TABLE = 1 << 18
"""Most entries of a lookup table of Algorithm 1's first steps (one byte each)."""


def _uniform_below(rng: np.random.Generator, bound: IntArray | int, n: int) -> IntArray:
    """`n` integers, the i-th uniform in [0, bound_i)."""
    return rng.integers(0, bound, size=n, dtype=np.int64)


def bernoulli_exp(rng: np.random.Generator, num: IntArray, den: int) -> BoolArray:
    """Algorithm 1: coin i is 1 with probability exp(-num_i / den); num_i >= 0.

    gamma = q + r/den with q = floor(gamma): the coin is the AND of q coins
    Bernoulli(exp(-1)) and one Bernoulli(exp(-r/den)). For gamma in [0, 1] the
    paper draws A_K ~ Bernoulli(gamma/K) for K = 1, 2, ... until one is 0 and
    returns 1 iff that K is odd.
    """
    if den <= 0 or den >= _LIMIT:
        raise ValueError(f"denominator {den} out of range (1 .. 2^62)")
    if len(num) and int(num.max()) < den:
        return _bernoulli_exp_fraction(rng, num, den)
    q, r = np.divmod(num, den)
    result = np.ones(len(num), dtype=np.bool_)
    # The integer part: q_i independent Bernoulli(exp(-1)) coins, all must be 1.
    pending = np.flatnonzero(q > 0)
    j = 0
    while pending.size:
        coins = _bernoulli_exp1(rng, pending.size)
        result[pending[~coins]] = False
        j += 1
        pending = pending[coins & (q[pending] > j)]
    # exp(-0) = 1: only the survivors with a fractional part need another coin.
    live = np.flatnonzero(result & (r > 0))
    result[live] = _bernoulli_exp_fraction(rng, r[live], den)
    return result


@lru_cache(maxsize=256)
def _block(den: int, first: int) -> tuple[int, int, tuple[int, ...]]:
    """How many steps one uniform draw decides from step `first`, and its bound and thresholds.

    Given that the loop reached step `first` (A_1 .. A_{first-1} were all 1),
    it reaches step first + i with probability
    gamma^i (first-1)!/(first+i-1)!. With D = den^m (first+m-1)!/(first-1)!,
    one uniform U below D decides the next m steps at once: the loop reaches
    step first + i exactly when U < num^i c_i, c_i = den^(m-i) (first+m-1)!/(first+i-1)!,
    integers below D < 2^62. From step 1 the block is a single step (U < num
    is A_1): the loop stops there for most coins, and only those that go on pay
    for the longer block after it.
    """
    m = 1
    while (
        m < 5 and den ** (m + 1) * (math.factorial(first + m) // math.factorial(first - 1)) < _LIMIT
    ):
        m += 1
    last = math.factorial(first + m - 1)
    bound = den**m * (last // math.factorial(first - 1))
    steps = range(1, m + 1)
    return m, bound, tuple(den ** (m - i) * (last // math.factorial(first + i - 1)) for i in steps)


@lru_cache(maxsize=64)
def _table(den: int) -> tuple[int, int, npt.NDArray[np.uint8]] | None:
    """For a small `den`: Algorithm 1's first m steps for every num in [0, den], tabulated.

    Entry num * D + U (U uniform below D = den^m m!) is the coin the
    comparisons of `_block` would give: 1 if the loop stops at an odd step,
    0 at an even one, 2 if it goes past step m (undecided). A lookup replaces
    2m array passes; the table is the same integers compared, so it is exact.
    None when even two steps need more than `_TABLE` entries.
    """
    m = 1
    while m < 12 and (den + 1) * den ** (m + 1) * math.factorial(m + 1) <= _TABLE:
        m += 1
    size = den**m * math.factorial(m)
    if m < 2 or (den + 1) * size > _TABLE:
        return None
    u = np.arange(size, dtype=np.int64)
    rows = []
    for num in range(den + 1):
        reached = np.zeros(size, dtype=np.int64)
        for i in range(1, m + 1):
            reached += u < num**i * den ** (m - i) * (math.factorial(m) // math.factorial(i))
        rows.append(np.where(reached == m, 2, (reached + 1) % 2).astype(np.uint8))
    return m, size, np.concatenate(rows)


def _bernoulli_exp_fraction(
    rng: np.random.Generator, num: IntArray, den: int, first: int = 1
) -> BoolArray:
    """Algorithm 1 for gamma_i = num_i/den in [0, 1], its loop started at step `first`.

    The loop stops at the first K with A_K ~ Bernoulli(gamma/K) equal to 0 and
    the coin is 1 iff K is odd. Steps are decided a block at a time
    (`_block`), or by table lookup for the first steps when `den` is small
    (`_table`); coins a block leaves undecided go on to the next block.
    """
    n = len(num)
    if n == 0:
        return np.zeros(0, dtype=np.bool_)
    if first == 1 and (table := _table(den)) is not None:
        m, size, lut = table
        code = lut[num * size + _uniform_below(rng, size, n)]
        odd: BoolArray = code == 1
        going = np.flatnonzero(code == 2)
    elif den * first >= _LIMIT:
        # One step, Bernoulli(num/(den K)), as the AND of draws below den and below K.
        m = 1
        a = _uniform_below(rng, den, n) < num
        a &= _uniform_below(rng, first, n) == 0
        odd = ~a if first % 2 else np.zeros(n, dtype=np.bool_)
        going = np.flatnonzero(a)
    else:
        m, bound, thresholds = _block(den, first)
        u = _uniform_below(rng, bound, n)
        reached = (u < num * thresholds[0]).astype(np.int8)
        power = num
        for c in thresholds[1:]:
            power = power * num
            reached += u < power * c
        odd = (reached % 2) == (first + 1) % 2  # the loop stops at K = first + reached
        going = np.flatnonzero(reached == m)
    if going.size:
        odd[going] = _bernoulli_exp_fraction(rng, num[going], den, first + m)
    return odd


def _bernoulli_exp1(rng: np.random.Generator, n: int) -> BoolArray:
    """`n` Bernoulli(exp(-1)) coins (Algorithm 1 for gamma = 1)."""
    return _bernoulli_exp_fraction(rng, np.ones(n, dtype=np.int64), 1)


def _geometric_exp1(rng: np.random.Generator, n: int) -> IntArray:
    """V_i = number of Bernoulli(exp(-1)) successes before the first failure."""
    v = np.zeros(n, dtype=np.int64)
    pending = np.arange(n)
    while pending.size:
        a = _bernoulli_exp1(rng, pending.size)
        v[pending[a]] += 1
        pending = pending[a]
    return v


def check_laplace(scale: Fraction) -> None:
    """Raise `ValueError` unless `discrete_laplace` can sample at this scale exactly."""
    if scale <= 0:
        raise ValueError(f"the scale must be positive, not {scale}")
    if scale.numerator >= _LIMIT or scale.denominator >= _LIMIT:
        raise ValueError(f"scale {scale} has too large a numerator or denominator")


def check_gaussian(sigma2: Fraction) -> None:
    """Raise `ValueError` unless `discrete_gaussian` can sample this variance exactly."""
    if sigma2 <= 0:
        raise ValueError(f"the variance must be positive, not {sigma2}")
    p, q = sigma2.numerator, sigma2.denominator
    t = isqrt(p // q) + 1
    if 2 * p * q * t * t >= _LIMIT:
        raise ValueError(f"variance {sigma2} is too large for the exact sampler (limit about 4e9)")


def _rejection(propose: Callable[[int], tuple[IntArray, BoolArray]], n: int) -> IntArray:
    """`n` accepted values from rounds of independent proposals.

    Accepted proposals are independent draws of the target distribution, so
    keeping the first `n` of them in order is exact, however many are
    proposed per round. The first round proposes a third more than needed;
    later rounds size themselves by the acceptance rate seen so far (with a
    tenth to spare), so a sampler that accepts two proposals in three needs
    two rounds, not five ever smaller ones (each round costs a few dozen
    array passes whatever its size).
    """
    parts: list[IntArray] = []
    need = n
    proposed = accepted = 0
    while need > 0:
        if accepted:
            m = need * proposed * 11 // (accepted * 10) + 16
        else:
            m = need + need // 3 + 16 if not proposed else 2 * proposed
        values, ok = propose(m)
        kept = values[ok]
        proposed += m
        accepted += len(kept)
        got = kept[:need]
        parts.append(got)
        need -= len(got)
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def discrete_laplace(rng: np.random.Generator, scale: Fraction, n: int) -> IntArray:
    """Algorithm 2: `n` draws of Lap_Z(scale), P[x] ∝ exp(-|x| / scale); scale > 0."""
    check_laplace(scale)
    t, s = scale.numerator, scale.denominator

    def propose(m: int) -> tuple[IntArray, BoolArray]:
        u = _uniform_below(rng, t, m)
        d = bernoulli_exp(rng, u, t)
        v = np.zeros(m, dtype=np.int64)
        v[d] = _geometric_exp1(rng, int(d.sum()))
        y = (u + t * v) // s
        b = _uniform_below(rng, 2, m)
        return (1 - 2 * b) * y, d & ~((b == 1) & (y == 0))

    return _rejection(propose, n)


def discrete_gaussian(rng: np.random.Generator, sigma2: Fraction, n: int) -> IntArray:
    """Algorithm 3: `n` draws of N_Z(0, sigma2), P[x] ∝ exp(-x² / (2 sigma2)); sigma2 > 0.

    With sigma2 = p/q and t = floor(sigma) + 1, a proposal Y ~ Lap_Z(t) is kept
    with probability exp(-(|Y| - sigma2/t)² / (2 sigma2)), that is
    exp(-(q t |Y| - p)² / (2 p q t²)).
    """
    check_gaussian(sigma2)
    p, q = sigma2.numerator, sigma2.denominator
    t = isqrt(p // q) + 1
    den = 2 * p * q * t * t

    def propose(m: int) -> tuple[IntArray, BoolArray]:
        y = discrete_laplace(rng, Fraction(t), m)
        # (q t |y| - p)² can pass 2^63 in the far tails: square as Python
        # integers then. exp(-(w + f/den)) is the AND of independent coins
        # exp(-w) and exp(-f/den), which keeps every bound below `den`.
        wide = (q * t) * int(np.abs(y).max(initial=0)) + p >= 1 << 31
        diff = (q * t) * np.abs(y).astype(object if wide else np.int64) - p
        square = diff * diff
        whole, frac = square // den, square % den
        # A whole part past 2^60 is a probability below exp(-2^60); its loop
        # stops at the first failing coin either way.
        if int(whole.max(initial=0)) < _LIMIT // den:
            return y, bernoulli_exp(rng, (whole * den + frac).astype(np.int64), den)
        c = bernoulli_exp(rng, np.minimum(whole, _LIMIT // 4).astype(np.int64), 1)
        c &= bernoulli_exp(rng, frac.astype(np.int64), den)
        return y, c

    return _rejection(propose, n)


def discrete_laplace_pmf(scale: Fraction, x: int) -> float:
    """P[Lap_Z(scale) = x] = (e^{1/scale} - 1)/(e^{1/scale} + 1) · e^{-|x|/scale}, for tests."""
    a = float(1 / scale)
    return float(np.tanh(a / 2) * np.exp(-abs(x) * a))


def discrete_gaussian_pmf(sigma2: Fraction, x: int, *, tail: int = 60) -> float:
    """P[N_Z(0, sigma2) = x], the normaliser summed over ±tail·sigma, for tests."""
    s2 = float(sigma2)
    bound = int(tail * s2**0.5) + 10
    ks = np.arange(-bound, bound + 1, dtype=np.float64)
    return float(np.exp(-(x * x) / (2 * s2)) / np.exp(-(ks * ks) / (2 * s2)).sum())
