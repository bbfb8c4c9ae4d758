"""Column rules: what keep, drop, tokenize, generalise and noise do to a column.

Each rule works on a whole pyarrow array at once (a batch of a column), so a
million rows cost a few vectorised passes, not a million Python calls.

- `keep` releases the values; `drop` leaves the column out.
- `tokenize` replaces values by keyed pseudonyms (`privacy.tokens`).
- `generalise` coarsens: numbers to ranges of a width (`37` -> `30-39`), dates
  to a month or a year (`1984-07-21` -> `1984-07` or `1984`), strings to a
  prefix (`LS2 7EE` -> `LS2`), or values to parents named in the profile
  (`Leeds` -> `North`). Coarser values make more rows look alike, which is what
  k-anonymity counts.
- `noise` adds integer noise from the exact discrete Laplace (pure
  epsilon-DP, scale = sensitivity / epsilon) or discrete Gaussian sampler
  (`privacy.samplers`). The Gaussian's variance comes from (epsilon, delta)
  through zero-concentrated DP: the discrete Gaussian of variance sigma² is
  rho-zCDP with rho = sensitivity² / (2 sigma²) (Canonne, Kamath, Steinke 2020,
  Theorem 4), and rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP
  (Bun and Steinke 2016, Proposition 1.3); solving for rho gives
  sqrt(rho) = sqrt(ln(1/delta) + epsilon) - sqrt(ln(1/delta)). That solution
  uses floating point, so sigma² is then rounded *up* to a rational (a whole
  number above 1): more noise than needed, never less.

Row suppression below k is not a column rule: it needs the whole file and
lives in `privacy.anonymity`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from functools import partial

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sharechain.privacy.profiles import Drop, Generalise, Keep, Noise, ProfileError, Rule, Tokenize
from sharechain.privacy.samplers import (
    check_gaussian,
    check_laplace,
    discrete_gaussian,
    discrete_laplace,
)
from sharechain.privacy.tokens import tokenize_array

__all__ = [
    "NoiseStream",
    "apply_rule",
    "check_rule",
    "gaussian_variance",
    "generalise",
    "group_key",
    "laplace_scale",
    "reads_as_text",
]

_EXACT_FLOAT = 1 << 53
"""Integers up to this size survive the float division of `width` ranges exactly."""


def reads_as_text(rule: Rule) -> bool:
    """Whether a CSV column under `rule` is read as text rather than type-inferred.

    A postcode `01234` inferred as the integer 1234 would lose the digit that
    truncation keeps; tokens and hierarchies work on the text as written.
    """
    return isinstance(rule, Tokenize) or (
        isinstance(rule, Generalise) and (rule.truncate is not None or rule.hierarchy is not None)
    )


def check_rule(column: str, rule: Rule, dtype: pa.DataType) -> None:
    """Raise `ProfileError` if `rule` cannot apply to a column of type `dtype`."""
    need = None
    if isinstance(rule, Noise) and not pa.types.is_integer(dtype):
        need = "an integer column"
    elif isinstance(rule, Generalise):
        if rule.width is not None and not (
            pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
        ):
            need = "a numeric column"
        elif rule.date is not None and not (
            pa.types.is_temporal(dtype) and not pa.types.is_time(dtype)
        ):
            need = "a date column (YYYY-MM-DD)"
        elif rule.truncate is not None and not pa.types.is_string(dtype):
            need = "a text column"
    if isinstance(rule, Tokenize | Generalise) and pa.types.is_nested(dtype):
        need = "a column of single values"
    if need is not None:
        kind = type(rule).__name__.lower()
        raise ProfileError(
            f"column {column!r} holds {dtype}; rule {kind} needs {need}; "
            "change the rule or fix the column",
            column,
        )


def generalise(column: str, rule: Generalise, values: pa.Array) -> pa.Array:
    """The coarsened values; nulls stay null."""
    if rule.width is not None:
        return _ranges(column, values, rule.width)
    if rule.date is not None:
        # pc.strftime costs about a microsecond a value; the parts are 30x cheaper,
        # and formatting each distinct year or month once cheaper still.
        text = _month_text if rule.date == "month" else partial(pc.cast, target_type=pa.string())
        return _per_distinct(group_key(column, rule, values), text)
    if rule.truncate is not None:
        return pc.utf8_slice_codeunits(values, 0, rule.truncate)
    assert rule.hierarchy is not None
    return _parents(column, values, rule.hierarchy, rule.other)


def group_key(column: str, rule: Rule, values: pa.Array) -> pa.Array:
    """A cheaper stand-in for the released form of a grouped column: equal exactly when it is.

    Group counting and membership only compare values, so a year or a range
    compares as a number (the year, the range's lower end) instead of as the
    text the release shows; grouping numbers is several times cheaper.
    """
    if not isinstance(rule, Generalise):
        return values
    if rule.date is not None:
        year = pc.year(values)
        if rule.date == "year":
            return year
        return pc.add(pc.multiply(year, 100), pc.month(values))
    if rule.width is not None and pa.types.is_integer(values.type):
        return _lower_ends(column, values, rule.width)
    return generalise(column, rule, values)


def _lower_ends(column: str, values: pa.Array, width: int) -> pa.Array:
    """The lower end of each integer's range of `width`."""
    biggest = pc.max(pc.abs_checked(values)).as_py()
    if biggest is not None and biggest >= _EXACT_FLOAT:
        raise ProfileError(f"column {column!r}: values beyond 2^53 cannot be ranged", column)
    lower = pc.multiply(pc.floor(pc.divide(pc.cast(values, pa.float64()), width)), width)
    return pc.cast(lower, pa.int64())


def _per_distinct(keys: pa.Array, text: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """`text(keys)`, computed once per distinct key when keys repeat (years, ranges)."""
    distinct = pc.unique(keys)
    if 4 * len(distinct) > len(keys):
        return text(keys)
    return pc.take(text(distinct), pc.index_in(keys, value_set=distinct))


def _month_text(keys: pa.Array) -> pa.Array:
    """`1984-07` for the month key 198407 (`group_key`: year * 100 + month)."""
    year = pc.cast(
        pc.floor(pc.divide(pc.cast(pc.subtract(keys, 1), pa.float64()), 100)), pa.int64()
    )
    month = pc.subtract(keys, pc.multiply(year, 100))
    return pc.binary_join_element_wise(
        pc.cast(year, pa.string()), pc.utf8_lpad(pc.cast(month, pa.string()), 2, "0"), "-"
    )


def _range_text(width: int) -> Callable[[pa.Array], pa.Array]:
    def text(lower: pa.Array) -> pa.Array:
        upper = pc.add(lower, width - 1)
        return pc.binary_join_element_wise(
            pc.cast(lower, pa.string()), pc.cast(upper, pa.string()), "-"
        )

    return text


def _ranges(column: str, values: pa.Array, width: int) -> pa.Array:
    if pa.types.is_integer(values.type):
        return _per_distinct(_lower_ends(column, values, width), _range_text(width))
    lower = pc.multiply(pc.floor(pc.divide(pc.cast(values, pa.float64()), width)), width)
    upper = pc.add(lower, float(width))
    return pc.binary_join_element_wise(
        "[", pc.cast(lower, pa.string()), ", ", pc.cast(upper, pa.string()), ")", ""
    )


def _parents(
    column: str, values: pa.Array, pairs: tuple[tuple[str, str], ...], other: str | None
) -> pa.Array:
    text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
    children = pa.array([a for a, _ in pairs], pa.string())
    parents = pa.array([b for _, b in pairs], pa.string())
    found = pc.take(parents, pc.index_in(text, value_set=children))
    missing = pc.and_(pc.is_null(found), pc.is_valid(text))
    if pc.any(missing).as_py():
        if other is None:
            first = pc.filter(text, missing)[0].as_py()
            raise ProfileError(
                f"column {column!r}: value {first!r} is not in the hierarchy; "
                "add it, or give `other:` for unlisted values",
                column,
            )
        found = pc.if_else(missing, other, found)
    return found


def laplace_scale(rule: Noise) -> Fraction:
    """Scale b = sensitivity / epsilon of the discrete Laplace mechanism."""
    return Fraction(rule.sensitivity) / rule.epsilon


def gaussian_variance(rule: Noise) -> Fraction:
    """sigma² of the discrete Gaussian giving (epsilon, delta)-DP, rounded up (see module doc)."""
    assert rule.delta is not None
    log_inv_delta = math.log(1 / float(rule.delta))
    root_rho = math.sqrt(log_inv_delta + float(rule.epsilon)) - math.sqrt(log_inv_delta)
    # The margin covers the float rounding of log and sqrt above.
    sigma2 = rule.sensitivity**2 / (2 * root_rho * root_rho) * (1 + 1e-9)
    if sigma2 >= 1:
        return Fraction(math.ceil(sigma2))
    return Fraction(math.ceil(sigma2 * 1024), 1024)


class NoiseStream:
    """The noise of one column: exact draws of its mechanism, made many at a time.

    The samplers' cost is mostly per call (a few dozen numpy passes), not per
    draw, so drawing for many batches at once and handing them out in order is
    several times cheaper than drawing per batch; the draws are independent
    either way. Bad parameters fail on construction, before anything is written.
    """

    def __init__(self, column: str, rule: Noise, rng: np.random.Generator, chunk: int = 1 << 16):
        self._column = column
        self._chunk = chunk
        self._buffer = np.zeros(0, np.int64)
        try:
            if rule.mechanism == "laplace":
                scale = laplace_scale(rule)
                check_laplace(scale)
                self._draw: Callable[[int], npt.NDArray[np.int64]] = partial(
                    discrete_laplace, rng, scale
                )
            else:
                sigma2 = gaussian_variance(rule)
                check_gaussian(sigma2)
                self._draw = partial(discrete_gaussian, rng, sigma2)
        except ValueError as exc:
            raise ProfileError(
                f"column {column!r}: {exc}; lower the sensitivity or raise epsilon", column
            ) from None

    def take(self, n: int) -> npt.NDArray[np.int64]:
        """The next `n` draws."""
        if n > len(self._buffer):
            more = self._draw(max(n - len(self._buffer), self._chunk))
            self._buffer = np.concatenate([self._buffer, more])
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def add_to(self, values: pa.Array) -> pa.Array:
        """`values` plus the next draws; nulls stay null."""
        return add_noise(self._column, values, self.take(len(values)))


def add_noise(column: str, values: pa.Array, draws: npt.NDArray[np.int64]) -> pa.Array:
    """`values` plus `draws` (as many); nulls stay null."""
    try:
        return pc.add_checked(pc.cast(values, pa.int64()), pa.array(draws))
    except pa.ArrowInvalid:
        raise ProfileError(
            f"column {column!r}: a value plus noise overflows 64 bits", column
        ) from None


def apply_rule(
    column: str,
    rule: Rule,
    values: pa.Array,
    *,
    token_key: bytes | None,
    noise: NoiseStream | npt.NDArray[np.int64] | None = None,
) -> pa.Array:
    """The released form of `values` under `rule` (not for `drop`, which has none).

    A `noise` rule needs the column's `NoiseStream` (or its draws for these
    values, taken from the stream in order); `tokenize` needs the key.
    """
    if isinstance(rule, Keep):
        return values
    if isinstance(rule, Tokenize):
        if token_key is None:
            raise ProfileError(f"column {column!r} is tokenized: give a tokenisation key", column)
        return tokenize_array(token_key, values, rule.algorithm)
    if isinstance(rule, Generalise):
        return generalise(column, rule, values)
    if isinstance(rule, Noise):
        if noise is None:
            raise ValueError(f"column {column!r} is noised: give its NoiseStream")
        if isinstance(noise, NoiseStream):
            return noise.add_to(values)
        return add_noise(column, values, noise)
    assert isinstance(rule, Drop)
    raise ValueError(f"column {column!r} is dropped and has no released form")
