"""Ed25519 through libsodium: RFC 8032 vectors, domain separation, every way to fail."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sharechain.crypto.signing import SigningKey, key_id, verify, verify_many
from sharechain.errors import InvalidSignatureError

VECTORS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "rfc8032_ed25519.json").read_text()
)["vectors"]


@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_rfc8032_vector(vec: dict[str, str]) -> None:
    key = SigningKey.from_seed(bytes.fromhex(vec["secret_key"]))
    message = bytes.fromhex(vec["message"])
    assert key.public_key.hex() == vec["public_key"]
    # With an empty domain the signature is plain Ed25519 over the message.
    signature = key.sign(b"", message)
    assert signature.hex() == vec["signature"]
    verify(key.public_key, signature, b"", message)
    # An independent implementation agrees.
    Ed25519PublicKey.from_public_bytes(key.public_key).verify(signature, message)


@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_rfc8032_vector_tampered(vec: dict[str, str]) -> None:
    public = bytes.fromhex(vec["public_key"])
    signature = bytearray(bytes.fromhex(vec["signature"]))
    message = bytes.fromhex(vec["message"])
    signature[7] ^= 0x01
    with pytest.raises(InvalidSignatureError):
        verify(public, bytes(signature), b"", message)
    with pytest.raises(InvalidSignatureError):
        verify(public, bytes.fromhex(vec["signature"]), b"", message + b"\x00")


def test_key_id_is_sha256_of_public_key() -> None:
    key = SigningKey.from_seed(bytes(32))
    assert key.key_id == hashlib.sha256(key.public_key).digest() == key_id(key.public_key)
    assert len(key.key_id) == 32


def test_domain_separation() -> None:
    key = SigningKey.from_seed(bytes(range(32)))
    sig = key.sign(b"sharechain/tx/v1\x00", b"body")
    verify(key.public_key, sig, b"sharechain/tx/v1\x00", b"body")
    with pytest.raises(InvalidSignatureError):
        verify(key.public_key, sig, b"sharechain/block/v1\x00", b"body")
    # The domain is a plain prefix: the same bytes split differently are the same message.
    verify(key.public_key, sig, b"", b"sharechain/tx/v1\x00body")


def test_wrong_key_is_rejected() -> None:
    a, b = SigningKey.from_seed(bytes(32)), SigningKey.from_seed(bytes([1]) * 32)
    sig = a.sign(b"d", b"m")
    with pytest.raises(InvalidSignatureError):
        verify(b.public_key, sig, b"d", b"m")


@pytest.mark.parametrize(
    ("public_len", "sig_len"), [(31, 64), (33, 64), (32, 63), (32, 65), (0, 0)]
)
def test_wrong_lengths_are_rejected(public_len: int, sig_len: int) -> None:
    key = SigningKey.from_seed(bytes(32))
    sig = key.sign(b"", b"m")
    public = (key.public_key + b"\x00")[:public_len]
    signature = (sig + b"\x00")[:sig_len]
    with pytest.raises(InvalidSignatureError, match="wrong length"):
        verify(public, signature, b"", b"m")


def test_seed_length_is_checked() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SigningKey.from_seed(bytes(31))


def test_generate_uses_injected_rng_and_repr_hides_seed() -> None:
    key = SigningKey.generate(rng=lambda n: b"\x07" * n)
    assert key == SigningKey.from_seed(b"\x07" * 32)
    assert "0707" not in repr(key) and key.key_id.hex()[:16] in repr(key)


@pytest.mark.parametrize("count", [5, 200])
def test_verify_many_flags_exactly_the_bad_ones(count: int) -> None:
    # 200 is above the parallel threshold, so the thread pool path runs too.
    keys = [SigningKey.from_seed(i.to_bytes(32, "big")) for i in range(4)]
    checks = []
    bad = set()
    for i in range(count):
        k = keys[i % 4]
        msg = b"msg" + i.to_bytes(4, "big")
        sig = k.sign(b"", msg)
        if i % 7 == 3:
            sig = bytes([sig[0] ^ 1]) + sig[1:]
            bad.add(i)
        elif i % 11 == 5:
            k = keys[(i + 1) % 4]  # verified under someone else's key
            bad.add(i)
        elif i % 13 == 6:
            sig = sig[:-1]  # truncated
            bad.add(i)
        checks.append((k.public_key, sig, msg))
    flags = verify_many(checks)
    assert flags == [i not in bad for i in range(count)]
    assert bad  # the test exercised failures
