"""Masking profiles: which rule desensitises each column of a table, and the targets.

A profile is a small YAML document an owner writes once per kind of release::

    k: 5                      # every quasi-identifier group keeps >= 5 rows
    l: 2                      # optional: >= 2 distinct sensitive values per group
    suppress: true            # remove rows of groups below k (or l); default true
    quasi_identifiers: [birth_date, sex, postcode]
    sensitive: [diagnosis]
    default: drop             # columns the profile does not name; default drop
    columns:
      patient_id: {rule: tokenize, algorithm: blake2b}
      name: drop
      birth_date: {rule: generalise, date: year}
      age: {rule: generalise, width: 10}
      postcode: {rule: generalise, truncate: 3}
      city: {rule: generalise, hierarchy: {Leeds: North, York: North}, other: "*"}
      salary: {rule: noise, mechanism: laplace, epsilon: 0.5, sensitivity: 1000}
      diagnosis: keep

Parsing checks everything that can be checked without the table (unknown
rules, epsilon <= 0, k < 1, a sensitive attribute that is also a
quasi-identifier, ...) and says which column is wrong. `profile_digest` is the
SHA-256 of the profile's canonical CBOR form, so two YAML spellings of the same
profile (comments, key order, `0.5` or `1/2`) have one digest, the one a chain
would record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import yaml

from sharechain import codec
from sharechain.errors import SharechainError

__all__ = [
    "DATE_LEVELS",
    "MECHANISMS",
    "TOKEN_ALGORITHMS",
    "Drop",
    "Generalise",
    "Keep",
    "Noise",
    "Profile",
    "ProfileError",
    "Rule",
    "Tokenize",
    "load_profile",
    "parse_profile",
    "profile_digest",
    "profile_form",
    "profile_from_form",
]

TOKEN_ALGORITHMS: Final = ("blake2b", "hmac-sha256")
DATE_LEVELS: Final = ("month", "year")
MECHANISMS: Final = ("laplace", "gaussian")


class ProfileError(SharechainError):
    """A masking profile is malformed, or does not fit the table it is applied to."""

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column
        """The column at fault, when there is one."""


@dataclass(frozen=True, slots=True)
class Keep:
    """Release the column as it is."""


@dataclass(frozen=True, slots=True)
class Drop:
    """Leave the column out of the release."""


@dataclass(frozen=True, slots=True)
class Tokenize:
    """Replace each value by a keyed pseudonym (see `privacy.tokens`)."""

    algorithm: str = "blake2b"
    """`blake2b` (keyed BLAKE2b) or `hmac-sha256`."""


@dataclass(frozen=True, slots=True)
class Generalise:
    """Coarsen values; exactly one of the four ways is set."""

    width: int | None = None
    """Numbers to ranges of this width (`37` -> `30-39` for width 10)."""
    date: str | None = None
    """Dates to `month` (`1984-07`) or `year` (`1984`)."""
    truncate: int | None = None
    """Strings to their first this-many characters (`LS2 7EE` -> `LS2`)."""
    hierarchy: tuple[tuple[str, str], ...] | None = None
    """Value -> parent pairs (`Leeds` -> `North`)."""
    other: str | None = None
    """With `hierarchy`: the parent of values it does not list (else they are an error)."""


@dataclass(frozen=True, slots=True)
class Noise:
    """Add exact discrete differential-privacy noise to an integer column."""

    mechanism: str
    """`laplace` (pure epsilon-DP) or `gaussian` ((epsilon, delta)-DP via zCDP)."""
    epsilon: Fraction
    """The privacy loss this column costs; > 0."""
    sensitivity: int = 1
    """How much one person may change a value and stay hidden (the noise scales with it)."""
    delta: Fraction | None = None
    """For `gaussian`: the probability the epsilon bound may fail (default 10^-6)."""


Rule = Keep | Drop | Tokenize | Generalise | Noise
"""What happens to one column."""


@dataclass(frozen=True, slots=True)
class Profile:
    """A parsed, validated masking profile."""

    k: int
    """Target k-anonymity: the least number of rows sharing quasi-identifier values."""
    l: int | None  # noqa: E741 - the letter is the standard name of distinct l-diversity
    """Target distinct l-diversity of each sensitive attribute, if any."""
    suppress: bool
    """Remove rows whose group misses k (or l) instead of failing."""
    quasi_identifiers: tuple[str, ...]
    """Columns an attacker may know from elsewhere (and so link on)."""
    sensitive: tuple[str, ...]
    """Columns whose values must not be inferable for a group."""
    columns: tuple[tuple[str, Rule], ...]
    """The rule of each named column, in profile order."""
    default: Keep | Drop
    """The rule of columns the profile does not name."""

    def rule(self, column: str) -> Rule:
        """The rule that applies to `column`."""
        return dict(self.columns).get(column, self.default)


_RULES: Final = ("keep", "drop", "tokenize", "generalise", "noise")
_TOP_KEYS: Final = {"k", "l", "suppress", "quasi_identifiers", "sensitive", "default", "columns"}


def load_profile(path: Path) -> Profile:
    """Read and parse a YAML profile file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror or exc}") from None
    return parse_profile(text)


