"""The export seal: an export cut short, extended, or with a genesis the founders
did not sign fails; a complete one verifies."""

from __future__ import annotations

import pytest
from ledger_kit import Kit

from sharechain.crypto.signing import SigningKey
from sharechain.ledger.checkpoints import (
    CheckpointError,
    block_hashes,
    checkpoint_of,
    cosign,
    origin_for,
    signed_checkpoint,
    store_roster,
)
from sharechain.ledger.export_seal import (
    SEAL_TYPE,
    founders_roster,
    genesis_note,
    seal_line,
    sealed_with,
    verify_seal,
)
from sharechain.ledger.transactions import decode_transaction


def _sealed(kit: Kit) -> tuple[dict[str, object], list[bytes]]:
    for i in range(3):
        kit.add([kit.record("hospital-a", f"f{i}".encode()).raw])
    signers = {o: k.signing for o, k in kit.keys.items()}
    hashes = block_hashes(kit.store)
    seal = seal_line(kit.store, signers, genesis_note(hashes[0], signers))
    return seal, hashes


def test_complete_export_verifies(kit: Kit) -> None:
    seal, hashes = _sealed(kit)
    roster = store_roster(kit.store)
    assert seal["type"] == SEAL_TYPE
    genesis = decode_transaction(kit.genesis.txs[0]).tx.payload
    founders = founders_roster(genesis)
    assert founders == roster
    verify_seal(seal, hashes, founders, roster)
    with pytest.raises(CheckpointError, match="lacks its organisations"):
        founders_roster({"organisations": []})


def test_cut_short_or_extended_exports_fail(kit: Kit) -> None:
    seal, hashes = _sealed(kit)
    roster = store_roster(kit.store)
    with pytest.raises(CheckpointError, match="covers 4 blocks, the export holds 3"):
        verify_seal(seal, hashes[:-1], roster, roster)
    with pytest.raises(CheckpointError, match="seal line"):
        verify_seal({}, hashes[:-1], roster, roster)
    extra = [*hashes, bytes(32)]
    with pytest.raises(CheckpointError, match="covers 4 blocks, the export holds 5"):
        verify_seal(seal, extra, roster, roster)
    # One member re-seals its extended export alone: not a quorum.
    cp = checkpoint_of(extra, origin_for(extra[0]))
    alone = signed_checkpoint(cp, [cosign(cp, "hospital-a", kit.keys["hospital-a"].signing)])
    with pytest.raises(CheckpointError, match="quorum is 2"):
        verify_seal(dict(seal, checkpoint=alone), extra, roster, roster)
    swapped = [*hashes[:-1], bytes(32)]
    with pytest.raises(CheckpointError, match="not the ones"):
        verify_seal(seal, swapped, roster, roster)


def test_genesis_must_be_signed_by_the_founders(kit: Kit) -> None:
    seal, hashes = _sealed(kit)
    roster = store_roster(kit.store)
    one = genesis_note(hashes[0], {"hospital-a": kit.keys["hospital-a"].signing})
    with pytest.raises(CheckpointError, match="quorum is 2"):
        verify_seal(dict(seal, genesis=one), hashes, roster, roster)
    outsider = SigningKey.from_seed(bytes(32))
    forged = genesis_note(hashes[0], {"hospital-a": outsider, "hospital-b": outsider})
    with pytest.raises(CheckpointError, match="unknown key"):
        verify_seal(dict(seal, genesis=forged), hashes, roster, roster)
    signers = {o: k.signing for o, k in kit.keys.items()}
    other = genesis_note(hashes[1], signers)
    with pytest.raises(CheckpointError, match="is of sharechain/"):
        verify_seal(dict(seal, genesis=other), hashes, roster, roster)
    with pytest.raises(CheckpointError, match="needs a genesis note"):
        verify_seal(dict(seal, genesis=None), hashes, roster, roster)


def test_sealing_needs_a_quorum_of_held_keys(kit: Kit) -> None:
    hashes = block_hashes(kit.store)
    one = {"regulator": kit.keys["regulator"].signing}
    with pytest.raises(CheckpointError, match=r"held here \(regulator\) are not a quorum \(2 of 3"):
        seal_line(kit.store, one, genesis_note(hashes[0], one))
    # Keys of non-members are left out rather than spoil the checkpoint.
    outsider = {
        **{o: k.signing for o, k in kit.keys.items()},
        "lab-x": SigningKey.from_seed(bytes(32)),
    }
    genesis = genesis_note(hashes[0], {o: k.signing for o, k in kit.keys.items()})
    seal = seal_line(kit.store, outsider, genesis)
    assert "lab-x" not in seal["checkpoint"] and seal["checkpoint"].count("\u2014") == 3


def test_sealed_with_checks_the_checkpoint_against_the_store(kit: Kit) -> None:
    kit.add([kit.record("hospital-a", b"x").raw])
    signers = {o: k.signing for o, k in kit.keys.items()}
    hashes = block_hashes(kit.store)
    genesis = genesis_note(hashes[0], signers)
    short = checkpoint_of(hashes[:1], origin_for(hashes[0]))
    note = signed_checkpoint(short, [cosign(short, o, k) for o, k in sorted(signers.items())])
    with pytest.raises(CheckpointError, match="covers 1 blocks, the export holds 2"):
        sealed_with(kit.store, note, genesis)
    full = seal_line(kit.store, signers, genesis)
    assert sealed_with(kit.store, full["checkpoint"], genesis) == full
