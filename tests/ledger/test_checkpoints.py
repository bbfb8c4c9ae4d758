"""Checkpoints: the history tree over block hashes, quorum cosigning in the C2SP
formats, and every way a checkpoint can fail to count."""

from __future__ import annotations

import base64

import pytest
from ledger_kit import Kit

from sharechain.crypto.merkle import merkle_root
from sharechain.crypto.signed_note import parse_note, verifier_key
from sharechain.crypto.signing import SigningKey
from sharechain.errors import NotFoundError
from sharechain.ledger.checkpoints import (
    Checkpoint,
    CheckpointError,
    Cosigner,
    HistoryTree,
    block_hashes,
    checkpoint_of,
    cosign,
    default_quorum,
    history_consistency,
    history_inclusion,
    key_name,
    origin_for,
    parse_checkpoint,
    roster_from_verifier_keys,
    roster_of,
    signed_checkpoint,
    store_roster,
    verifier_keys,
    verify_checkpoint,
    verify_history_inclusion,
)
from sharechain.ledger.identities import Organisation


def _grow(kit: Kit, blocks: int) -> list[bytes]:
    for i in range(blocks):
        kit.add([kit.record("hospital-a", f"file {i}".encode()).raw])
    return block_hashes(kit.store)


def _note(kit: Kit, cp: Checkpoint, *orgs: str) -> str:
    return signed_checkpoint(cp, [cosign(cp, o, kit.keys[o].signing) for o in orgs])


def test_history_tree_is_the_rfc_tree_over_block_hashes(kit: Kit) -> None:
    hashes = _grow(kit, 4)
    assert len(hashes) == 5 and hashes[0] == kit.genesis.hash()
    origin = origin_for(kit.genesis.hash())
    cp = checkpoint_of(hashes, origin)
    assert cp.size == 5 and cp.root == merkle_root(hashes)
    assert cp.text() == f"{origin}\n5\n{base64.b64encode(cp.root).decode()}\n"
    assert parse_checkpoint(cp.text()) == cp
    for h in range(5):
        verify_history_inclusion(hashes[h], h, cp, history_inclusion(hashes, h))
    with pytest.raises(CheckpointError, match="not in the checkpoint"):
        verify_history_inclusion(hashes[1], 2, cp, history_inclusion(hashes, 2))
    with pytest.raises(CheckpointError, match="not covered"):
        verify_history_inclusion(hashes[1], 5, cp, history_inclusion(hashes, 1))
    with pytest.raises(NotFoundError):
        block_hashes(kit.store, 6)


def test_quorum_checkpoint_verifies(kit: Kit) -> None:
    hashes = _grow(kit, 2)
    roster = store_roster(kit.store)
    assert roster.quorum == 2 == default_quorum(3)
    assert {c.org for c in roster.cosigners} == {"hospital-a", "hospital-b", "regulator"}
    cp = checkpoint_of(hashes, origin_for(hashes[0]))
    note = _note(kit, cp, "hospital-a", "regulator")
    assert verify_checkpoint(note, roster, origin=cp.origin) == cp
    names = [s.name for s in parse_note(note).signatures]
    pub = kit.keys["hospital-a"].signing.public_key
    assert names[0] == key_name("hospital-a", pub) and len(names[0].split("/")[1]) == 16


def test_too_few_duplicate_and_unknown_cosigners_are_refused(kit: Kit) -> None:
    hashes = _grow(kit, 1)
    roster = store_roster(kit.store)
    cp = checkpoint_of(hashes, origin_for(hashes[0]))
    with pytest.raises(CheckpointError, match="1 cosigners, the quorum is 2"):
        verify_checkpoint(_note(kit, cp, "hospital-b"), roster)
    with pytest.raises(CheckpointError, match="signed twice by hospital-b"):
        verify_checkpoint(_note(kit, cp, "hospital-b", "hospital-b"), roster)
    outsider = SigningKey.from_seed(bytes(range(32)))
    sigs = [cosign(cp, "hospital-a", kit.keys["hospital-a"].signing), cosign(cp, "x", outsider)]
    with pytest.raises(CheckpointError, match="unknown key x/"):
        verify_checkpoint(signed_checkpoint(cp, sigs), roster)
    # A member signing with a key that is not its current one: unknown name too.
    stale = cosign(cp, "hospital-b", outsider)
    with pytest.raises(CheckpointError, match="unknown key hospital-b/"):
        verify_checkpoint(signed_checkpoint(cp, [sigs[0], stale]), roster)


