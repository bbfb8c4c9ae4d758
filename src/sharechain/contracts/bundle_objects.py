"""What a proof bundle is about: a dataset version, a grant, a read receipt, a notarised file.

A proof bundle (`sharechain.ledger.bundles`) proves one transaction. People
ask about the objects the contracts make, so a bundle can be asked for by
reference; each reference resolves, through world state, to the transaction
that records the object:

- `<64 hex>` or `tx:<64 hex>`: a transaction, itself;
- `dataset:<id>` or `dataset:<id>@<n>`: a dataset version (version `n` of the
  line `<id>` belongs to): its `dataset.register`, `derive` or `transform`
  (version 1) or its `dataset.version`;
- `grant:<id>`: a grant, the `access.request` or `access.approve` that issued it;
- `read:<tx id>`: a read receipt, the `grant.read` itself;
- `file:<path>` (the command line hashes it) or `notary:<64 hex>`: a notarised
  file by its SHA-256, its `notary.record`.

The bundle then carries `object` (what the reference named) and, for a
dataset version above 1, `lineage`: the transactions of the earlier versions.
`check_object` is the verifier's half: from the proved subject (and lineage)
alone it recomputes what the object claims (a dataset id is derived from its
transaction's id, a version number from the chain of `dataset.version`
payloads back to version 1, a grant id from its issuing transaction, a digest
from the payload) and refuses a claim that does not follow.

A bundle proves a transaction is on the chain, signed by its sender, and its
validation code (docs/proofs.md section 4): an object (anything but a bare
transaction) needs its subject and lineage valid, since a refused
transaction made nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sharechain.codec import decode
from sharechain.contracts.access import APPROVE, REQUEST
from sharechain.contracts.datasets import DERIVE, REGISTER, VERSION
from sharechain.contracts.grants import READ
from sharechain.contracts.ids import derive_id
from sharechain.contracts.keys import dataset_key, grant_key
from sharechain.contracts.notary import RECORD, record_key
from sharechain.contracts.transforms import TRANSFORM
from sharechain.errors import NotFoundError
from sharechain.ledger.bundles import BundleError, BundleTx, Proved
from sharechain.ledger.store import Store

__all__ = ["KINDS", "Resolved", "check_object", "resolve"]

FIRST_VERSION = frozenset({REGISTER, DERIVE, TRANSFORM})
"""Transactions that create a dataset at version 1."""
GRANT_ISSUERS = frozenset({REQUEST, APPROVE})
"""Transactions that may issue a grant (auto-approval, the last approval)."""
KINDS = ("transaction", "dataset-version", "grant", "read-receipt", "notarised-file")
MAX_VERSIONS = 64
"""Versions a bundle proves the line of (each adds about 700 bytes)."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """A reference resolved to the transactions a bundle needs."""

    tx_id: bytes
    """The transaction recording the object (the bundle's subject)."""
    lineage: tuple[bytes, ...]
    """Earlier transactions the object needs (a dataset's earlier versions), oldest first."""
    about: dict[str, Any]
    """The bundle's `object`: `kind` and what identifies the object."""


def _hex32(text: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise NotFoundError(f"{what} {text!r} is not 64 hexadecimal digits")
    return raw


def _record(store: Store, key: str, what: str) -> Any:
    raw = store.get(key)
    if raw is None:
        raise NotFoundError(f"no {what} on this chain")
    return decode(raw)


def resolve(store: Store, ref: str) -> Resolved:
    """The transaction (and lineage) behind a reference; `NotFoundError` says why not."""
    kind, sep, rest = ref.strip().partition(":")
    if not sep:
        kind, rest = "tx", kind
    if kind == "tx":
        tx_id = _hex32(rest, "transaction id")
        if store.tx_location(tx_id) is None:
            raise NotFoundError(f"transaction {rest} is not on this chain")
        return Resolved(tx_id, (), {"kind": "transaction"})
    if kind == "dataset":
        return _dataset(store, rest)
    if kind == "grant":
        v = _record(store, grant_key(rest), f"grant {rest!r}")
        return Resolved(v["tx_id"], (), {"kind": "grant", "grant": rest})
    if kind == "read":
        tx_id = _hex32(rest, "read receipt (its transaction id)")
        loc = store.tx_location(tx_id)
        if loc is None or loc.type != READ or loc.code != "valid":
            what = "not on this chain" if loc is None else f"a {loc.type} ({loc.code})"
            raise NotFoundError(f"{rest} is not a valid read receipt ({READ}): it is {what}")
        return Resolved(tx_id, (), {"kind": "read-receipt"})
    if kind == "notary":
        digest = _hex32(rest, "file digest")
        v = _record(store, record_key(digest), f"notarised file with SHA-256 {rest}")
        return Resolved(v["tx_id"], (), {"kind": "notarised-file", "digest": rest})
    raise NotFoundError(
        f"{ref!r} is no reference: give a transaction id, dataset:<id>[@<version>], "
        "grant:<id>, read:<tx id>, notary:<sha-256> or file:<path>"
    )


def _dataset(store: Store, rest: str) -> Resolved:
    ds, at, version = rest.partition("@")
    v = _record(store, dataset_key(ds), f"dataset {ds!r}")
    want = v["version"]
    if at:
        if not version.isdigit() or int(version) < 1:
            raise NotFoundError(f"dataset version {version!r} is not a number from 1")
        want = int(version)
    line = [v]  # walk back to version 1, then forward to the version asked for
    while line[0]["previous"] and len(line) <= MAX_VERSIONS:
        line.insert(0, _record(store, dataset_key(line[0]["previous"]), "earlier version"))
    while line[-1]["next"] and line[-1]["version"] < want and len(line) <= MAX_VERSIONS:
        line.append(_record(store, dataset_key(line[-1]["next"]), "later version"))
    if len(line) > MAX_VERSIONS:
        raise NotFoundError(f"dataset {ds} has more than {MAX_VERSIONS} versions to prove")
    found = [x for x in line if x["version"] == want]
    if not found:
        raise NotFoundError(
            f"dataset {ds} has versions 1 to {line[-1]['version']}, not version {want}"
        )
    target = found[0]
    lineage = tuple(x["tx_id"] for x in line if x["version"] < want)
    about = {"kind": "dataset-version", "dataset": target["id"], "version": want}
    return Resolved(target["tx_id"], lineage, about)


def check_object(proved: Proved, about: Any) -> str:
    """What the bundle shows about its object, in one sentence; raise `BundleError`
    if the object it claims does not follow from its transactions."""
    subject = proved.subject
    tx = subject.stx.tx
    where = f"in block {subject.height}"
    if about is None:
        about = {"kind": "transaction"}
    if not isinstance(about, Mapping) or about.get("kind") not in KINDS:
        raise BundleError(f"object must be a map whose kind is one of {', '.join(KINDS)}")
    kind = about["kind"]
    if kind != "dataset-version" and proved.lineage:
        raise BundleError(f"a bundle of a {kind} carries no lineage")
    if kind == "transaction":
        return (
            f"the transaction is {where} ({tx.type} by {tx.sender}, {subject.stx.id.hex()}), "
            f"code {subject.code}"
        )
    if kind == "dataset-version":
        return _check_dataset(proved, about)
    if kind == "grant":
        _is(subject, GRANT_ISSUERS, "a grant")
        if about.get("grant") != derive_id("grant", subject.stx.id):
            raise BundleError("the grant id is not the one its issuing transaction derives")
        return f"grant {about['grant']} was issued by {tx.type} of {tx.sender} {where}"
    if kind == "read-receipt":
        _is(subject, {READ}, "a read receipt")
        grant, digest = tx.payload.get("grant"), tx.payload.get("digest")
        if not isinstance(grant, str) or not isinstance(digest, bytes):
            raise BundleError("the read receipt names no grant or digest")
        return f"{tx.sender} signed a read receipt of {digest.hex()} under grant {grant} {where}"
    _is(subject, {RECORD}, "a notarised file")
    digest = tx.payload.get("digest")
    if not isinstance(digest, bytes) or about.get("digest") != digest.hex():
        raise BundleError("the notarised file's digest is not the one its record holds")
    return f"the file with SHA-256 {digest.hex()} was notarised by {tx.sender} {where}"


def _is(t: BundleTx, types: frozenset[str] | set[str], what: str) -> None:
    if t.stx.tx.type not in types:
        raise BundleError(f"a {t.stx.tx.type} transaction does not record {what}")
    if t.code != "valid":
        raise BundleError(
            f"the {t.stx.tx.type} in block {t.height} was refused by the chain "
            f"({t.code}): it does not record {what}"
        )


def _check_dataset(proved: Proved, about: Mapping[str, Any]) -> str:
    line = [*proved.lineage, proved.subject]
    _is(line[0], FIRST_VERSION, "a first dataset version")
    owner, ids = line[0].stx.tx.sender, [derive_id("dataset", line[0].stx.id)]
    for t in line[1:]:
        _is(t, {VERSION}, "a new dataset version")
        if t.stx.tx.sender != owner or t.stx.tx.payload.get("dataset") != ids[-1]:
            raise BundleError(
                f"the lineage is broken at block {t.height}: not {owner}'s next version "
                f"of {ids[-1]}"
            )
        ids.append(derive_id("dataset", t.stx.id))
    if [t.height for t in line] != sorted(t.height for t in line):
        raise BundleError("the lineage is not in chain order")
    if (about.get("dataset"), about.get("version")) != (ids[-1], len(line)):
        raise BundleError(
            f"the object claims dataset {about.get('dataset')} version {about.get('version')}; "
            f"the transactions make dataset {ids[-1]} version {len(line)}"
        )
    return (
        f"dataset {ids[-1]} is version {len(line)} (of the line begun by {ids[0]}), "
        f"registered by {owner} in block {proved.subject.height}"
    )
