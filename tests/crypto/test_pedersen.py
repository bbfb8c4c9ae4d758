"""Tests of Pedersen commitments: the documented generator, opening, hiding, additivity."""

from __future__ import annotations

import pytest

from sharechain.crypto import pedersen
from sharechain.crypto import ristretto as r255
from sharechain.errors import ConfigError, IntegrityError


def test_second_generator_is_the_documented_hash_and_not_g() -> None:
    assert r255.hash_to_group(pedersen.H_MESSAGE, pedersen.H_DST) == pedersen.H
    assert pedersen.H not in (r255.GENERATOR, r255.IDENTITY)


def test_commitment_opens_and_refuses_other_openings() -> None:
    commitment, opening = pedersen.commit(42)
    pedersen.verify_opening(commitment, opening)
    for wrong in (
        pedersen.Opening(43, opening.blinding),
        pedersen.Opening(42, (opening.blinding + 1) % r255.ORDER),
    ):
        with pytest.raises(IntegrityError, match="does not match"):
            pedersen.verify_opening(commitment, wrong)
    assert "42" not in repr(opening)


def test_commitments_hide_equal_values_and_add_up() -> None:
    a, oa = pedersen.commit(5)
    b, ob = pedersen.commit(5)
    assert a != b
    total = pedersen.sum_commitments([a, b])
    assert total == pedersen.commit_with(10, (oa.blinding + ob.blinding) % r255.ORDER)


def test_bad_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="committed value"):
        pedersen.commit_with(-1, 1)
    with pytest.raises(ConfigError, match="blinding"):
        pedersen.commit_with(1, r255.ORDER)
    with pytest.raises(r255.InvalidPointError):
        pedersen.sum_commitments([r255.IDENTITY])
