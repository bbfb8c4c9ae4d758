"""The notary: trusted records of files, checked against the chain.

An organisation records a file's SHA-256 with an optional note; other
organisations may countersign (endorse) the record; anyone holding the file
can check it against the chain. Useful on its own (degree certificates,
inspection reports, shipment documents) and as the simplest contract.

State:
- `notary/<digest hex>`: the record, its recorder and its endorsements;
- `notary-tx/<tx id hex>`: the digest a record transaction created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sharechain.ledger.contract import BlockContext, ContractRegistry, Reject, State
from sharechain.ledger.transactions import SignedTransaction

__all__ = [
    "ENDORSE",
    "RECORD",
    "Endorsement",
    "NotaryRecord",
    "notary_record",
    "record_key",
    "registry",
]

RECORD = "notary.record"
ENDORSE = "notary.endorse"
MAX_NOTE = 4096


@dataclass(frozen=True, slots=True)
class Endorsement:
    """A countersignature of a notary record."""

    org: str
    """The endorsing organisation."""
    tx_id: bytes
    """The endorsing transaction."""
    height: int
    """Block height of the endorsement."""
    timestamp: int
    """Block time of the endorsement (ms)."""


@dataclass(frozen=True, slots=True)
class NotaryRecord:
    """A file digest recorded on the chain."""

    digest: bytes
    """SHA-256 of the file."""
    recorder: str
    """Organisation that recorded it."""
    note: str
    """Free text (e.g. what the file is)."""
    tx_id: bytes
    """The recording transaction."""
    height: int
    """Block height of the record."""
    timestamp: int
    """Block time of the record (ms)."""
    endorsements: tuple[Endorsement, ...]
    """Countersignatures, in chain order."""


def record_key(digest: bytes) -> str:
    return f"notary/{digest.hex()}"


def _tx_key(tx_id: bytes) -> str:
    return f"notary-tx/{tx_id.hex()}"


def notary_record(value: Any) -> NotaryRecord:
    return NotaryRecord(
        digest=value["digest"],
        recorder=value["recorder"],
        note=value["note"],
        tx_id=value["tx_id"],
        height=value["height"],
        timestamp=value["timestamp"],
        endorsements=tuple(
            Endorsement(e["org"], e["tx_id"], e["height"], e["timestamp"])
            for e in value["endorsements"]
        ),
    )


def _record(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    p = stx.tx.payload
    digest, note = p.get("digest"), p.get("note", "")
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise Reject("bad_payload", "digest must be the 32-byte SHA-256 of the file")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise Reject("bad_payload", f"note must be text of at most {MAX_NOTE} characters")
    key = record_key(digest)
    state.touch(key)
    existing = state.get(key)
    if existing is not None:
        raise Reject(
            "duplicate",
            f"this file was already recorded by {existing['recorder']} "
            f"at height {existing['height']}; endorse that record instead",
        )
    state.put(
        key,
        {
            "digest": digest,
            "recorder": stx.tx.sender,
            "note": note,
            "tx_id": stx.id,
            "height": ctx.height,
            "timestamp": ctx.timestamp,
            "endorsements": [],
        },
    )
    state.put(_tx_key(stx.id), digest)


class _Record:
    """The `notary.record` handler; it names the record's key, which it reads first
    (`sharechain.ledger.execution.Reads`), so a block loads them all at once."""

    __call__ = staticmethod(_record)  # called as the handler, without a frame of its own

    def reads(self, stx: SignedTransaction) -> tuple[str, ...]:
        digest = stx.tx.payload.get("digest")
        return (record_key(digest),) if type(digest) is bytes and len(digest) == 32 else ()


def _endorse(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    target = stx.tx.payload.get("record")
    if not isinstance(target, bytes) or len(target) != 32:
        raise Reject("bad_payload", "record must be the 32-byte id of a notary.record transaction")
    digest = state.get(_tx_key(target))
    if digest is None:
        raise Reject("not_found", f"no notary record was created by transaction {target.hex()}")
    key = record_key(digest)
    state.touch(key)
    value = dict(state.get(key) or {})
    if value["recorder"] == stx.tx.sender:
        raise Reject("denied", "an organisation cannot endorse its own record")
    if any(e["org"] == stx.tx.sender for e in value["endorsements"]):
        raise Reject("duplicate", f"{stx.tx.sender} has already endorsed this record")
    value["endorsements"] = [
        *value["endorsements"],
        {"org": stx.tx.sender, "tx_id": stx.id, "height": ctx.height, "timestamp": ctx.timestamp},
    ]
    state.put(key, value)


def registry() -> ContractRegistry:
    return ContractRegistry({RECORD: _Record(), ENDORSE: _endorse})
