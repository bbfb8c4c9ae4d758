"""Wrapping data keys to an organisation's encryption key with HPKE (RFC 9180).

A data key (or a key share) travels to the organisation allowed to read a
dataset sealed to that organisation's public key: only the holder of the
matching private key can open it. HPKE, RFC 9180 base mode, does the work:

- version 1 (default): DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
  ChaCha20-Poly1305 — the suite of RFC 9180 appendix A.2, so the published
  vectors check it end to end. ChaCha20-Poly1305 rather than AES-256-GCM: it is
  the X25519 suite the RFC gives vectors for, it has a 256-bit key, and a wrap
  is a few dozen bytes, so AES-NI speed does not matter here.
- version 2 (post-quantum hybrid): the KEM is ML-KEM-768 + X25519 combined as
  X-Wing (KEM id 0x647a, draft-connolly-cfrg-xwing-kem, adopted for HPKE by
  draft-ietf-hpke-pq): ``ss = SHA3-256(ss_MLKEM || ss_X25519 || ct_X25519 ||
  pk_X25519 || "\\.//^\\")``. It stays secret as long as either X25519 or ML-KEM
  holds. Same KDF and AEAD.

Both suites come from ``cryptography``'s HPKE. Wrapped output::

    version (1) | recipient key id = SHA-256(recipient public key) (32) | enc | AEAD ciphertext

and the HPKE ``info`` binds all of it plus the caller's context (for example
the dataset id and key epoch)::

    info = "sharechain/wrap/v1" || version || recipient key id || context

so a wrapped key opened for another dataset, epoch or recipient fails. Every
failure to unwrap raises the same opaque `DecryptionError`.

cryptography draws the ephemeral key itself (from OpenSSL's CSPRNG), so wrapping
takes no ``rng``. To check the RFC vectors, this module also carries a small
RFC 9180 base-mode implementation (`_setup_base_s` with a given ephemeral key);
the tests prove both that it matches the vectors and that it interoperates with
the wrapping above.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from sharechain.errors import ConfigError, DecryptionError

__all__ = [
    "HYBRID_PRIVATE_KEY_SIZE",
    "HYBRID_PUBLIC_KEY_SIZE",
    "MAX_CONTEXT_SIZE",
    "MAX_SECRET_SIZE",
    "VERSION_HYBRID",
    "VERSION_X25519",
    "KeyId",
    "generate_hybrid_key",
    "hybrid_available",
    "hybrid_public_key",
    "key_id",
    "recipient_key_id",
    "unwrap_key",
    "wrap_key",
]

KeyId = bytes
"""SHA-256 of a public key, 32 bytes."""

VERSION_X25519: Final = 0x01
VERSION_HYBRID: Final = 0x02
X25519_KEY_SIZE: Final = 32
MLKEM_SEED_SIZE: Final = 64
MLKEM_PUBLIC_SIZE: Final = 1184
HYBRID_PRIVATE_KEY_SIZE: Final = MLKEM_SEED_SIZE + X25519_KEY_SIZE
"""Hybrid private key bytes: ML-KEM-768 seed (64) || X25519 private key (32)."""
HYBRID_PUBLIC_KEY_SIZE: Final = MLKEM_PUBLIC_SIZE + X25519_KEY_SIZE
"""Hybrid public key bytes: ML-KEM-768 encapsulation key (1184) || X25519 public key (32)."""
MAX_SECRET_SIZE: Final = 4096
MAX_CONTEXT_SIZE: Final = 4096
_INFO_LABEL = b"sharechain/wrap/v1"
_TAG_SIZE = 16

_SUITES: Final = {
    VERSION_X25519: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305),
    VERSION_HYBRID: hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305
    ),
}
_ENC_SIZES: Final = {
    VERSION_X25519: hpke.KEM.X25519.enc_length(),
    VERSION_HYBRID: hpke.KEM.MLKEM768_X25519.enc_length(),
}


def key_id(public_key: bytes) -> KeyId:
    """How sharechain names a public key: its SHA-256."""
    return hashlib.sha256(public_key).digest()


def hybrid_available() -> bool:
    """Whether this build of cryptography/OpenSSL offers ML-KEM-768 (needed for version 2)."""
    try:
        mlkem.MLKEM768PrivateKey.from_seed_bytes(bytes(MLKEM_SEED_SIZE))
    except UnsupportedAlgorithm:
        return False
    return True


def generate_hybrid_key(rng: Callable[[int], bytes] = os.urandom) -> bytes:
    """A fresh hybrid private key (96 bytes); raises `ConfigError` without ML-KEM support."""
    private = rng(HYBRID_PRIVATE_KEY_SIZE)
    _hybrid_private(private)  # raises ConfigError when ML-KEM is missing
    return private


def hybrid_public_key(private: bytes) -> bytes:
    """The 1216-byte public key of a hybrid private key."""
    return _hybrid_private(private)[1]


def wrap_key(
    secret: bytes, recipient_public: bytes, *, context: bytes, hybrid: bool = False
) -> bytes:
    """Seal ``secret`` so only the holder of ``recipient_public``'s private key opens it.

    ``recipient_public`` is a 32-byte X25519 key, or with ``hybrid`` a 1216-byte hybrid
    key. ``context`` (at most 4 KiB) must be given again, identical, to unwrap.
    """
    if not 1 <= len(secret) <= MAX_SECRET_SIZE:
        raise ConfigError(f"a wrapped secret must be 1..{MAX_SECRET_SIZE} bytes, got {len(secret)}")
    version = VERSION_HYBRID if hybrid else VERSION_X25519
    recipient: x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey
    if hybrid:
        if len(recipient_public) != HYBRID_PUBLIC_KEY_SIZE:
            raise ConfigError(f"a hybrid public key is {HYBRID_PUBLIC_KEY_SIZE} bytes")
        recipient = _hybrid_public(recipient_public)
    else:
        if len(recipient_public) != X25519_KEY_SIZE:
            raise ConfigError(f"an X25519 public key is {X25519_KEY_SIZE} bytes")
        recipient = x25519.X25519PublicKey.from_public_bytes(recipient_public)
    kid = key_id(recipient_public)
    info = _info(version, kid, context)
    return bytes([version]) + kid + _SUITES[version].encrypt(secret, recipient, info=info)


def unwrap_key(wrapped: bytes, recipient_private: bytes, *, context: bytes) -> bytes:
    """Open a wrapped secret with the recipient's private key (32 bytes, or 96 if hybrid).

    Any failure — wrong key, other context, tampering, unknown version — raises
    `DecryptionError`.
    """
    if len(wrapped) < 1 + 32:
        raise DecryptionError()
    version = wrapped[0]
    if version not in _SUITES or len(wrapped) < 1 + 32 + _ENC_SIZES[version] + _TAG_SIZE:
        raise DecryptionError()
    private: x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey
    try:
        if version == VERSION_HYBRID:
            private, public = _hybrid_private(recipient_private)
        else:
            private = x25519.X25519PrivateKey.from_private_bytes(recipient_private)
            public = private.public_key().public_bytes_raw()
    except (ValueError, ConfigError):
        raise DecryptionError() from None
    kid = wrapped[1:33]
    if not hmac.compare_digest(kid, key_id(public)):
        raise DecryptionError()
    info = _info(version, kid, context)
    try:
        return _SUITES[version].decrypt(wrapped[33:], private, info=info)
    except (InvalidTag, ValueError):
        raise DecryptionError() from None


def recipient_key_id(wrapped: bytes) -> KeyId:
    """The key id a wrapped secret is addressed to, so a node can pick the right key."""
    if len(wrapped) < 33 or wrapped[0] not in _SUITES:
        raise DecryptionError()
    return wrapped[1:33]


def _info(version: int, kid: bytes, context: bytes) -> bytes:
    if len(context) > MAX_CONTEXT_SIZE:
        raise ConfigError(f"wrap context must be at most {MAX_CONTEXT_SIZE} bytes")
    return _INFO_LABEL + bytes([version]) + kid + context


def _hybrid_private(private: bytes) -> tuple[hpke.MLKEM768X25519PrivateKey, bytes]:
    """The cryptography key and the public key bytes (its hybrid key exposes no bytes)."""
    if len(private) != HYBRID_PRIVATE_KEY_SIZE:
        raise ConfigError(f"a hybrid private key is {HYBRID_PRIVATE_KEY_SIZE} bytes")
    try:
        pq = mlkem.MLKEM768PrivateKey.from_seed_bytes(private[:MLKEM_SEED_SIZE])
    except UnsupportedAlgorithm:
        raise ConfigError(
            "the post-quantum hybrid needs ML-KEM-768, which this cryptography/OpenSSL "
            "build lacks: use cryptography >= 47 wheels (OpenSSL 3.5+) or wrap with X25519"
        ) from None
    classic = x25519.X25519PrivateKey.from_private_bytes(private[MLKEM_SEED_SIZE:])
    public = pq.public_key().public_bytes_raw() + classic.public_key().public_bytes_raw()
    return hpke.MLKEM768X25519PrivateKey(pq, classic), public


def _hybrid_public(public: bytes) -> hpke.MLKEM768X25519PublicKey:
    try:
        pq = mlkem.MLKEM768PublicKey.from_public_bytes(public[:MLKEM_PUBLIC_SIZE])
    except UnsupportedAlgorithm:
        raise ConfigError("the post-quantum hybrid needs ML-KEM-768 support") from None
    except ValueError:
        raise ConfigError("not a valid ML-KEM-768 public key") from None
    classic = x25519.X25519PublicKey.from_public_bytes(public[MLKEM_PUBLIC_SIZE:])
    return hpke.MLKEM768X25519PublicKey(pq, classic)


# --- RFC 9180 base mode, written out (for the vectors and the interoperability tests) --------

KEM_X25519: Final = 0x0020
KDF_HKDF_SHA256: Final = 0x0001
AEAD_AES_128_GCM: Final = 0x0001
AEAD_AES_256_GCM: Final = 0x0002
AEAD_CHACHA20_POLY1305: Final = 0x0003
_AEAD_KEY_SIZES: Final = {AEAD_AES_128_GCM: 16, AEAD_AES_256_GCM: 32, AEAD_CHACHA20_POLY1305: 32}
_KEM_SUITE_ID = b"KEM" + KEM_X25519.to_bytes(2, "big")


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    # HKDF-Extract(salt, ikm) is HMAC-SHA256 keyed with the salt (zeros when empty).
    return hmac.new(salt or bytes(32), b"HPKE-v1" + suite_id + label + ikm, "sha256").digest()


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled).derive(prk)


def _derive_key_pair(ikm: bytes) -> tuple[bytes, bytes]:
    """RFC 9180 section 7.1.3 DeriveKeyPair for X25519: (private, public)."""
    prk = _labeled_extract(_KEM_SUITE_ID, b"", b"dkp_prk", ikm)
    private = _labeled_expand(_KEM_SUITE_ID, prk, b"sk", b"", 32)
    public = x25519.X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
    return private, public


def _extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    prk = _labeled_extract(_KEM_SUITE_ID, b"", b"eae_prk", dh)
    return _labeled_expand(_KEM_SUITE_ID, prk, b"shared_secret", kem_context, 32)


@dataclass(frozen=True, slots=True)
class _Context:
    """An RFC 9180 encryption context (section 5.2)."""

    aead_id: int
    """Which AEAD the key and nonce are for."""
    key: bytes
    """The AEAD key."""
    base_nonce: bytes
    """The nonce that sequence numbers are XORed into."""
    exporter_secret: bytes
    """Secret behind `export`."""
    shared_secret: bytes
    """The KEM's shared secret (kept for the vector tests)."""

    def _nonce(self, seq: int) -> bytes:
        return (int.from_bytes(self.base_nonce, "big") ^ seq).to_bytes(12, "big")

    def _aead(self) -> AESGCM | ChaCha20Poly1305:
        if self.aead_id == AEAD_CHACHA20_POLY1305:
            return ChaCha20Poly1305(self.key)
        return AESGCM(self.key)

    def seal(self, seq: int, aad: bytes, plaintext: bytes) -> bytes:
        return self._aead().encrypt(self._nonce(seq), plaintext, aad)

    def open(self, seq: int, aad: bytes, ciphertext: bytes) -> bytes:
        return self._aead().decrypt(self._nonce(seq), ciphertext, aad)

    def export(self, exporter_context: bytes, length: int) -> bytes:
        suite_id = _suite_id(KEM_X25519, self.aead_id)
        return _labeled_expand(suite_id, self.exporter_secret, b"sec", exporter_context, length)