def test_tampered_checkpoints_are_refused(kit: Kit) -> None:
    hashes = _grow(kit, 1)
    roster = store_roster(kit.store)
    cp = checkpoint_of(hashes, origin_for(hashes[0]))
    note = _note(kit, cp, "hospital-a", "hospital-b")
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_checkpoint(note.replace("\n2\n", "\n3\n", 1), roster)
    with pytest.raises(CheckpointError, match="not of sharechain/00"):
        verify_checkpoint(note, roster, origin=origin_for(bytes(32)))


def test_governance_quorum(kit: Kit) -> None:
    orgs = [Organisation(o, ("member",), kit.keys[o].signing.public_key, b"") for o in kit.keys]
    roster = roster_of(orgs, {"checkpoint_quorum": 3})
    hashes = _grow(kit, 1)
    cp = checkpoint_of(hashes, "o")
    with pytest.raises(CheckpointError, match="quorum is 3"):
        verify_checkpoint(_note(kit, cp, "hospital-a", "hospital-b"), roster)
    verify_checkpoint(_note(kit, cp, "hospital-a", "hospital-b", "regulator"), roster)
    with pytest.raises(CheckpointError, match="exceeds"):
        roster_of(orgs, {"checkpoint_quorum": 4})
    with pytest.raises(CheckpointError, match="must be a count"):
        roster_of(orgs, {"checkpoint_quorum": "two"})
    removed = [Organisation("gone", ("member",), bytes(32), b"", status="removed")]
    with pytest.raises(CheckpointError, match="no active member"):
        roster_of(removed, {})
    assert Cosigner("a", bytes(32)).name == key_name("a", bytes(32))


def test_consistency_links_checkpoints(kit: Kit) -> None:
    hashes = _grow(kit, 6)
    roster = store_roster(kit.store)
    old = checkpoint_of(hashes[:3], origin_for(hashes[0]))
    new = checkpoint_of(hashes, old.origin)
    note = _note(kit, new, "hospital-a", "hospital-b")
    proof = history_consistency(hashes, 3)
    assert verify_checkpoint(note, roster, previous=old, proof=proof) == new
    with pytest.raises(CheckpointError, match="not consistent"):
        verify_checkpoint(note, roster, previous=old, proof=proof[:-1])
    forked = checkpoint_of([*hashes[:2], bytes(32)], old.origin)
    with pytest.raises(CheckpointError, match="not consistent"):
        verify_checkpoint(note, roster, previous=forked, proof=proof)
    smaller = _note(kit, old, "hospital-a", "hospital-b")
    with pytest.raises(CheckpointError, match="fewer than the 7"):
        verify_checkpoint(smaller, roster, previous=new, proof=[])
    other = Checkpoint("elsewhere", 3, old.root)
    with pytest.raises(CheckpointError, match="different consortia"):
        verify_checkpoint(note, roster, previous=other, proof=proof)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("o\n1\n", "origin, a tree size"),
        ("o\n1\nAAAA", "newline"),
        ("\n1\n" + "A" * 43 + "=\n", "origin is empty"),
        ("o\n01\n" + "A" * 43 + "=\n", "decimal"),
        ("o\n-1\n" + "A" * 43 + "=\n", "decimal"),
        ("o\n1\n" + "A" * 42 + "!=\n", "base64"),
        ("o\n1\nAAAA\n", "32-byte"),
        ("o\n1\n" + "A" * 43 + "=\n\n", "extension"),
    ],
)
def test_malformed_checkpoints_are_refused(text: str, reason: str) -> None:
    with pytest.raises(CheckpointError, match=reason):
        parse_checkpoint(text)


def test_extension_lines_are_kept() -> None:
    cp = Checkpoint("o", 1, bytes(32), ("ext one",))
    assert parse_checkpoint(cp.text()) == cp


