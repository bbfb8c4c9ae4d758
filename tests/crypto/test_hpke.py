"""Tests of data-key wrapping: RFC 9180 vectors, interoperability, the hybrid KEM, negatives."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from sharechain.crypto import hpke
from sharechain.crypto.hpke import (
    HYBRID_PUBLIC_KEY_SIZE,
    VERSION_HYBRID,
    VERSION_X25519,
    generate_hybrid_key,
    hybrid_available,
    hybrid_public_key,
    key_id,
    recipient_key_id,
    unwrap_key,
    wrap_key,
)
from sharechain.errors import ConfigError, DecryptionError

VECTORS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "rfc9180_x25519.json").read_text()
)["vectors"]
DATA_KEY = bytes(range(32))
CONTEXT = b"dataset:ds-42|epoch:3"


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def x25519_pair() -> tuple[bytes, bytes]:
    private = x25519.X25519PrivateKey.generate()
    return private.private_bytes_raw(), private.public_key().public_bytes_raw()


# --- RFC 9180 appendix A, through the written-out base mode -------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["section"])
def test_rfc9180_vector_setup(vector: dict[str, Any]) -> None:
    sk_e, pk_e = hpke._derive_key_pair(h(vector["ikmE"]))
    sk_r, pk_r = hpke._derive_key_pair(h(vector["ikmR"]))
    assert (sk_e.hex(), pk_e.hex()) == (vector["skEm"], vector["pkEm"])
    assert (sk_r.hex(), pk_r.hex()) == (vector["skRm"], vector["pkRm"])

    enc, sender = hpke._setup_base_s(pk_r, h(vector["info"]), sk_e, vector["aead_id"])
    receiver = hpke._setup_base_r(enc, sk_r, h(vector["info"]), vector["aead_id"])
    assert enc.hex() == vector["enc"]
    for ctx in (sender, receiver):
        assert ctx.shared_secret.hex() == vector["shared_secret"]
        assert ctx.key.hex() == vector["key"]
        assert ctx.base_nonce.hex() == vector["base_nonce"]
        assert ctx.exporter_secret.hex() == vector["exporter_secret"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["section"])
def test_rfc9180_vector_encryptions_and_exports(vector: dict[str, Any]) -> None:
    sk_e = h(vector["skEm"])
    enc, sender = hpke._setup_base_s(h(vector["pkRm"]), h(vector["info"]), sk_e, vector["aead_id"])
    receiver = hpke._setup_base_r(enc, h(vector["skRm"]), h(vector["info"]), vector["aead_id"])
    assert vector["encryptions"]
    for case in vector["encryptions"]:
        assert sender._nonce(case["seq"]).hex() == case["nonce"]
        sealed = sender.seal(case["seq"], h(case["aad"]), h(case["pt"]))
        assert sealed.hex() == case["ct"]
        assert receiver.open(case["seq"], h(case["aad"]), h(case["ct"])).hex() == case["pt"]
    for case in vector["exports"]:
        exported = receiver.export(h(case["exporter_context"]), case["L"])
        assert exported.hex() == case["exported_value"]


def test_rfc9180_a21_vector_opens_with_cryptography_hpke() -> None:
    # The suite wrap_key uses is A.2's. cryptography's single-shot HPKE seals at sequence 0
    # with empty aad (A.2's first encryption has aad "Count-0"), so seal the RFC plaintext
    # with the vector's context and empty aad, and let cryptography open it.
    vector = next(v for v in VECTORS if v["section"] == "A.2.1")
    enc, sender = hpke._setup_base_s(
        h(vector["pkRm"]), h(vector["info"]), h(vector["skEm"]), vector["aead_id"]
    )
    sealed = enc + sender.seal(0, b"", h(vector["encryptions"][0]["pt"]))
    recipient = x25519.X25519PrivateKey.from_private_bytes(h(vector["skRm"]))
    opened = hpke._SUITES[VERSION_X25519].decrypt(sealed, recipient, info=h(vector["info"]))
    assert opened.hex() == vector["encryptions"][0]["pt"]


# --- wrapping: round trips and interoperability ------------------------------------------------


def test_wrap_round_trip_and_layout() -> None:
    private, public = x25519_pair()
    wrapped = wrap_key(DATA_KEY, public, context=CONTEXT)
    assert wrapped[0] == VERSION_X25519
    assert wrapped[1:33] == hashlib.sha256(public).digest() == key_id(public)
    assert recipient_key_id(wrapped) == key_id(public)
    assert len(wrapped) == 1 + 32 + 32 + len(DATA_KEY) + 16
    assert unwrap_key(wrapped, private, context=CONTEXT) == DATA_KEY


def test_wraps_are_randomised() -> None:
    _, public = x25519_pair()
    assert wrap_key(DATA_KEY, public, context=CONTEXT) != wrap_key(
        DATA_KEY, public, context=CONTEXT
    )


def test_deterministic_wrap_interoperates_with_unwrap() -> None:
    private, public = x25519_pair()
    ephemeral = bytes(range(100, 132))
    wrapped = hpke._wrap_with_ephemeral(DATA_KEY, public, CONTEXT, ephemeral)
    assert unwrap_key(wrapped, private, context=CONTEXT) == DATA_KEY
    # And the other way: what wrap_key made opens with the written-out RFC 9180 code.
    made = wrap_key(DATA_KEY, public, context=CONTEXT)
    info = b"sharechain/wrap/v1" + bytes([VERSION_X25519]) + key_id(public) + CONTEXT
    ctx = hpke._setup_base_r(made[33:65], private, info, hpke.AEAD_CHACHA20_POLY1305)
    assert ctx.open(0, b"", made[65:]) == DATA_KEY


@pytest.mark.parametrize("size", [1, 16, 32, 64, 700, hpke.MAX_SECRET_SIZE])
def test_wrap_any_secret_size(size: int) -> None:
    private, public = x25519_pair()
    secret = os.urandom(size)
    assert unwrap_key(wrap_key(secret, public, context=b""), private, context=b"") == secret


# --- negatives ---------------------------------------------------------------------------------


def test_wrong_recipient_key_is_rejected() -> None:
    _, public = x25519_pair()
    other_private, _ = x25519_pair()
    wrapped = wrap_key(DATA_KEY, public, context=CONTEXT)
    with pytest.raises(DecryptionError):
        unwrap_key(wrapped, other_private, context=CONTEXT)


def test_wrong_recipient_even_with_forged_key_id_is_rejected() -> None:
    _, public = x25519_pair()
    other_private, other_public = x25519_pair()
    wrapped = wrap_key(DATA_KEY, public, context=CONTEXT)
    forged = wrapped[:1] + key_id(other_public) + wrapped[33:]
    with pytest.raises(DecryptionError):
        unwrap_key(forged, other_private, context=CONTEXT)


def test_other_context_is_rejected() -> None:
    private, public = x25519_pair()
    wrapped = wrap_key(DATA_KEY, public, context=b"dataset:ds-42|epoch:3")
    with pytest.raises(DecryptionError):
        unwrap_key(wrapped, private, context=b"dataset:ds-42|epoch:4")


def test_every_tampered_byte_is_rejected() -> None:
    private, public = x25519_pair()
    wrapped = wrap_key(DATA_KEY, public, context=CONTEXT)
    for offset in range(len(wrapped)):
        tampered = bytearray(wrapped)
        tampered[offset] ^= 0x04
        with pytest.raises(DecryptionError) as caught:
            unwrap_key(bytes(tampered), private, context=CONTEXT)
        assert str(caught.value) == str(DecryptionError())


@pytest.mark.parametrize("cut", [1, 16, 40, 80])
def test_truncated_or_extended_wrap_is_rejected(cut: int) -> None:
    private, public = x25519_pair()
    wrapped = wrap_key(DATA_KEY, public, context=CONTEXT)
    with pytest.raises(DecryptionError):
        unwrap_key(wrapped[:-cut], private, context=CONTEXT)
    with pytest.raises(DecryptionError):
        unwrap_key(wrapped + bytes(cut), private, context=CONTEXT)


def test_unknown_version_is_rejected() -> None:
    private, public = x25519_pair()
    wrapped = bytearray(wrap_key(DATA_KEY, public, context=CONTEXT))
    wrapped[0] = 0x7F
    with pytest.raises(DecryptionError):
        unwrap_key(bytes(wrapped), private, context=CONTEXT)
    with pytest.raises(DecryptionError):
        recipient_key_id(bytes(wrapped))


def test_malformed_private_key_is_rejected_opaquely() -> None:
    _, public = x25519_pair()
    wrapped = wrap_key(DATA_KEY, public, context=CONTEXT)
    with pytest.raises(DecryptionError):
        unwrap_key(wrapped, b"\x01" * 31, context=CONTEXT)


@pytest.mark.parametrize(
    ("secret", "public", "context", "hybrid"),
    [
        (b"", bytes(32), b"", False),
        (bytes(hpke.MAX_SECRET_SIZE + 1), bytes(32), b"", False),
        (DATA_KEY, bytes(31), b"", False),
        (DATA_KEY, bytes(32), bytes(hpke.MAX_CONTEXT_SIZE + 1), False),
        (DATA_KEY, bytes(32), b"", True),
    ],
)
def test_bad_wrap_arguments_are_config_errors(
    secret: bytes, public: bytes, context: bytes, hybrid: bool
) -> None:
    with pytest.raises(ConfigError):
        wrap_key(secret, public, context=context, hybrid=hybrid)


# --- post-quantum hybrid ---------------------------------------------------------------------


def test_hybrid_is_available_here() -> None:
    # cryptography >= 47 wheels ship OpenSSL with ML-KEM; the project pins a build that has it.
    assert hybrid_available() is True


def test_hybrid_round_trip_and_layout() -> None:
    private = generate_hybrid_key()
    public = hybrid_public_key(private)
    assert len(public) == HYBRID_PUBLIC_KEY_SIZE
    wrapped = wrap_key(DATA_KEY, public, context=CONTEXT, hybrid=True)
    assert wrapped[0] == VERSION_HYBRID
    assert recipient_key_id(wrapped) == key_id(public)
    assert len(wrapped) == 1 + 32 + 1120 + len(DATA_KEY) + 16
    assert unwrap_key(wrapped, private, context=CONTEXT) == DATA_KEY


def test_hybrid_key_generation_uses_injected_rng() -> None:
    seed = bytes(range(96))
    assert generate_hybrid_key(lambda n: seed[:n]) == seed
    assert hybrid_public_key(seed) == hybrid_public_key(bytes(seed))


def test_hybrid_is_xwing() -> None:
    # Recompute the shared secret by hand from the two KEMs and the X-Wing combiner,
    # run the RFC 9180 key schedule with KEM id 0x647a, and open the wrap with it.
    private = generate_hybrid_key()
    public = hybrid_public_key(private)
    wrapped = wrap_key(DATA_KEY, public, context=CONTEXT, hybrid=True)
    enc, ct = wrapped[33 : 33 + 1120], wrapped[33 + 1120 :]
    ct_m, ct_x = enc[:1088], enc[1088:]
    ss_m = mlkem.MLKEM768PrivateKey.from_seed_bytes(private[:64]).decapsulate(ct_m)
    x = x25519.X25519PrivateKey.from_private_bytes(private[64:])
    ss_x = x.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
    pk_x = x.public_key().public_bytes_raw()
    assert public[1184:] == pk_x
    shared = hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + b"\\.//^\\").digest()
    info = b"sharechain/wrap/v1" + bytes([VERSION_HYBRID]) + key_id(public) + CONTEXT
    ctx = hpke._key_schedule(shared, info, 0x647A, hpke.AEAD_CHACHA20_POLY1305)
    assert ChaCha20Poly1305(ctx.key).decrypt(ctx.base_nonce, ct, b"") == DATA_KEY


def test_hybrid_negatives() -> None:
    private = generate_hybrid_key()
    public = hybrid_public_key(private)
    other = generate_hybrid_key()
    wrapped = wrap_key(DATA_KEY, public, context=CONTEXT, hybrid=True)
    with pytest.raises(DecryptionError):
        unwrap_key(wrapped, other, context=CONTEXT)
    with pytest.raises(DecryptionError):
        unwrap_key(wrapped, private, context=CONTEXT + b"!")
    with pytest.raises(DecryptionError):
        unwrap_key(wrapped, private[64:], context=CONTEXT)  # a classic key for a hybrid wrap
    for offset in (0, 5, 40, 600, 33 + 1100, len(wrapped) - 1):
        tampered = bytearray(wrapped)
        tampered[offset] ^= 0x10
        with pytest.raises(DecryptionError):
            unwrap_key(bytes(tampered), private, context=CONTEXT)
    # A classic wrap does not open with a hybrid key either.
    classic_private, classic_public = x25519_pair()
    classic = wrap_key(DATA_KEY, classic_public, context=CONTEXT)
    with pytest.raises(DecryptionError):
        unwrap_key(classic, private, context=CONTEXT)
    assert unwrap_key(classic, classic_private, context=CONTEXT) == DATA_KEY


def test_hybrid_bad_keys_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        hybrid_public_key(bytes(95))
    with pytest.raises(ConfigError):
        wrap_key(DATA_KEY, bytes(HYBRID_PUBLIC_KEY_SIZE - 1), context=b"", hybrid=True)
