"""Salted per-field commitments: open chosen fields, prove them against the
fingerprint, learn nothing of the others; every tampering refused."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable

import pytest

from sharechain.codec import encode
from sharechain.crypto.disclosure import (
    DOMAIN,
    Disclosure,
    commit,
    disclose,
    fingerprint,
    verify_disclosure,
)
from sharechain.errors import IntegrityError

RECORD = {"name": "Ada Lovelace", "degree": "MSc Mathematics", "year": 1843, "grade": "A"}


def _rng() -> Callable[[int], bytes]:
    counter = itertools.count()
    return lambda n: next(counter).to_bytes(n, "big")


def test_commitment_is_salted_cbor_per_field() -> None:
    rec = commit(RECORD, rng=_rng())
    salts = [i.to_bytes(16, "big") for i in range(4)]
    want = {n: encode([s, n, v]) for s, (n, v) in zip(salts, RECORD.items(), strict=True)}
    assert rec.disclosures == want
    digests = sorted(hashlib.sha256(d).digest() for d in want.values())
    assert rec.fingerprint == hashlib.sha256(DOMAIN + b"".join(digests)).digest()
    assert fingerprint(reversed(digests)) == rec.fingerprint


def test_reveal_chosen_fields() -> None:
    rec = commit(RECORD)
    shown = disclose(rec, ["degree", "year"])
    assert verify_disclosure(shown, rec.fingerprint) == {"degree": "MSc Mathematics", "year": 1843}
    assert len(shown.hidden) == 2
    assert b"Ada" not in b"".join(shown.hidden)
    assert verify_disclosure(disclose(rec, []), rec.fingerprint) == {}
    assert verify_disclosure(disclose(rec, RECORD), rec.fingerprint) == RECORD


def test_fresh_salts_hide_equal_values() -> None:
    a, b = commit({"grade": "A"}), commit({"grade": "A"})
    assert a.fingerprint != b.fingerprint


def test_altered_value_is_refused() -> None:
    rec = commit(RECORD)
    shown = disclose(rec, ["grade"])
    salt = rec.disclosures["grade"][2:18]
    forged = Disclosure((encode([salt, "grade", "A+"]),), shown.hidden)
    with pytest.raises(IntegrityError, match="do not match"):
        verify_disclosure(forged, rec.fingerprint)


def test_dropped_or_added_field_is_refused() -> None:
    rec = commit(RECORD)
    shown = disclose(rec, ["grade"])
    with pytest.raises(IntegrityError, match="do not match"):
        verify_disclosure(Disclosure(shown.revealed, shown.hidden[1:]), rec.fingerprint)
    extra = Disclosure(shown.revealed, (*shown.hidden, bytes(32)))
    with pytest.raises(IntegrityError, match="do not match"):
        verify_disclosure(extra, rec.fingerprint)


def test_duplicates_are_refused() -> None:
    rec = commit(RECORD)
    shown = disclose(rec, ["grade"])
    twice = Disclosure(shown.revealed * 2, shown.hidden)
    with pytest.raises(IntegrityError, match="disclosed twice"):
        verify_disclosure(twice, rec.fingerprint)
    digest = hashlib.sha256(shown.revealed[0]).digest()
    again = Disclosure(shown.revealed, (*shown.hidden, digest))
    with pytest.raises(IntegrityError, match="appears twice"):
        verify_disclosure(again, rec.fingerprint)


@pytest.mark.parametrize(
    ("disclosure", "reason"),
    [
        (encode([bytes(15), "a", 1]), "salt"),
        (encode([bytes(16), "", 1]), "field name"),
        (encode([bytes(16), "a"]), r"\[salt, name, value\]"),
        (b"\x83\x50" + bytes(16) + b"\x61a\x18\x01", "canonical"),
    ],
)
def test_malformed_disclosures_are_refused(disclosure: bytes, reason: str) -> None:
    with pytest.raises(IntegrityError, match=reason):
        verify_disclosure(Disclosure((disclosure,), ()), bytes(32))


def test_bad_inputs() -> None:
    with pytest.raises(IntegrityError, match="32 bytes"):
        verify_disclosure(Disclosure((), (bytes(31),)), bytes(32))
    with pytest.raises(ValueError, match="no field"):
        disclose(commit(RECORD), ["age"])
    with pytest.raises(ValueError, match="1 to"):
        commit({})
