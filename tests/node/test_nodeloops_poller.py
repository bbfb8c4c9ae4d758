"""The peer poller hands each attestation to the book once, not at every poll.

A peer's status repeats its latest attestations poll after poll; the poller
parses and checks only those it did not hand over in the last poll under the
same key (`vouching.receive_attestations`). What the book concludes
stays the same: a lie is one conflict however often it is served, a forgery
(a field changed, the signature kept) is checked and ignored, and another
organisation's attestation is not taken from this peer.
"""

from __future__ import annotations

from node_helpers import Running, committed_and_a_lie

from sharechain.ledger.attestations import sign_attestation
from sharechain.node.vouching import receive_attestations


def test_a_served_attestation_is_handed_once_and_the_verdicts_stay(orderer: Running) -> None:
    head, bank, lie_head = committed_and_a_lie(orderer)
    node = orderer.node
    lie = sign_attestation("bank-b", bank, lie_head)
    served = [lie.to_json()]

    known = receive_attestations(node, "bank-b", served, set())
    assert len(known) == 1 and len(node.book.conflicts) == 1
    for _ in range(3):  # poll after poll
        assert receive_attestations(node, "bank-b", served, known) == known
    assert len(node.book.conflicts) == 1

    forged = {**lie.to_json(), "state_root": (b"\x03" * 32).hex()}  # the signature kept
    again = receive_attestations(node, "bank-b", [*served, forged], known)
    assert len(again) == 2 and len(node.book.conflicts) == 1  # checked, refused
    honest = sign_attestation("bank-b", bank, head)
    receive_attestations(node, "bank-b", [honest.to_json()], again)
    assert [(p.org, p.height, p.agrees) for p in node.book.peers()] == [
        ("bank-b", head.height, False)
    ]

    # Another organisation's attestation served by this peer: not taken, not remembered.
    theirs = sign_attestation("regulator", orderer.consortium.keys("regulator").signing, head)
    assert receive_attestations(node, "bank-b", [theirs.to_json()], set()) == set()
    assert receive_attestations(node, "bank-b", "not a list", set()) == set()
