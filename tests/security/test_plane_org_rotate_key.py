"""Attack 8: after `org rotate-key`, vault entries wrapped to the old key stop releases.

An organisation rotates its keys (say, after a suspected leak). Its vault
entries were wrapped to its old X25519 key; unless they follow, the
organisation can no longer release, revoke or rotate. They are re-wrapped to
the new key (`storage.vault.rewrap`: by the command embedded, by the node when
it takes the new key file), end to end on both planes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sharing"))

from plane_sides import Side, remote_side, side

from sharechain.contracts.access import APPROVE, REQUEST
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import DecryptionError
from sharechain.sharing.records import Listing, derive_id
from sharechain.storage.vault import Vault, rewrap

__all__ = ["remote_side", "side"]

OWNER, GRANTEE = "hospital-b", "insurer"


def _grant(side: Side, ds: str) -> str:
    body = {"dataset": ds, "purpose": "research", "duration": 86_400_000}
    rid = derive_id("request", side.submit(GRANTEE, REQUEST, body).tx_id)
    side.submit(OWNER, APPROVE, {"request": rid})
    return derive_id("grant", side.submit("regulator", APPROVE, {"request": rid}).tx_id)


@pytest.mark.parametrize(("custody", "rotating"), [("owner", OWNER), ("supervisor", "regulator")])
def test_release_revoke_and_rotation_work_after_a_key_rotation(
    side: Side, tmp_path: Path, custody: str, rotating: str
) -> None:
    src = tmp_path / "records.bin"
    src.write_bytes(os.urandom(150_000))
    pub = side.plane(OWNER).publish(OWNER, src, Listing(title="records", custody=custody))
    side.sync()
    gid = _grant(side, pub.dataset)

    new = side.rotate_keys(rotating)  # the owner, or the custodian that releases

    out = tmp_path / "out"
    got = side.plane(GRANTEE).fetch(GRANTEE, gid, out)
    assert out.read_bytes() == src.read_bytes()
    assert [r.custodian for r in got.releases] == [rotating]
    # What the vault holds now opens with the new key only.
    vault = Vault(side.dirs[rotating], new)
    assert vault.get(pub.dataset, 1, "key")

    revoked = side.plane(OWNER).revoke(OWNER, gid, reason="key rotation test")
    assert revoked.rotated is not None and revoked.rotated.epoch == 2
    side.sync()
    rotated = side.plane(OWNER).rotate(OWNER, pub.dataset)
    assert rotated.epoch == 3
    side.sync()
    again = _grant(side, pub.dataset)
    side.plane(GRANTEE).fetch(GRANTEE, again, out)
    assert out.read_bytes() == src.read_bytes()


def test_rewrap_moves_entries_to_the_new_key_only_once(tmp_path: Path) -> None:
    old, new, other = OrgKeys.generate("a"), OrgKeys.generate("a"), OrgKeys.generate("b")
    Vault(tmp_path, old).put("ds", 1, "key", b"k" * 32)
    Vault(tmp_path, old).put("ds", 2, "share", b"s" * 33)
    assert rewrap(tmp_path, old, new) == 2
    assert rewrap(tmp_path, old, new) == 0  # idempotent: a cut-short run is finished later
    assert Vault(tmp_path, new).get("ds", 1, "key") == b"k" * 32
    with pytest.raises(DecryptionError):
        Vault(tmp_path, old).get("ds", 1, "key")
    with pytest.raises(ValueError, match="not one organisation"):
        rewrap(tmp_path, old, other)
