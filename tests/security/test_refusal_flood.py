"""A member's node floods its status with refusals of blocks (`ledger.refusals`).

Each refusal a node reads costs it a signature check, and each one kept costs
memory. A peer's status is read every poll, so a hostile peer could serve
thousands of fresh refusals each time. A node reads at most `KEEP` (16) of a
peer's refusals per poll, checks each new one once, and keeps at most `KEEP`
of each peer's: the latest heights.
"""

from __future__ import annotations

import hashlib

import pytest

from sharechain.crypto.signing import SigningKey
from sharechain.ledger import refusals
from sharechain.ledger.refusals import KEEP, RefusalBook, sign_refusal

HOSTILE = SigningKey.from_seed(b"h" * 32)
OWN = SigningKey.from_seed(b"o" * 32)


PER_POLL = 200
POLLS = 20


def _digest(h: int) -> bytes:
    return hashlib.sha256(h.to_bytes(8, "big")).digest()


def _flood(start: int) -> list[object]:
    """`PER_POLL` fresh refusals, each validly signed by the hostile member."""
    return [
        sign_refusal("bank-b", HOSTILE, h, _digest(h)).to_json()
        for h in range(start, start + PER_POLL)
    ]


def test_a_peer_s_refusals_are_read_checked_and_kept_within_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked: list[int] = []
    real = refusals.verify_refusal

    def counting(refusal: refusals.Refusal, key: bytes) -> None:
        checked.append(refusal.height)
        real(refusal, key)

    monkeypatch.setattr(refusals, "verify_refusal", counting)
    book = RefusalBook("hospital-a", lambda: OWN)
    for poll in range(POLLS):
        served = _flood(poll * PER_POLL)
        assert book.receive("bank-b", served, HOSTILE.public_key) == KEEP
        assert book.receive("bank-b", served, HOSTILE.public_key) == 0  # served again: no check
    assert len(checked) == POLLS * KEEP  # only the first KEEP of each poll were looked at
    kept = [h for h in range(POLLS * PER_POLL) if book.refusing(["bank-b"], h, _digest(h))]
    last = (POLLS - 1) * PER_POLL
    assert kept == list(range(last, last + KEEP))  # the latest heights only
