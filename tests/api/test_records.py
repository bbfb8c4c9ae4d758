"""The wire models describe exactly what `jsonable` writes, for every record the API sends.

Each record type gets a sample with every field set (bytes, nested records,
tuples of pairs, optional values), is rendered with `jsonable`, checked
against its model and dumped again: the JSON must come back unchanged, key
order included, or the node would answer something other than before.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from samples import sample

from sharechain.api.models import (
    AccessRequestModel,
    AlertModel,
    AttestationModel,
    DatasetModel,
    GrantViewModel,
    KeyEpochModel,
    LineageModel,
    NotaryRecordModel,
    OrganisationModel,
    ProposalModel,
)
from sharechain.api.records import record_model
from sharechain.api.wire import from_jsonable, jsonable
from sharechain.codec import encode
from sharechain.contracts.access import AccessRequest
from sharechain.contracts.datasets import Dataset
from sharechain.contracts.epochs import KeyEpoch
from sharechain.contracts.membership import Proposal
from sharechain.contracts.notary import NotaryRecord
from sharechain.contracts.queries import AuditEntry, GrantView, Lineage
from sharechain.contracts.risk import Alert
from sharechain.ledger.attestations import Attestation
from sharechain.ledger.blocks import BlockHeader
from sharechain.ledger.identities import Organisation
from sharechain.ledger.proofs import TxProof

RECORDS: tuple[tuple[type, type[BaseModel]], ...] = (
    (AccessRequest, AccessRequestModel),
    (Alert, AlertModel),
    (Attestation, AttestationModel),
    (Dataset, DatasetModel),
    (GrantView, GrantViewModel),
    (KeyEpoch, KeyEpochModel),
    (Lineage, LineageModel),
    (NotaryRecord, NotaryRecordModel),
    (Organisation, OrganisationModel),
    (Proposal, ProposalModel),
)


def _proof() -> TxProof:
    header = BlockHeader(
        3, b"\x01" * 32, b"\x02" * 32, b"\x06" * 32, b"\x03" * 32, 1_700_000_000_000, "org"
    )
    return TxProof(b"\x04" * 32, 3, 0, 1, (b"\x05" * 32,), header, "denied", "no", (b"\x07" * 32,))


def _roundtrip(model: type[BaseModel], value: Any) -> str:
    checked = model.model_validate(value)
    return checked.model_dump_json(by_alias=True)


@pytest.mark.parametrize(("record", "model"), RECORDS, ids=[r.__name__ for r, _ in RECORDS])
def test_the_model_keeps_the_json_of_every_record(record: type, model: type[BaseModel]) -> None:
    value = jsonable(sample(record))
    assert json.loads(_roundtrip(model, value)) == value
    assert list(json.loads(_roundtrip(model, value))) == list(value)  # same order


@pytest.mark.parametrize(("record", "model"), RECORDS, ids=[r.__name__ for r, _ in RECORDS])
def test_the_model_is_named_and_derived_from_the_record(
    record: type, model: type[BaseModel]
) -> None:
    assert model is record_model(record)
    assert model.__name__ == record.__name__
    schema = model.model_json_schema(by_alias=True)
    assert list(schema["properties"]) == [f.name for f in dataclasses.fields(record)]


def test_records_come_back_from_their_json() -> None:
    for record, _ in RECORDS:
        value = sample(record)
        assert from_jsonable(record, jsonable(value)) == value


def test_proofs_and_audit_entries_travel_as_their_own_json() -> None:
    proof = _proof()
    entry = AuditEntry(
        b"\x04" * 32, 3, 0, 1_700_000_000_000, "dataset.register", "org", "valid", "", proof
    )
    assert jsonable(proof) == proof.to_json()
    assert jsonable(entry) == entry.to_json()
    assert jsonable(proof)["header_cbor"] == encode(proof.header.to_map()).hex()
    assert json.loads(_roundtrip(record_model(AuditEntry), jsonable(entry))) == entry.to_json()


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("plaintext_digest", "ABCD"),  # upper case
        ("plaintext_digest", "abc"),  # odd length
        ("plaintext_digest", "zz"),  # not hex
        ("size", "ten"),
    ],
)
def test_the_model_refuses_what_the_api_never_sends(field: str, bad: str) -> None:
    value = jsonable(sample(Dataset))
    value[field] = bad
    with pytest.raises(ValidationError):
        DatasetModel.model_validate(value)


def test_an_unknown_or_missing_field_fails_the_check() -> None:
    value = jsonable(sample(Dataset))
    with pytest.raises(ValidationError, match="extra"):
        DatasetModel.model_validate({**value, "surprise": 1})
    del value["owner"]
    with pytest.raises(ValidationError, match="owner"):
        DatasetModel.model_validate(value)
