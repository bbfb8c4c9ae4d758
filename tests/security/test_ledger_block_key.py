"""Whoever assembles a block signs it with its organisation's current key, or builds nothing.

Attack: an organisation restores a rotated-out key file (from a backup) and
orders a block with it. Its transaction is refused (`stale_key`), but a block
signed by the old key would poison the store: `chain verify` rejects it and
`chain export` refuses the whole chain. The block builder checks its own key
against the state at the block's height before anything is written.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from sharechain.contracts import default_registry, membership, notary
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import ConfigError
from sharechain.ledger.chain import verify_chain
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import OrgSpec, init_consortium

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)


def _rotate(emb: Embedded, org: str) -> None:
    new = OrgKeys.generate(org)
    msg = membership.rotation_message(org, new.signing.public_key, new.encryption_public)
    payload = {
        "sign_key": new.signing.public_key,
        "enc_key": new.encryption_public,
        "proof": new.signing.sign(membership.ROTATE_DOMAIN, msg),
    }
    emb.submit(org, membership.ROTATE, payload)
    emb.datadir.save_keys(new)


def test_a_restored_old_key_file_orders_no_block(tmp_path: Path) -> None:
    path = tmp_path / "c"
    init_consortium(path, ORGS, consortium="test")
    key_file = path / "keys" / "hospital-a.key"
    shutil.copy(key_file, tmp_path / "backup.key")
    with Embedded(path) as emb:
        _rotate(emb, "hospital-a")
    shutil.copy(tmp_path / "backup.key", key_file)  # the old key is back

    with Embedded(path) as emb:
        before = emb.store.head()
        digest = hashlib.sha256(b"a file").digest()
        with pytest.raises(ConfigError, match="current key") as caught:
            emb.submit("hospital-a", notary.RECORD, {"digest": digest})
        assert "hospital-a" in str(caught.value)
        assert emb.store.head() == before  # nothing was written
        report = verify_chain(emb.store, default_registry(), genesis_hash=emb.datadir.genesis_hash)
        assert report.ok, report.reason


def test_an_unknown_orderer_builds_no_block(tmp_path: Path) -> None:
    from sharechain.ledger.chain import Ledger
    from sharechain.ledger.store import Store

    path = tmp_path / "c"
    init_consortium(path, ORGS, consortium="test")
    with Embedded(path) as emb:
        keys = emb.keys("hospital-a")
        ledger = Ledger(Store(emb.datadir.db_path), default_registry())
        with pytest.raises(ConfigError, match="no active organisation 'nobody'"):
            ledger.build_block([], orderer="nobody", key=keys.signing, timestamp=1)
        ledger.store.close()