def parse_profile(text: str) -> Profile:
    """Parse YAML text into a `Profile`; `ProfileError` names what is wrong."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"the profile is not valid YAML: {exc}") from None
    return _parse_document(doc)


def profile_from_form(form: Mapping[str, Any]) -> Profile:
    """The profile a chain recorded (`profile_form`), parsed and checked like YAML."""
    try:
        columns = {
            name: {key: dict(value) if key == "hierarchy" else value for key, value in rule.items()}
            for name, rule in form["columns"]
        }
        doc = {**form, "columns": columns, "default": form["default"]["rule"]}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ProfileError("not a profile form (see privacy.profiles.profile_form)") from None
    return _parse_document({k: v for k, v in doc.items() if v is not None})


def _parse_document(doc: Any) -> Profile:
    if not isinstance(doc, Mapping):
        raise ProfileError("a profile is a YAML mapping with at least `k` and `columns`")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise ProfileError(
            f"unknown profile keys {sorted(map(str, unknown))}; known: {sorted(_TOP_KEYS)}"
        )
    k = _count(doc.get("k"), "k")
    l_target = None if doc.get("l") is None else _count(doc["l"], "l")
    suppress = doc.get("suppress", True)
    if not isinstance(suppress, bool):
        raise ProfileError("`suppress` is true or false")
    qis = _names(doc.get("quasi_identifiers", []), "quasi_identifiers")
    sensitive = _names(doc.get("sensitive", []), "sensitive")
    default = _rule("(default)", doc.get("default", "drop"))
    if not isinstance(default, Keep | Drop):
        raise ProfileError("`default` is keep or drop")
    raw_columns = doc.get("columns")
    if not isinstance(raw_columns, Mapping) or not raw_columns:
        raise ProfileError("`columns` maps each column name to its rule")
    columns = tuple((str(name), _rule(str(name), spec)) for name, spec in raw_columns.items())
    profile = Profile(k, l_target, suppress, qis, sensitive, columns, default)
    _check_roles(profile)
    return profile


def _check_roles(p: Profile) -> None:
    for col in set(p.quasi_identifiers) & set(p.sensitive):
        raise ProfileError(f"column {col!r} is both a quasi-identifier and sensitive", col)
    for col in p.quasi_identifiers + p.sensitive:
        rule = p.rule(col)
        role = "quasi-identifier" if col in p.quasi_identifiers else "sensitive attribute"
        if isinstance(rule, Drop):
            raise ProfileError(
                f"{role} {col!r} is dropped; remove it from the profile's list or keep it", col
            )
        if isinstance(rule, Noise):
            raise ProfileError(
                f"{role} {col!r} has rule noise: groups over random values are not reproducible; "
                "generalise it instead",
                col,
            )
    if p.l is not None and not p.sensitive:
        raise ProfileError("`l` needs at least one column under `sensitive`")


def _count(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProfileError(f"`{key}` must be a whole number >= 1, not {value!r}")
    return value


def _names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProfileError(f"`{key}` is a list of column names")
    if len(set(value)) != len(value):
        raise ProfileError(f"`{key}` names a column twice")
    return tuple(value)


def _rule(column: str, spec: Any) -> Rule:
    if isinstance(spec, str):
        spec = {"rule": spec}
    if not isinstance(spec, Mapping) or spec.get("rule") not in _RULES:
        raise ProfileError(
            f"column {column!r}: rule must be one of {', '.join(_RULES)} (got {spec!r})", column
        )
    params = {str(key): v for key, v in spec.items() if key != "rule"}
    kind = spec["rule"]
    allowed = {
        "keep": set(),
        "drop": set(),
        "tokenize": {"algorithm"},
        "generalise": {"width", "date", "truncate", "hierarchy", "other"},
        "noise": {"mechanism", "epsilon", "sensitivity", "delta"},
    }[kind]
    if params.keys() - allowed:
        raise ProfileError(
            f"column {column!r}: rule {kind} takes {sorted(allowed) or 'no options'}, "
            f"not {sorted(params.keys() - allowed)}",
            column,
        )
    if kind == "keep":
        return Keep()
    if kind == "drop":
        return Drop()
    if kind == "tokenize":
        algorithm = params.get("algorithm", "blake2b")
        if algorithm not in TOKEN_ALGORITHMS:
            raise ProfileError(f"column {column!r}: algorithm is one of {TOKEN_ALGORITHMS}", column)
        return Tokenize(algorithm)
    if kind == "generalise":
        return _generalise(column, params)
    return _noise(column, params)


def _generalise(column: str, params: dict[str, Any]) -> Generalise:
    ways = [w for w in ("width", "date", "truncate", "hierarchy") if w in params]
    if len(ways) != 1:
        raise ProfileError(
            f"column {column!r}: generalise takes exactly one of width, date, truncate, hierarchy",
            column,
        )
    if "other" in params and ways != ["hierarchy"]:
        raise ProfileError(f"column {column!r}: `other` goes with `hierarchy`", column)
    way = ways[0]
    value = params[way]
    if way == "width":
        return Generalise(width=_positive(column, way, value))
    if way == "truncate":
        return Generalise(truncate=_positive(column, way, value))
    if way == "date":
        if value not in DATE_LEVELS:
            raise ProfileError(f"column {column!r}: date is month or year, not {value!r}", column)
        return Generalise(date=value)
    if not isinstance(value, Mapping) or not value:
        raise ProfileError(f"column {column!r}: hierarchy maps values to parents", column)
    pairs = tuple(sorted((str(a), str(b)) for a, b in value.items()))
    other = params.get("other")
    return Generalise(hierarchy=pairs, other=None if other is None else str(other))


def _positive(column: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProfileError(f"column {column!r}: {key} must be a whole number >= 1", column)
    return value


def _fraction(column: str, key: str, value: Any) -> Fraction:
    # repr of a YAML float is the shortest decimal that reads back to it, so
    # `0.1` becomes exactly 1/10 rather than the binary double nearest to it.
    try:
        if isinstance(value, bool):
            raise ValueError
        return Fraction(repr(value) if isinstance(value, float) else str(value))
    except (ValueError, ZeroDivisionError):
        raise ProfileError(
            f"column {column!r}: {key} must be a number, not {value!r}", column
        ) from None


def _noise(column: str, params: dict[str, Any]) -> Noise:
    mechanism = params.get("mechanism", "laplace")
    if mechanism not in MECHANISMS:
        raise ProfileError(f"column {column!r}: mechanism is one of {MECHANISMS}", column)
    if "epsilon" not in params:
        raise ProfileError(f"column {column!r}: noise needs an epsilon > 0", column)
    epsilon = _fraction(column, "epsilon", params["epsilon"])
    if epsilon <= 0:
        raise ProfileError(
            f"column {column!r}: epsilon must be > 0 (got {params['epsilon']!r}); "
            "smaller means more noise and more privacy",
            column,
        )
    sensitivity = _positive(column, "sensitivity", params.get("sensitivity", 1))
    delta = None
    if mechanism == "gaussian":
        delta = _fraction(column, "delta", params.get("delta", "1/1000000"))
        if not 0 < delta < 1:
            raise ProfileError(f"column {column!r}: delta must be between 0 and 1", column)
    elif "delta" in params:
        raise ProfileError(f"column {column!r}: delta goes with the gaussian mechanism", column)
    return Noise(mechanism, epsilon, sensitivity, delta)


def _rule_form(rule: Rule) -> dict[str, Any]:
    form: dict[str, Any] = {"rule": type(rule).__name__.lower()}
    for name in getattr(rule, "__slots__", ()):
        value = getattr(rule, name)
        if value is None:
            continue
        if isinstance(value, Fraction):
            value = str(value)
        elif isinstance(value, tuple):
            value = [list(pair) for pair in value]
        form[name] = value
    return form


def profile_form(profile: Profile) -> dict[str, Any]:
    """The profile as plain values (epsilons as fraction text): what a chain records."""
    return {
        "k": profile.k,
        "l": profile.l,
        "suppress": profile.suppress,
        "quasi_identifiers": list(profile.quasi_identifiers),
        "sensitive": list(profile.sensitive),
        "default": _rule_form(profile.default),
        "columns": [[name, _rule_form(rule)] for name, rule in profile.columns],
    }


def profile_digest(profile: Profile) -> bytes:
    """SHA-256 of the canonical CBOR of `profile_form`: the profile's identity on a chain."""
    return hashlib.sha256(codec.encode(profile_form(profile))).digest()
