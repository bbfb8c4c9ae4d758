"""Signed transactions: the only way anything changes on the ledger.

A transaction body is `{type, sender, nonce, created_at, payload}`. The sender
signs `b"sharechain/tx/v1\\0" || body` with its current Ed25519 key, where
`body` is the canonical CBOR of the map. The envelope that travels and is
stored in blocks is the canonical CBOR array

    [1, body: bstr, key_id: bstr(32), signature: bstr(64)]

and the transaction id is `SHA-256(envelope)`. Keeping the body as a byte
string means every node verifies the signature over exactly the bytes that
were signed, and the strict canonical check on decoding means nobody can
re-encode an envelope into a second id for the same transaction (replay).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sharechain.codec import decode, decode_trusted, encode
from sharechain.crypto.signing import SigningKey
from sharechain.errors import EncodingError

__all__ = [
    "ENVELOPE_VERSION",
    "NONCE_SIZE",
    "TX_DOMAIN",
    "SignedTransaction",
    "Transaction",
    "TxId",
    "decode_transaction",
    "envelope_parts",
    "sign_transaction",
    "split_envelope",
]

TxId = bytes
"""SHA-256 of a signed transaction envelope."""

TX_DOMAIN = b"sharechain/tx/v1\x00"
ENVELOPE_VERSION = 1
NONCE_SIZE = 16


@dataclass(frozen=True, slots=True)
class Transaction:
    """What the sender asks the ledger to do."""

    type: str
    """The contract operation, e.g. `notary.record`."""
    sender: str
    """Id of the sending organisation."""
    nonce: bytes
    """16 random bytes that make every transaction unique."""
    created_at: int
    """Sender's clock in ms since the Unix epoch (informational: contracts use block time)."""
    payload: Mapping[str, Any]
    """Operation arguments, checked by the contract."""

    def body_bytes(self) -> bytes:
        return encode(
            {
                "type": self.type,
                "sender": self.sender,
                "nonce": self.nonce,
                "created_at": self.created_at,
                "payload": dict(self.payload),
            }
        )


@dataclass(frozen=True, slots=True)
class SignedTransaction:
    """A transaction with its signature, as it travels and as blocks hold it."""

    tx: Transaction
    """The signed body, decoded."""
    body: bytes
    """The exact body bytes the signature covers."""
    key_id: bytes
    """SHA-256 of the public key that signed."""
    signature: bytes
    """Ed25519 signature over `TX_DOMAIN || body`."""
    raw: bytes
    """The canonical envelope."""
    id: TxId
    """SHA-256 of `raw`."""

    @property
    def signed_message(self) -> bytes:
        return TX_DOMAIN + self.body


def sign_transaction(
    signer: SigningKey,
    type: str,
    sender: str,
    payload: Mapping[str, Any],
    *,
    now: Callable[[], float] = time.time,
    rng: Callable[[int], bytes] = os.urandom,
) -> SignedTransaction:
    """Build and sign a transaction from `sender` with `signer`."""
    tx = Transaction(type, sender, rng(NONCE_SIZE), int(now() * 1000), payload)
    body = tx.body_bytes()
    signature = signer.sign(TX_DOMAIN, body)
    raw = encode([ENVELOPE_VERSION, body, signer.key_id, signature])
    return SignedTransaction(tx, body, signer.key_id, signature, raw, hashlib.sha256(raw).digest())


_BODY_KEYS = frozenset({"type", "sender", "nonce", "created_at", "payload"})
_KEY_ID_HEAD = b"\x58\x20"  # bstr(32)
_SIGNATURE_HEAD = b"\x58\x40"  # bstr(64)


