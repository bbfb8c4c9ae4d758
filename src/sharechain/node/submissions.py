"""Parsing a `POST /v1/txs` body: JSON with hex envelopes, or CBOR with byte strings.

The batch arrives as JSON (`SubmitBody`) or as `application/cbor` (the same
fields, envelopes as byte strings: half the bytes and no hex to write or
read). Either way it becomes one `Submission`; `admit` then checks each
envelope's framing before the node queues it. Kept apart from `app.py` so the
routes read as routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sharechain.api.models import MAX_TX_BYTES, MAX_TXS_PER_REQUEST, Queued, ReceiptList, SubmitBody
from sharechain.codec import decode
from sharechain.errors import EncodingError
from sharechain.ledger.transactions import decode_transaction, split_envelope

__all__ = [
    "CBOR",
    "MAX_TXS_PER_REQUEST",
    "MAX_TX_BYTES",
    "QUEUED_DOC",
    "RECEIPTS_DOC",
    "SUBMIT_DOC",
    "Submission",
    "SubmitBody",
    "accepts_cbor",
    "admit",
    "parse_submission",
]

CBOR = "application/cbor"


_SUBMIT_CBOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "The JSON form's fields, with each envelope a CBOR byte string instead of hex. "
        "Any well-formed CBOR map will do (it need not be canonical)."
    ),
    "required": ["txs"],
    "properties": {
        "txs": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_TXS_PER_REQUEST,
            "items": {"type": "string", "format": "binary", "maxLength": MAX_TX_BYTES},
        },
        "wait": {"type": "boolean", "default": True},
        "timeout": {"type": "number", "minimum": 0, "maximum": 300, "default": 30},
    },
}
SUBMIT_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SubmitBody.model_json_schema()},
            CBOR: {"schema": _SUBMIT_CBOR_SCHEMA},
        },
    },
}
_ID = {"type": "string", "format": "binary", "minLength": 32, "maxLength": 32}
_ROW = {
    "type": "array",
    "description": "tx_id, height, index, code, reason",
    "prefixItems": [
        _ID,
        {"type": "integer"},
        {"type": "integer"},
        {"type": "string"},
        {"type": "string"},
    ],
    "minItems": 5,
    "maxItems": 5,
}
RECEIPTS_DOC: dict[str, Any] = {
    "model": ReceiptList,
    "description": (
        "Receipts in submission order; in CBOR (when the request accepts it) each receipt "
        "is an array `[tx_id (bytes), height, index, code, reason]`."
    ),
    "content": {
        CBOR: {
            "schema": {
                "type": "object",
                "required": ["receipts"],
                "properties": {"receipts": {"type": "array", "items": _ROW}},
            }
        }
    },
}
QUEUED_DOC: dict[str, Any] = {
    "model": Queued,
    "description": "queued (`wait` false): the transaction ids; ask `GET /v1/txs/{id}` later",
    "content": {
        CBOR: {
            "schema": {
                "type": "object",
                "required": ["tx_ids", "receipts"],
                "properties": {
                    "tx_ids": {"type": "array", "items": _ID},
                    "receipts": {"type": "array", "maxItems": 0},
                },
            }
        }
    },
}


@dataclass(frozen=True, slots=True)
class Submission:
    """A `POST /v1/txs` body, whichever media type it came in."""

    raws: tuple[bytes, ...]
    """The envelopes, in the order their receipts answer."""
    wait: bool
    """Answer with receipts once committed (else 202 with the ids at once)."""
    timeout: float
    """Longest wait in seconds."""


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def parse_submission(content_type: str, body: bytes) -> Submission:
    """Parse a submission; 400 (CBOR), 422 (JSON, as FastAPI would) or 415 when it is not one."""
    kind = _media_type(content_type)
    if kind == CBOR:
        return _cborparse_submission(body)
    if kind in ("", "application/json") or kind.endswith("+json"):
        try:
            parsed = SubmitBody.model_validate_json(body)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            raise RequestValidationError(errors) from None
        raws: list[bytes] = []
        for i, text in enumerate(parsed.txs):
            try:
                raws.append(bytes.fromhex(text))
            except ValueError as exc:
                raise EncodingError(
                    f"transaction {i} is not a signed envelope in hex: {exc}"
                ) from None
        return Submission(tuple(raws), parsed.wait, parsed.timeout)
    raise StarletteHTTPException(
        415, f"POST /v1/txs takes application/json or {CBOR}, not {content_type!r}"
    )


def _cborparse_submission(body: bytes) -> Submission:
    try:
        value = decode(body, canonical=False)
    except EncodingError as exc:
        raise EncodingError(f"the request body is {exc}") from None  # "not valid CBOR: ..."
    if not isinstance(value, dict):
        raise EncodingError("the CBOR body must be a map with txs, wait and timeout")
    txs, wait, timeout = value.get("txs"), value.get("wait", True), value.get("timeout", 30.0)
    if not isinstance(txs, list) or not 1 <= len(txs) <= MAX_TXS_PER_REQUEST:
        raise EncodingError(f"txs must be an array of 1 to {MAX_TXS_PER_REQUEST} byte strings")
    for i, raw in enumerate(txs):
        if type(raw) is not bytes or len(raw) > MAX_TX_BYTES:
            raise EncodingError(
                f"transaction {i} must be a byte string of at most {MAX_TX_BYTES} bytes"
            )
    if type(wait) is not bool:
        raise EncodingError("wait must be true or false")
    if type(timeout) not in (int, float) or not 0.0 <= timeout <= 300.0:
        raise EncodingError("timeout must be a number of seconds from 0 to 300")
    return Submission(tuple(txs), wait, float(timeout))


def admit(raws: Sequence[bytes]) -> None:
    """Refuse (400, naming the index) an envelope that is not framed as a signed transaction.

    The canonical framing (`[1, body, 32-byte key id, 64-byte signature]`) is
    checked in place; anything else goes through the full decoder, which names
    the fault. The body itself is left to the ledger: at each hop decoding it
    cost the API a quarter of its time per transaction, and a body that does
    not decode is kept in its block with the code `bad_encoding`, as any
    transaction that fails validation is, so the submitter learns it from the
    receipt.
    """
    for i, raw in enumerate(raws):
        if split_envelope(raw) is None:
            try:
                decode_transaction(raw)
            except EncodingError as exc:
                raise EncodingError(f"transaction {i} is not a signed envelope: {exc}") from None


def accepts_cbor(accept: str) -> bool:
    return any(_media_type(part) == CBOR for part in accept.split(","))
