"""The public names of `sharechain.contracts`: what other layers may rely on."""

from __future__ import annotations

import sharechain.contracts as contracts
from sharechain.contracts import _fields, codes, ids


def test_every_transaction_type_is_a_named_constant_and_has_a_contract() -> None:
    assert set(contracts.TX_TYPES) == set(contracts.default_registry().handlers)
    assert len(set(contracts.TX_TYPES)) == len(contracts.TX_TYPES)
    for name in contracts.__all__:
        if name.isupper() and name not in ("TX_TYPES", "CODES"):
            value = getattr(contracts, name)
            assert value in contracts.TX_TYPES
            assert name.lower().replace("_", ".", 1).replace("_", "-") == value


def test_codes_are_exported_with_their_meaning() -> None:
    assert contracts.CODES is codes.CODES
    for name in codes.__all__:
        if name != "CODES":
            assert getattr(codes, name) in codes.CODES


def test_derive_id_has_a_public_home_and_the_old_import_still_works() -> None:
    assert contracts.derive_id is ids.derive_id is _fields.derive_id
    assert ids.derive_id("dataset", b"\0" * 32) != ids.derive_id("grant", b"\0" * 32)
    assert ids.derive_id("dataset", b"\0" * 32, 1) != ids.derive_id("dataset", b"\0" * 32)
