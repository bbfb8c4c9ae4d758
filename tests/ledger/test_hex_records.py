"""The JSON form shared by attestations and snapshot vouchers: round trip and refusals."""

from __future__ import annotations

from typing import Any

import pytest

from sharechain.errors import EncodingError
from sharechain.ledger.attestations import Attestation
from sharechain.storage.snapshot_evidence import Voucher


def test_attestations_and_vouchers_round_trip_with_hex_bytes() -> None:
    att = Attestation("bank-b", 7, b"\x01" * 32, b"\x02" * 32, b"\x03" * 64)
    assert att.to_json() == {
        "org": "bank-b",
        "height": 7,
        "block_hash": "01" * 32,
        "state_root": "02" * 32,
        "signature": "03" * 64,
    }
    assert Attestation.from_json(att.to_json()) == att
    voucher = Voucher("bank-b", 7, b"\x01" * 32, b"\x02" * 32, b"\x04" * 32, b"\x03" * 64)
    assert list(voucher.to_json()) == [
        "org",
        "height",
        "block_hash",
        "state_root",
        "content_hash",
        "signature",
    ]
    assert Voucher.from_json(voucher.to_json()) == voucher


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"height": -1}, "bad height or hash length"),
        ({"content_hash": "00"}, "bad height or hash length"),
        ({"signature": 5}, "fromhex"),
        ({"height": "seven"}, "invalid literal"),
    ],
)
def test_a_malformed_voucher_is_refused_naming_what_is_wrong(
    change: dict[str, Any], reason: str
) -> None:
    good = Voucher("a", 1, b"\x01" * 32, b"\x02" * 32, b"\x04" * 32, b"").to_json()
    with pytest.raises(EncodingError, match=f"malformed snapshot voucher: .*{reason}"):
        Voucher.from_json({**good, **change})
    with pytest.raises(EncodingError, match="malformed attestation: 'org'"):
        Attestation.from_json({})