def split_envelope(raw: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(body, key id, signature) if `raw` is the canonical envelope of a 32-byte key
    id and a 64-byte signature, else None (then the general decoder decides).

    That envelope's bytes are fixed: `84 01`, the body as a byte string with its
    length in shortest form, `58 20` and the key id, `58 40` and the signature.
    Reading them in place gives what decoding and the canonical check would,
    without building the list and encoding it again.
    """
    if len(raw) < 103 or raw[0] != 0x84 or raw[1] != 0x01:
        return None
    head = raw[2]
    if head < 0x58:
        n, start = head - 0x40, 3
        if n < 0:
            return None
    elif head == 0x58:
        n, start = raw[3], 4
        if n < 24:
            return None
    elif head == 0x59:
        n, start = int.from_bytes(raw[3:5], "big"), 5
        if n < 0x100:
            return None
    else:  # bodies of 64 KiB and more take the general path
        return None
    end = start + n
    if len(raw) != end + 100 or raw[end : end + 2] != _KEY_ID_HEAD:
        return None
    if raw[end + 34 : end + 36] != _SIGNATURE_HEAD:
        return None
    return raw[start:end], raw[end + 2 : end + 34], raw[end + 36 :]


def envelope_parts(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(body, key id, signature) of an envelope, without decoding the body;
    raises `EncodingError` unless `raw` is a canonical `[1, body, key_id, signature]`."""
    parts = split_envelope(raw)
    return parts if parts is not None else _decode_envelope(raw)


def _decode_envelope(raw: bytes) -> tuple[bytes, bytes, bytes]:
    envelope = decode(raw)
    if (
        not isinstance(envelope, list)
        or len(envelope) != 4
        or envelope[0] != ENVELOPE_VERSION
        or not all(isinstance(x, bytes) for x in envelope[1:])
    ):
        raise EncodingError("transaction envelope must be [1, body, key_id, signature]")
    return envelope[1], envelope[2], envelope[3]


def _non_canonical_reason(body: bytes) -> str:
    """Which canonical-CBOR rule `body` breaks, in the words of the strict decoder."""
    from sharechain.ledger.strict_cbor import NonCanonicalError, strict_decode

    try:
        strict_decode(body)
    except NonCanonicalError as exc:
        return str(exc)
    return "not in canonical (deterministic) CBOR"


def decode_transaction(raw: bytes, *, tx_id: TxId | None = None) -> SignedTransaction:
    """Parse an envelope, raising `EncodingError` for anything malformed.

    `tx_id` is the envelope's id when the caller has hashed it already (a
    block's `tx_ids`); it must be `SHA-256(raw)`.
    """
    body_bytes, key_id, signature = envelope_parts(raw)
    try:
        body = decode_trusted(body_bytes)
    except Exception as exc:
        raise EncodingError(f"transaction body is not valid CBOR: {exc}") from None
    # One reading per signature: a body that is not the canonical encoding of
    # what it decodes to (a duplicate key, trailing bytes, a float, a long
    # head) is refused (`bad_encoding`), else a verifier reading the bytes
    # strictly (`ledger/strict_cbor.py`) would refuse a chain the nodes took.
    # Re-encoding costs about 3 µs a transaction.
    try:
        canonical = encode(body) == body_bytes
    except Exception:
        canonical = False
    if not canonical:
        raise EncodingError(f"transaction body: {_non_canonical_reason(body_bytes)}")
    if not isinstance(body, dict) or body.keys() != _BODY_KEYS:
        raise EncodingError(
            "transaction body must be a map of type, sender, nonce, created_at, payload"
        )
    kind, sender = body["type"], body["sender"]
    nonce, created_at, payload = body["nonce"], body["created_at"], body["payload"]
    if not isinstance(kind, str) or not kind:
        raise EncodingError("transaction field 'type' must be a non-empty text string")
    if not isinstance(sender, str) or not sender:
        raise EncodingError("transaction field 'sender' must be a non-empty text string")
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_SIZE:
        raise EncodingError(f"transaction nonce must be {NONCE_SIZE} bytes")
    if not isinstance(created_at, int) or isinstance(created_at, bool) or created_at < 0:
        raise EncodingError("transaction created_at must be a non-negative integer")
    if not isinstance(payload, dict):
        raise EncodingError("transaction payload must be a map")
    tx = Transaction(kind, sender, nonce, created_at, payload)
    if tx_id is None:
        tx_id = hashlib.sha256(raw).digest()
    return SignedTransaction(tx, body_bytes, key_id, signature, raw, tx_id)
