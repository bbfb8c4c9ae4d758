"""The worked example of docs/proofs.md, built from the example chain of docs/format.md."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sharechain.contracts import notary
from sharechain.crypto.disclosure import commit, disclose
from sharechain.crypto.keyfile import OrgKeys
from sharechain.crypto.sdjwt import disclosure_digest, encode_disclosure
from sharechain.ledger.bundles import build_bundle
from sharechain.ledger.chain import Ledger
from sharechain.ledger.checkpoints import (
    block_hashes,
    checkpoint_of,
    cosign,
    history_inclusion,
    origin_for,
    signed_checkpoint,
)
from sharechain.ledger.genesis import Genesis, genesis_block
from sharechain.ledger.identities import Organisation
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import SignedTransaction, sign_transaction

SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")


def example_chain() -> tuple[Store, OrgKeys, SignedTransaction]:
    """The example chain of docs/format.md section 10: genesis and one notary block."""
    keys = OrgKeys.from_secrets("hospital-a", SEED, bytes(range(32)))
    org = Organisation(
        "hospital-a", ("member", "admin"), keys.signing.public_key, keys.encryption_public
    )
    genesis = genesis_block(Genesis("example", (org,), {}, 1750000000000))
    store = Store(":memory:")
    ledger = Ledger(store, notary.registry())
    ledger.commit(genesis)
    stx = sign_transaction(
        keys.signing,
        notary.RECORD,
        "hospital-a",
        {"digest": hashlib.sha256(b"hello\n").digest(), "note": "greeting"},
        now=lambda: 1750000000.5,
        rng=lambda n: bytes(range(n)),
    )
    block, ex = ledger.build_block(
        [stx.raw], orderer="hospital-a", key=keys.signing, timestamp=1750000001000
    )
    ledger.commit(block, ex)
    return store, keys, stx


def example() -> dict[str, Any]:
    """Every value the worked example prints, by name."""
    store, keys, stx = example_chain()
    hashes = block_hashes(store)
    cp = checkpoint_of(hashes, origin_for(hashes[0]))
    note = signed_checkpoint(cp, [cosign(cp, "hospital-a", keys.signing)])
    bundle = build_bundle(store, stx.id, note)
    salts = iter((bytes([1]) * 16, bytes([2]) * 16))
    record = commit({"degree": "MSc", "name": "Ada"}, rng=lambda n: next(salts))
    shown = disclose(record, ["degree"])
    sd = encode_disclosure("_26bc4LT-ac6q2KI6cBW5es", "family_name", "Möbius")
    return {
        "history_root": cp.root.hex(),
        "history_path_1": history_inclusion(hashes, 1)[0].hex(),
        "checkpoint": note,
        "bundle": json.dumps(bundle, indent=1),
        "disclosure_degree": record.disclosures["degree"].hex(),
        "digest_degree": hashlib.sha256(record.disclosures["degree"]).hexdigest(),
        "disclosure_name": record.disclosures["name"].hex(),
        "hidden_name": shown.hidden[0].hex(),
        "fingerprint": record.fingerprint.hex(),
        "sd_disclosure": sd,
        "sd_digest": disclosure_digest(sd),
    }


if __name__ == "__main__":
    for k, v in example().items():
        print(f"== {k}\n{v}")
