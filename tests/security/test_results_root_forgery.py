"""Attack on proof bundles: a member whose transaction the chain refused shows a partner
a bundle claiming it was applied (its code changed to `valid`, or another transaction's
result put beside it). The header's `results_root` commits to every transaction's
`[tx_id, code, reason]`, so each forgery is refused with the reason; the real bundle
proves the refusal. (A block whose `results_root` lies is refused by every peer:
`tests/ledger/test_chain.py::test_peer_rejects_lying_validation_codes`.)"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from security_kit import Net, consortium

from sharechain.contracts.bundle_objects import check_object
from sharechain.ledger.bundles import BundleError, build_bundle, verify_bundle
from sharechain.ledger.checkpoints import (
    block_hashes,
    checkpoint_of,
    cosign,
    origin_for,
    signed_checkpoint,
)


def _note(net: Net) -> str:
    hashes = block_hashes(net.store)
    cp = checkpoint_of(hashes, origin_for(hashes[0]))
    signers = ("hospital-a", "hospital-b", "regulator")
    return signed_checkpoint(cp, [cosign(cp, o, net.emb.keys(o).signing) for o in signers])


def test_a_refused_transaction_cannot_be_shown_as_applied(tmp_path: Path) -> None:
    with consortium(tmp_path) as net:
        digest = bytes(range(32))
        first = net.ok("hospital-a", "notary.record", {"digest": digest, "note": "original"})
        late = net.send("hospital-b", "notary.record", {"digest": digest, "note": "mine first"})
        assert late.code == "duplicate"
        note = _note(net)
        about = {"kind": "notarised-file", "digest": digest.hex()}
        honest = build_bundle(net.store, late.tx_id, note, about=about)
        proved = verify_bundle(honest)
        assert proved.subject.code == "duplicate"
        with pytest.raises(BundleError, match=r"refused by the chain \(duplicate\)"):
            check_object(proved, about)

        marked_valid = copy.deepcopy(honest)
        marked_valid["txs"][0].update(code="valid", reason="")
        with pytest.raises(BundleError, match="code 'valid' is not its result in block"):
            verify_bundle(marked_valid)

        # The original's result and audit path, moved beside the late transaction.
        original = build_bundle(net.store, first.tx_id, note)["txs"][0]
        borrowed = copy.deepcopy(honest)
        for k in ("code", "reason", "result_path"):
            borrowed["txs"][0][k] = original[k]
        with pytest.raises(BundleError, match="code 'valid' is not its result in block"):
            verify_bundle(borrowed)
