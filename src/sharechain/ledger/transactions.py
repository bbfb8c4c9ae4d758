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

from sharechain.codec import decode, encode, head, loads
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
    parts = split_envelope(raw)
    body_bytes, key_id, signature = parts if parts is not None else _decode_envelope(raw)
    try:
        body = loads(body_bytes)
    except Exception as exc:
        raise EncodingError(f"transaction body is not valid CBOR: {exc}") from None
    fields = _body_fields(body)
    if fields is None or not _is_canonical_body(fields, body_bytes):
        fields = _checked_fields(body, body_bytes)  # raises: says what is wrong
    if tx_id is None:
        tx_id = hashlib.sha256(raw).digest()
    # `_signed(_transaction(*fields), ...)`, inline: blocks are parsed by the thousand.
    kind, sender, nonce, created_at, payload = fields
    tx: Transaction = _new(Transaction)
    _TX_TYPE(tx, kind)
    _TX_SENDER(tx, sender)
    _TX_NONCE(tx, nonce)
    _TX_CREATED(tx, created_at)
    _TX_PAYLOAD(tx, payload)
    stx: SignedTransaction = _new(SignedTransaction)
    _S_TX(stx, tx)
    _S_BODY(stx, body_bytes)
    _S_KEY_ID(stx, key_id)
    _S_SIGNATURE(stx, signature)
    _S_RAW(stx, raw)
    _S_ID(stx, tx_id)
    return stx


_Fields = tuple[str, str, bytes, int, dict[str, Any]]
"""A body's type, sender, nonce, created_at and payload."""

_U64 = 1 << 64


def _body_fields(body: Any) -> _Fields | None:
    """The fields of a well-formed body map (`_checked_fields` would pass them), or
    None for anything else, which then goes through `_checked_fields`."""
    if type(body) is not dict or len(body) != 5:
        return None
    try:
        kind, sender, nonce = body["type"], body["sender"], body["nonce"]
        created_at, payload = body["created_at"], body["payload"]
    except KeyError:
        return None
    if (
        type(kind) is str
        and kind
        and type(sender) is str
        and sender
        and type(nonce) is bytes
        and len(nonce) == NONCE_SIZE
        and type(created_at) is int
        and 0 <= created_at < _U64
        and type(payload) is dict
    ):
        return kind, sender, nonce, created_at, payload
    return None


def _text(value: str) -> bytes:
    b = value.encode()
    return head(3, len(b)) + b


# The body's fixed bytes around its type and its sender, and those fields' values
# with them: a block repeats a few types and senders thousands of times.
_TYPE, _NONCE, _SENDER, _PAYLOAD = b"\xa5\x64type", b"\x65nonce\x50", b"\x66sender", b"\x67payload"
_CREATED_AT = b"\x6acreated_at"
_type_pieces: dict[str, bytes] = {}
"""type -> `_TYPE`, the type's encoding, `_NONCE`."""
_sender_pieces: dict[str, bytes] = {}
"""sender -> `_SENDER`, the sender's encoding, `_PAYLOAD`."""
_MAX_PIECES = 4096


def _remembered(pieces: dict[str, bytes], value: str, before: bytes, after: bytes) -> bytes:
    piece = before + _text(value) + after
    if len(pieces) >= _MAX_PIECES:  # forgotten all at once when full
        pieces.clear()
    pieces[value] = piece
    return piece


def _canonical_body(kind: str, sender: str, nonce: bytes, created_at: int, payload: Any) -> bytes:
    """`encode` of the body map of these fields, its keys in canonical order (`type`,
    `nonce`, `sender`, `payload`, `created_at`: shorter first), written directly.

    Equal to `encode` of the decoded body for exactly the bodies `_body_fields`
    accepts (text, a 16-byte string, an integer below 2^64, a map); checked
    against `encode` in tests/ledger/test_commit_pipeline.py.
    """
    return b"".join(
        (
            _type_pieces.get(kind) or _remembered(_type_pieces, kind, _TYPE, _NONCE),
            nonce,
            _sender_pieces.get(sender) or _remembered(_sender_pieces, sender, _SENDER, _PAYLOAD),
            encode(payload),
            _CREATED_AT,
            head(0, created_at),
        )
    )


def _is_canonical_body(fields: _Fields, body_bytes: bytes) -> bool:
    try:
        return _canonical_body(*fields) == body_bytes
    except Exception:  # a payload `encode` refuses: the general path says why
        return False


def _checked_fields(body: Any, body_bytes: bytes) -> _Fields:
    """The general path: check `body` field by field, raising `EncodingError` for the
    first thing wrong with it."""
    # One reading per signature: a body that is not the canonical encoding of
    # what it decodes to (a duplicate key, trailing bytes, a float, a long
    # head) is refused (`bad_encoding`), else a verifier reading the bytes
    # strictly (`ledger/strict_cbor.py`) would refuse a chain the nodes took.
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
    return kind, sender, nonce, created_at, payload


# Blocks are parsed by the thousand: set the fields of these frozen records
# directly, as their generated `__init__` does through one `object.__setattr__`
# call per field, at a third of the cost.
_new = object.__new__
_TX_TYPE, _TX_SENDER, _TX_NONCE, _TX_CREATED, _TX_PAYLOAD = (
    getattr(Transaction, name).__set__
    for name in ("type", "sender", "nonce", "created_at", "payload")
)
_S_TX, _S_BODY, _S_KEY_ID, _S_SIGNATURE, _S_RAW, _S_ID = (
    getattr(SignedTransaction, name).__set__
    for name in ("tx", "body", "key_id", "signature", "raw", "id")
)