def test_outsiders_verify_with_verifier_keys(kit: Kit) -> None:
    hashes = _grow(kit, 1)
    roster = store_roster(kit.store)
    vkeys = verifier_keys(roster)
    assert vkeys[0].startswith("hospital-a/") and vkeys[0].count("+") >= 2
    cp = checkpoint_of(hashes, origin_for(hashes[0]))
    note = _note(kit, cp, "hospital-a", "regulator")
    assert verify_checkpoint(note, roster_from_verifier_keys(vkeys)) == cp
    with pytest.raises(CheckpointError, match="quorum is 3"):
        verify_checkpoint(note, roster_from_verifier_keys(vkeys, 3))
    with pytest.raises(CheckpointError, match="one verifier key per member"):
        roster_from_verifier_keys([vkeys[0], vkeys[0]])
    with pytest.raises(CheckpointError, match="between 1 and 3"):
        roster_from_verifier_keys(vkeys, 4)
    renamed = verifier_key("bank/0000000000000000", kit.keys["hospital-a"].signing.public_key)
    with pytest.raises(CheckpointError, match="<org>/<key hash>"):
        roster_from_verifier_keys([renamed])


def test_history_tree_roots_are_merkle_roots_of_every_prefix() -> None:
    leaves = [bytes([i]) * 32 for i in range(70)]
    tree = HistoryTree()
    for n, leaf in enumerate(leaves, 1):
        tree.append(leaf)
        assert len(tree) == n
        # Every prefix, not only the whole: peers check checkpoints below their head.
        assert [tree.root(k) for k in range(1, n + 1)] == [
            merkle_root(leaves[:k]) for k in range(1, n + 1)
        ]
    assert tree.leaves(3) == leaves[:3]
    for bad in (0, 71):
        with pytest.raises(CheckpointError, match="the tree has 70 leaves"):
            tree.root(bad)


def test_history_tree_proofs_are_the_rfc_proofs_over_every_prefix() -> None:
    leaves = [bytes([i]) * 32 for i in range(70)]
    tree = HistoryTree()
    for leaf in leaves:
        tree.append(leaf)
    for new in range(1, 71):
        prefix = leaves[:new]
        for old in range(0, new + 1):
            assert tree.consistency(old, new) == history_consistency(prefix, old), (old, new)
        for height in range(new):
            assert tree.inclusion(height, new) == history_inclusion(prefix, height)
    for old, new in ((3, 2), (1, 71), (-1, 5)):
        with pytest.raises(CheckpointError, match="no proof from"):
            tree.consistency(old, new)
    for height, size in ((5, 5), (0, 71), (-1, 3)):
        with pytest.raises(CheckpointError, match="is not in the first"):
            tree.inclusion(height, size)


def test_block_hashes_name_the_first_block_the_store_lacks(kit: Kit) -> None:
    hashes = _grow(kit, 4)
    assert block_hashes(kit.store, 3) == hashes[:3]
    kit.store._db.execute("DELETE FROM blocks WHERE height=2")  # a damaged store
    with pytest.raises(NotFoundError, match="block 2 is missing"):
        block_hashes(kit.store)
    assert block_hashes(kit.store, 2) == hashes[:2]


def test_a_tree_reading_blocks_back_holds_a_hash_per_32_blocks_and_answers_alike() -> None:
    leaves = [bytes([i % 256, i // 256]) * 16 for i in range(300)]

    def source(lo: int, hi: int) -> list[bytes]:
        return leaves[lo:hi]

    lean, full = HistoryTree(source), HistoryTree()
    for n, leaf in enumerate(leaves, 1):
        lean.append(leaf)
        full.append(leaf)
        if n in (1, 63, 64, 65, 127, 128, 129, 200, 256, 300):
            assert [lean.root(k) for k in range(1, n + 1)] == [
                full.root(k) for k in range(1, n + 1)
            ]
    for new in (1, 64, 65, 100, 128, 255, 256, 257, 300):
        for old in (0, 1, 5, 63, 64, 65, 99, 128, new):
            if old <= new:
                assert lean.consistency(old, new) == full.consistency(old, new), (old, new)
        for height in {h for h in (0, 1, 63, 64, new // 2, new - 1) if h < new}:
            assert lean.inclusion(height, new) == full.inclusion(height, new), (height, new)
    assert lean.leaves(300) == full.leaves(300) == leaves
    # Four complete subtrees of 64 (and their parents), the 44 hashes of the tail.
    assert lean.stored() == 4 + 2 + 1 + 44 and full.stored() > 2 * 300
    broken = HistoryTree(lambda lo, hi: [])  # a store that lost its blocks
    for leaf in leaves[:130]:
        broken.append(leaf)
    assert broken.root(128) == full.root(128)  # stored nodes only
    with pytest.raises(CheckpointError, match="not all in the store"):
        broken.root(100)