def _suite_id(kem_id: int, aead_id: int) -> bytes:
    return b"HPKE" + b"".join(i.to_bytes(2, "big") for i in (kem_id, KDF_HKDF_SHA256, aead_id))


def _key_schedule(shared_secret: bytes, info: bytes, kem_id: int, aead_id: int) -> _Context:
    """RFC 9180 section 5.1 KeySchedule, base mode (no PSK)."""
    suite_id = _suite_id(kem_id, aead_id)
    psk_id_hash = _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite_id, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(suite_id, shared_secret, b"secret", b"")
    return _Context(
        aead_id=aead_id,
        key=_labeled_expand(suite_id, secret, b"key", context, _AEAD_KEY_SIZES[aead_id]),
        base_nonce=_labeled_expand(suite_id, secret, b"base_nonce", context, 12),
        exporter_secret=_labeled_expand(suite_id, secret, b"exp", context, 32),
        shared_secret=shared_secret,
    )


def _setup_base_s(
    recipient_public: bytes, info: bytes, ephemeral_private: bytes, aead_id: int
) -> tuple[bytes, _Context]:
    """SetupBaseS with a given ephemeral key (Encap of section 4.1): (enc, context)."""
    ephemeral = x25519.X25519PrivateKey.from_private_bytes(ephemeral_private)
    enc = ephemeral.public_key().public_bytes_raw()
    dh = ephemeral.exchange(x25519.X25519PublicKey.from_public_bytes(recipient_public))
    shared = _extract_and_expand(dh, enc + recipient_public)
    return enc, _key_schedule(shared, info, KEM_X25519, aead_id)


def _setup_base_r(enc: bytes, recipient_private: bytes, info: bytes, aead_id: int) -> _Context:
    """SetupBaseR (Decap of section 4.1)."""
    private = x25519.X25519PrivateKey.from_private_bytes(recipient_private)
    dh = private.exchange(x25519.X25519PublicKey.from_public_bytes(enc))
    shared = _extract_and_expand(dh, enc + private.public_key().public_bytes_raw())
    return _key_schedule(shared, info, KEM_X25519, aead_id)


def _wrap_with_ephemeral(
    secret: bytes, recipient_public: bytes, context: bytes, ephemeral_private: bytes
) -> bytes:
    """What `wrap_key` (version 1) produces when its ephemeral key is ``ephemeral_private``."""
    kid = key_id(recipient_public)
    info = _info(VERSION_X25519, kid, context)
    enc, ctx = _setup_base_s(recipient_public, info, ephemeral_private, AEAD_CHACHA20_POLY1305)
    return bytes([VERSION_X25519]) + kid + enc + ctx.seal(0, b"", secret)
