"""Column rules on pyarrow arrays: generalisation, noise streams, type checks."""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pytest

from sharechain.privacy.profiles import Drop, Generalise, Keep, Noise, ProfileError, Tokenize
from sharechain.privacy.rules import (
    NoiseStream,
    apply_rule,
    check_rule,
    gaussian_variance,
    generalise,
    laplace_scale,
    reads_as_text,
)


def test_numeric_ranges_floor_towards_minus_infinity() -> None:
    out = generalise("age", Generalise(width=10), pa.array([37, 40, -5, 0, None]))
    assert out.to_pylist() == ["30-39", "40-49", "-10--1", "0-9", None]
    floats = generalise("w", Generalise(width=5), pa.array([7.5, -0.1]))
    assert floats.to_pylist() == ["[5, 10)", "[-5, 0)"]


def test_dates_to_month_and_year() -> None:
    days = pa.array([dt.date(1984, 7, 21), dt.date(2001, 12, 1), None])
    assert generalise("d", Generalise(date="month"), days).to_pylist() == [
        "1984-07",
        "2001-12",
        None,
    ]
    assert generalise("d", Generalise(date="year"), days).to_pylist() == ["1984", "2001", None]
    stamps = pa.array([dt.datetime(1999, 3, 4, 5, 6)], pa.timestamp("s"))
    assert generalise("d", Generalise(date="month"), stamps).to_pylist() == ["1999-03"]


def test_truncate_and_hierarchy() -> None:
    assert generalise(
        "p", Generalise(truncate=3), pa.array(["LS2 7EE", "M1", None])
    ).to_pylist() == [
        "LS2",
        "M1",
        None,
    ]
    rule = Generalise(hierarchy=(("Leeds", "North"), ("Bath", "South")), other="*")
    cities = pa.array(["Leeds", "Bath", "Derby", None])
    assert generalise("c", rule, cities).to_pylist() == ["North", "South", "*", None]
    strict = Generalise(hierarchy=(("Leeds", "North"), ("Bath", "South")))
    with pytest.raises(ProfileError, match="'Derby' is not in the hierarchy") as caught:
        generalise("city", strict, cities)
    assert caught.value.column == "city"


def test_huge_integers_cannot_be_ranged() -> None:
    with pytest.raises(ProfileError, match="2\\^53"):
        generalise("n", Generalise(width=10), pa.array([1 << 60]))


@pytest.mark.parametrize(
    ("rule", "dtype", "need"),
    [
        (Noise("laplace", Fraction(1)), pa.string(), "integer"),
        (Noise("laplace", Fraction(1)), pa.float64(), "integer"),
        (Generalise(width=3), pa.string(), "numeric"),
        (Generalise(date="year"), pa.int64(), "date"),
        (Generalise(date="year"), pa.time32("s"), "date"),
        (Generalise(truncate=2), pa.int64(), "text"),
        (Tokenize(), pa.list_(pa.int64()), "single values"),
    ],
)
def test_rules_refuse_columns_of_the_wrong_type(
    rule: Noise | Generalise | Tokenize, dtype: pa.DataType, need: str
) -> None:
    with pytest.raises(ProfileError, match=need) as caught:
        check_rule("col", rule, dtype)
    assert caught.value.column == "col"


def test_rules_accept_columns_of_the_right_type() -> None:
    for rule, dtype in [
        (Noise("laplace", Fraction(1)), pa.int32()),
        (Generalise(width=3), pa.float32()),
        (Generalise(date="month"), pa.date32()),
        (Generalise(truncate=2), pa.string()),
        (Keep(), pa.list_(pa.int8())),
        (Drop(), pa.binary()),
    ]:
        check_rule("col", rule, dtype)
    assert reads_as_text(Tokenize()) and reads_as_text(Generalise(truncate=1))
    assert not reads_as_text(Generalise(width=1)) and not reads_as_text(Keep())


def test_noise_parameters() -> None:
    assert laplace_scale(Noise("laplace", Fraction(1, 2), 1000)) == 2000
    rule = Noise("gaussian", Fraction(1), 1, Fraction(1, 10**6))
    sigma2 = gaussian_variance(rule)
    # rho from the zCDP conversion; sigma² = 1/(2 rho), rounded up to a whole number.
    log_inv = math.log(10**6)
    rho = (math.sqrt(log_inv + 1) - math.sqrt(log_inv)) ** 2
    assert sigma2 == math.ceil(1 / (2 * rho))
    small = gaussian_variance(Noise("gaussian", Fraction(50), 1, Fraction(1, 2)))
    assert small.denominator == 1024 or small.denominator < 1024
    assert 0 < small < 1


def test_noise_stream_keeps_nulls_and_counts_draws() -> None:
    stream = NoiseStream("s", Noise("laplace", Fraction(1), 10), np.random.default_rng(3), chunk=7)
    values = pa.array([100, None, 300] * 10)
    noisy = stream.add_to(values)
    assert noisy.null_count == 10
    assert noisy.to_pylist() != values.to_pylist()
    # One draw per row, nulls included, in order: the same generator gives the same noise.
    same = NoiseStream("s", Noise("laplace", Fraction(1), 10), np.random.default_rng(3), chunk=7)
    draws = same.take(30).tolist()
    for i, (before, after) in enumerate(zip(values.to_pylist(), noisy.to_pylist(), strict=True)):
        if before is not None:
            assert after - before == draws[i]


def test_noise_stream_errors() -> None:
    with pytest.raises(ProfileError, match="too large") as caught:
        NoiseStream(
            "v",
            Noise("gaussian", Fraction(1, 10**6), 10**6, Fraction(1, 10**9)),
            np.random.default_rng(1),
        )
    assert caught.value.column == "v"
    stream = NoiseStream("v", Noise("laplace", Fraction(1), 1000), np.random.default_rng(1))
    with pytest.raises(ProfileError, match="overflows"):
        stream.add_to(pa.array([2**63 - 1] * 50))


def test_apply_rule_dispatch() -> None:
    values = pa.array(["a", "b"])
    assert apply_rule("c", Keep(), values, token_key=None) is values
    assert apply_rule("c", Tokenize(), values, token_key=bytes(32)).to_pylist()[0] != "a"
    with pytest.raises(ProfileError, match="give a tokenisation key"):
        apply_rule("c", Tokenize(), values, token_key=None)
    with pytest.raises(ValueError, match="NoiseStream"):
        apply_rule("c", Noise("laplace", Fraction(1)), pa.array([1]), token_key=None)
    with pytest.raises(ValueError, match="dropped"):
        apply_rule("c", Drop(), values, token_key=None)
