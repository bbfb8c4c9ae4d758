"""The seal of a chain export: where the export ends, and where it begins.

A JSON Lines export (`docs/format.md` section 8) lists blocks; by itself
nothing signed says where the chain ends (a file cut at a block boundary still
verifies) or that its genesis is the one the founders agreed on. The seal is
one more line at the end of the export::

    {"v": 1, "type": "sharechain/export-seal/v1",
     "genesis": <signed note>,      checkpoint of size 1 over the genesis hash,
                                    cosigned by a quorum of the founders
     "checkpoint": <signed note>}   checkpoint over every exported block,
                                    cosigned by a quorum of the members active
                                    at the last block

A verifier recomputes the history tree from the exported block hashes: the
final checkpoint must cover exactly the blocks exported and have the same
root, so an export cut short, or with blocks appended (by one member or any
minority), fails. The founders sign the genesis note once, when they create
the consortium (`genesis_note`), since their keys may later rotate.

`sharechain.ledger.export` ends with the seal (`seal_line` where the member
keys are held, `sealed_with` a node network's quorum checkpoint); an export's
verifier calls `verify_seal(seal, hashes, founders_roster(genesis payload),
roster after the last block)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sharechain.crypto.merkle import Hash, merkle_root
from sharechain.crypto.signing import SigningKey
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.checkpoints import (
    Checkpoint,
    CheckpointError,
    Roster,
    block_hashes,
    checkpoint_of,
    cosign,
    origin_for,
    roster_of,
    signed_checkpoint,
    store_roster,
    verify_checkpoint,
)
from sharechain.ledger.identities import Organisation
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import decode_transaction

__all__ = [
    "SEAL_TYPE",
    "founders_roster",
    "genesis_note",
    "seal_line",
    "sealed_with",
    "verify_seal",
]

SEAL_TYPE = "sharechain/export-seal/v1"


def _sign(cp: Checkpoint, signers: Mapping[str, SigningKey]) -> str:
    return signed_checkpoint(cp, [cosign(cp, org, key) for org, key in sorted(signers.items())])


def genesis_note(genesis_hash: Hash, founders: Mapping[str, SigningKey]) -> str:
    """The founders' signed note over the genesis: a checkpoint of size 1."""
    return _sign(Checkpoint(origin_for(genesis_hash), 1, merkle_root([genesis_hash])), founders)


def founders_roster(genesis_payload: Mapping[str, Any]) -> Roster:
    """The roster that signs the genesis note: the genesis payload's organisations,
    with the quorum of its governance (what an export's verifier reads on line 0)."""
    try:
        orgs = [
            Organisation(o["id"], tuple(o["roles"]), o["sign_key"], b"")
            for o in genesis_payload["organisations"]
        ]
        governance = genesis_payload["governance"]
    except (KeyError, TypeError):
        raise CheckpointError("the genesis payload lacks its organisations or governance") from None
    return roster_of(orgs, governance)


def seal_line(store: Store, signers: Mapping[str, SigningKey], genesis: str) -> dict[str, Any]:
    """The seal of an export of the whole stored chain, checked before it is returned.

    `signers` are the keys held here; those of the store's active members cosign
    and must be a quorum (the embedded default holds every member's key).
    """
    hashes = block_hashes(store)
    roster = store_roster(store)
    held = {o: k for o, k in signers.items() if o in {c.org for c in roster.cosigners}}
    if len(held) < roster.quorum:
        raise CheckpointError(
            f"the member keys held here ({', '.join(sorted(held)) or 'none'}) are not a quorum "
            f"({roster.quorum} of {len(roster.cosigners)} members) to seal the export; export "
            "from a node (--node), whose checkpoint the members' nodes cosign"
        )
    cp = checkpoint_of(hashes, origin_for(hashes[0]))
    return sealed_with(store, _sign(cp, held), genesis)


def sealed_with(store: Store, checkpoint: str, genesis: str) -> dict[str, Any]:
    """The seal of an export of the whole stored chain with a checkpoint signed elsewhere
    (a node network's quorum checkpoint), checked against the store before it is returned."""
    hashes = block_hashes(store)
    seal = {"v": 1, "type": SEAL_TYPE, "genesis": genesis, "checkpoint": checkpoint}
    genesis_tx = decode_transaction(_genesis_envelope(store)).tx
    verify_seal(seal, hashes, founders_roster(genesis_tx.payload), store_roster(store))
    return seal


def _genesis_envelope(store: Store) -> bytes:
    data = store.block_bytes(0)
    if data is None:
        raise CheckpointError("the store holds no genesis block")
    return decode_block(data).txs[0]


def verify_seal(
    seal: Mapping[str, Any], hashes: Sequence[Hash], founders: Roster, final: Roster
) -> None:
    """Raise `CheckpointError` unless `seal` closes an export of blocks `hashes`.

    `founders` is the roster of the genesis payload, `final` the one of the state
    after the last exported block (both rebuilt by the export's verifier).
    """
    if not isinstance(seal, Mapping) or seal.get("type") != SEAL_TYPE or seal.get("v") != 1:
        raise CheckpointError(
            "the export does not end with a seal line: it may have been cut short"
        )
    if not hashes:
        raise CheckpointError("the export holds no blocks")
    origin = origin_for(hashes[0])
    genesis, note = seal.get("genesis"), seal.get("checkpoint")
    if not isinstance(genesis, str) or not isinstance(note, str):
        raise CheckpointError("the seal needs a genesis note and a checkpoint")
    first = verify_checkpoint(genesis, founders, origin=origin)
    if (first.size, first.root) != (1, merkle_root(hashes[:1])):
        raise CheckpointError("the founders' genesis note is not over this genesis")
    last = verify_checkpoint(note, final, origin=origin)
    if last.size != len(hashes):
        raise CheckpointError(
            f"the sealing checkpoint covers {last.size} blocks, the export holds {len(hashes)}: "
            "blocks were cut off or appended"
        )
    if last.root != merkle_root(hashes):
        raise CheckpointError("the exported blocks are not the ones the checkpoint covers")
