"""Attack 2 (leftover): a rotation deletes a payload that a later version still names.

A new version of a dataset may keep its predecessor's payload (same ciphertext
digest, `contracts.digests`). Rotating the predecessor's key used to delete
the old epoch's blob everywhere (the owner's tools, and every node's upkeep
when it committed the new epoch), leaving the new version without its bytes.
Now a blob is deleted only when no other live dataset names it
(`contracts.digests.live_users`), on both planes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sharing"))

from plane_sides import ORGS, Side, remote_side, side

from sharechain.contracts.datasets import VERSION
from sharechain.sharing.records import Listing
from sharechain.storage.blobs import BlobStore
from sharechain.storage.datadir import DataDir

__all__ = ["remote_side", "side"]

OWNER = "hospital-a"


def _holds(side: Side, digest: bytes) -> dict[str, bool]:
    return {o.id: BlobStore(DataDir.open(side.dirs[o.id]).blob_dir).has(digest) for o in ORGS}


def test_rotating_a_predecessor_keeps_the_payload_its_new_version_names(
    side: Side, tmp_path: Path
) -> None:
    src = tmp_path / "records.bin"
    src.write_bytes(os.urandom(150_000))
    pub = side.plane(OWNER).publish(OWNER, src, Listing(title="records"))
    d = pub.digests
    body = {
        "dataset": pub.dataset,
        "plaintext_digest": d.plaintext_sha256,
        "ciphertext_digest": d.ciphertext_sha256,
        "size": d.size,
        "segment_root": d.segment_root,
        "description": "a new description, the same payload",
    }
    side.submit(OWNER, VERSION, body)
    side.settle()
    before = _holds(side, d.ciphertext_sha256)
    assert before[OWNER]  # (other nodes may not have fetched a replica of it)

    rotated = side.plane(OWNER).rotate(OWNER, pub.dataset)
    side.settle()
    assert rotated.epoch == 2
    assert _holds(side, d.ciphertext_sha256) == before


def test_a_payload_nobody_else_names_is_still_deleted(side: Side, tmp_path: Path) -> None:
    src = tmp_path / "records.bin"
    src.write_bytes(os.urandom(150_000))
    pub = side.plane(OWNER).publish(OWNER, src, Listing(title="records"))
    side.settle()
    side.plane(OWNER).rotate(OWNER, pub.dataset)
    side.settle()
    assert _holds(side, pub.digests.ciphertext_sha256) == {o.id: False for o in ORGS}
