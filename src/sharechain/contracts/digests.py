"""Ciphertext digests: which dataset owns each sealed payload.

A sealed payload is named by its SHA-256 (its blob address on every node). A
dataset names one when it is registered (`ciphertext_digest`), versioned or
derived, and each key epoch names the payload sealed under its key. Deleting
blobs follows those names: the shredder deletes the payloads of a purged
dataset, the owner's tools delete an epoch's payload after a rotation. Were
names free, a member could name another member's payload in a dataset of its
own and then purge that dataset, and every node would delete the other
member's bytes.

So the first dataset that names a digest owns it (`digest/<hex>`: the dataset
and its owner), and any later claim by another dataset is refused with
`denied`, whoever sends it. The one exception is a new version of a dataset
by the same owner, which may keep its predecessor's payload (a change of
description only). Every dataset that names a digest is indexed under
`idx/digest/<hex>/<dataset>`, so `live_users` answers "does any dataset that is
not purged still need these bytes?", which the shredder asks before it deletes
anything.
"""

from __future__ import annotations

from typing import Any, Protocol

from sharechain.contracts.codes import DENIED
from sharechain.contracts.keys import dataset_key, idx
from sharechain.ledger.contract import Reject, State

__all__ = [
    "claim",
    "digest_key",
    "digest_owner",
    "live_users",
    "users",
]


class _Reader(Protocol):
    def get(self, key: str) -> Any | None: ...
    def scan(self, prefix: str) -> Any: ...


def digest_key(digest: bytes) -> str:
    return f"digest/{digest.hex()}"


def _users_prefix(digest: bytes) -> str:
    return idx("digest", digest.hex())


def digest_owner(reader: _Reader, digest: bytes) -> tuple[str, str] | None:
    """(dataset, owner) that owns `digest`, or None if no dataset named it yet."""
    value = reader.get(digest_key(digest))
    return None if value is None else (str(value["dataset"]), str(value["owner"]))


def users(reader: _Reader, digest: bytes) -> tuple[str, ...]:
    """Every dataset that names `digest`: in its record or in one of its key epochs.

    The index answers for every digest claimed since it exists; for a digest
    without an owner record (a chain recorded before) the key epochs are
    scanned instead, so an older chain is protected too.
    """
    prefix = _users_prefix(digest)
    found = [key[len(prefix) :] for key, _ in reader.scan(prefix)]
    if reader.get(digest_key(digest)) is None:
        found += [
            str(value["dataset"])
            for _, value in reader.scan("epoch/")
            if value["ciphertext_digest"] == digest and not value["inline"]
        ]
    return tuple(dict.fromkeys(found))


def live_users(reader: _Reader, digest: bytes) -> tuple[str, ...]:
    """The datasets naming `digest` that are not purged: while any is, the bytes stay."""
    live = []
    for ds in users(reader, digest):
        value = reader.get(dataset_key(ds))
        if value is not None and value["status"] != "purged":
            live.append(ds)
    return tuple(live)


def claim(state: State, digest: bytes, dataset: str, owner: str, *, previous: str = "") -> None:
    """Record that `dataset` (of `owner`) names the sealed payload `digest`.

    Refuses (`denied`) when another dataset owns the digest, unless `dataset`
    is the next version (`previous`) of one that names it, by the same owner.
    """
    key = digest_key(digest)
    value = state.get(key)
    if value is None:
        state.put(key, {"dataset": dataset, "owner": owner})
    elif value["dataset"] != dataset:
        inherited = (
            previous
            and value["owner"] == owner
            and state.get(_users_prefix(digest) + previous) is not None
        )
        if not inherited:
            state.touch(dataset_key(value["dataset"]))  # the owner's trail shows the attempt
            raise Reject(
                DENIED,
                f"ciphertext digest {digest.hex()} is the sealed payload of dataset "
                f"{value['dataset']} of {value['owner']}; a dataset names only a payload of "
                "its own (seal the data again for a fresh digest)",
            )
    state.put(_users_prefix(digest) + dataset, 1)
