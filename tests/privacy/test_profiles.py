"""Profiles: parsing, validation with clear errors, canonical digest."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from sharechain.errors import SharechainError
from sharechain.privacy.profiles import (
    Drop,
    Generalise,
    Keep,
    Noise,
    ProfileError,
    Tokenize,
    load_profile,
    parse_profile,
    profile_digest,
    profile_form,
    profile_from_form,
)

FULL = """\
k: 5
l: 2
quasi_identifiers: [birth_date, postcode]
sensitive: [diagnosis]
columns:
  id: {rule: tokenize, algorithm: hmac-sha256}
  name: drop
  birth_date: {rule: generalise, date: year}
  age: {rule: generalise, width: 10}
  postcode: {rule: generalise, truncate: 3}
  city: {rule: generalise, hierarchy: {Leeds: North, Bath: South}, other: "*"}
  diagnosis: keep
  salary: {rule: noise, mechanism: laplace, epsilon: 0.1, sensitivity: 1000}
  visits: {rule: noise, mechanism: gaussian, epsilon: 1}
"""


def test_every_rule_parses() -> None:
    p = parse_profile(FULL)
    assert (p.k, p.l, p.suppress) == (5, 2, True)
    assert p.quasi_identifiers == ("birth_date", "postcode")
    assert p.rule("id") == Tokenize("hmac-sha256")
    assert p.rule("name") == Drop()
    assert p.rule("birth_date") == Generalise(date="year")
    assert p.rule("age") == Generalise(width=10)
    assert p.rule("postcode") == Generalise(truncate=3)
    assert p.rule("city") == Generalise(
        hierarchy=(("Bath", "South"), ("Leeds", "North")), other="*"
    )
    assert p.rule("diagnosis") == Keep()
    assert p.rule("salary") == Noise("laplace", Fraction(1, 10), 1000)
    assert p.rule("visits") == Noise("gaussian", Fraction(1), 1, Fraction(1, 10**6))
    assert p.rule("not named") == Drop()


def test_digest_ignores_spelling_and_follows_content() -> None:
    respelled = FULL.replace("epsilon: 0.1", "epsilon: 1/10").replace("k: 5", "k:    5 # target")
    assert profile_digest(parse_profile(FULL)) == profile_digest(parse_profile(respelled))
    assert profile_digest(parse_profile(FULL)) != profile_digest(
        parse_profile(FULL.replace("k: 5", "k: 6"))
    )
    assert len(profile_digest(parse_profile(FULL))) == 32


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("k: 5\ncolumns: {a: {rule: noise, epsilon: 0}}", "epsilon must be > 0", "a"),
        ("k: 5\ncolumns: {a: {rule: noise, epsilon: -1}}", "epsilon must be > 0", "a"),
        ("k: 5\ncolumns: {a: {rule: noise}}", "needs an epsilon", "a"),
        ("k: 5\ncolumns: {a: {rule: noise, epsilon: x}}", "must be a number", "a"),
        (
            "k: 5\ncolumns: {a: {rule: noise, epsilon: 1, delta: 2, mechanism: gaussian}}",
            "delta",
            "a",
        ),
        ("k: 5\ncolumns: {a: {rule: noise, epsilon: 1, delta: 0.1}}", "gaussian", "a"),
        ("k: 5\ncolumns: {a: {rule: noise, epsilon: 1, mechanism: uniform}}", "mechanism", "a"),
        ("k: 5\ncolumns: {a: shuffle}", "rule must be one of", "a"),
        ("k: 5\ncolumns: {a: {rule: keep, width: 3}}", "takes no options", "a"),
        ("k: 5\ncolumns: {a: {rule: generalise}}", "exactly one of", "a"),
        ("k: 5\ncolumns: {a: {rule: generalise, width: 2, truncate: 1}}", "exactly one", "a"),
        ("k: 5\ncolumns: {a: {rule: generalise, width: 0}}", "width must be", "a"),
        ("k: 5\ncolumns: {a: {rule: generalise, date: day}}", "month or year", "a"),
        ("k: 5\ncolumns: {a: {rule: generalise, hierarchy: []}}", "maps values", "a"),
        ("k: 5\ncolumns: {a: {rule: generalise, width: 2, other: x}}", "goes with", "a"),
        ("k: 5\ncolumns: {a: {rule: tokenize, algorithm: md5}}", "algorithm", "a"),
        ("k: 0\ncolumns: {a: keep}", "`k` must be", None),
        ("k: 5\nl: 0\ncolumns: {a: keep}", "`l` must be", None),
        ("k: 5\ncolumns: {}", "`columns` maps", None),
        ("- a list", "YAML mapping", None),
        ("k: [", "not valid YAML", None),
        ("k: 5\ncolumn: {a: keep}", "unknown profile keys", None),
        ("k: 5\nsuppress: maybe\ncolumns: {a: keep}", "true or false", None),
        ("k: 5\ndefault: tokenize\ncolumns: {a: keep}", "keep or drop", None),
        ("k: 5\nquasi_identifiers: [a, a]\ncolumns: {a: keep}", "twice", None),
        ("k: 5\nquasi_identifiers: a\ncolumns: {a: keep}", "list of column", None),
        ("k: 5\nl: 2\ncolumns: {a: keep}", "needs at least one", None),
        ("k: 5\nquasi_identifiers: [a]\nsensitive: [a]\ncolumns: {a: keep}", "both", "a"),
        ("k: 5\nquasi_identifiers: [a]\ncolumns: {a: drop}", "is dropped", "a"),
        ("k: 5\nsensitive: [a]\ncolumns: {b: keep}", "is dropped", "a"),
        ("k: 5\nquasi_identifiers: [a]\ncolumns: {a: {rule: noise, epsilon: 1}}", "noise", "a"),
    ],
)
def test_bad_profiles_are_refused_naming_the_column(
    text: str, message: str, column: str | None
) -> None:
    with pytest.raises(ProfileError, match=message) as caught:
        parse_profile(text)
    assert caught.value.column == column
    assert isinstance(caught.value, SharechainError)


def test_form_round_trips() -> None:
    p = parse_profile(FULL)
    assert profile_from_form(profile_form(p)) == p
    with pytest.raises(ProfileError, match="not a profile form"):
        profile_from_form({"k": 5})
    broken = {**profile_form(p), "k": 0}
    with pytest.raises(ProfileError, match="`k` must be"):
        profile_from_form(broken)


def test_load_profile_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(FULL)
    assert load_profile(path) == parse_profile(FULL)
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile(tmp_path / "missing.yaml")
