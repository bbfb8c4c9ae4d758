"""The masking job finds a block's masked grants from its transaction ids alone.

A grant's id derives from the transaction that issued it, so the job reads
the grants a block can have issued in one query (`MaskingJob._issued`): the
block that issued a masked grant on the node's own dataset names it; the
other blocks, an unmasked grant and another organisation's view name nothing.
While the chain holds no masking profile, no block needs a look at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from node_helpers import Running

from sharechain.contracts import PROFILE_REGISTER, derive_id
from sharechain.contracts.access import APPROVE, REQUEST
from sharechain.ledger.store import Store
from sharechain.node.service import Node
from sharechain.privacy.profiles import parse_profile, profile_digest, profile_form
from sharechain.sharing.delivery import blobs_of, vault_of
from sharechain.sharing.masking_job import MaskingJob
from sharechain.sharing.plane import Plane
from sharechain.sharing.records import Listing
from sharechain.storage.datadir import DataDir

PROFILE = parse_profile(
    """\
k: 2
quasi_identifiers: [age]
columns:
  name: drop
  age: {rule: generalise, width: 10}
"""
)


class _AsOther:
    """The same node's chain, seen as another organisation (whose datasets these are not)."""

    def __init__(self, node: Node, org: str) -> None:
        self.node = node
        self.org = org
        self.store: Store = node.store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.node, name)


def _publish(plane: Plane, tmp_path: Path, name: str, policy: dict[str, Any] | None) -> str:
    src = tmp_path / f"{name}.csv"
    src.write_text("name,age\n" + "".join(f"P{i},{30 + i}\n" for i in range(8)))
    listing = Listing(title=name, classification="confidential", policy=policy)
    return plane.publish("hospital-a", src, listing, inline_limit=0).dataset


def test_the_issuing_block_names_the_masked_grant_and_no_other_does(
    orderer: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = orderer.node
    monkeypatch.setattr(MaskingJob, "produce", lambda self, gid: None)  # keep it waiting
    planes = {
        org: Plane.connect(orderer.url, key=DataDir.open(orderer.consortium.source).key_path(org))
        for org in ("hospital-a", "bank-b", "regulator")
    }
    early = MaskingJob(node, lambda: vault_of(node), blobs_of(node), os.urandom)
    assert not early._any_profile()  # no profile, no masked grant: blocks need no look
    try:
        planes["hospital-a"].submit(
            "hospital-a", PROFILE_REGISTER, {"name": "ages", "profile": profile_form(PROFILE)}
        )
        policy = {"masking": {"confidential": profile_digest(PROFILE).hex()}}
        masked_ds = _publish(planes["hospital-a"], tmp_path, "masked", policy)
        plain_ds = _publish(planes["hospital-a"], tmp_path, "plain", None)
        masked_gid, masked_at = _grant_via(planes, masked_ds)
        plain_gid, plain_at = _grant_via(planes, plain_ds)
    finally:
        for plane in planes.values():
            plane.close()
    assert early._any_profile()
    job = MaskingJob(node, lambda: vault_of(node), blobs_of(node), os.urandom)
    issued = {h: job._issued(h) for h in range(node.ledger.height + 1)}
    assert issued[masked_at] == [masked_gid]
    assert [h for h, found in issued.items() if found] == [masked_at]
    assert plain_gid not in issued[plain_at] and job.waiting() == [masked_gid]
    other = MaskingJob(_AsOther(node, "bank-b"), lambda: vault_of(node), blobs_of(node), os.urandom)
    assert other._issued(masked_at) == []


def _grant_via(planes: dict[str, Plane], ds: str) -> tuple[str, int]:
    body = {"dataset": ds, "purpose": "research", "duration": 86_400_000}
    rid = derive_id("request", planes["bank-b"].submit("bank-b", REQUEST, body).tx_id)
    planes["hospital-a"].submit("hospital-a", APPROVE, {"request": rid})
    receipt = planes["regulator"].submit("regulator", APPROVE, {"request": rid})
    return derive_id("grant", receipt.tx_id), receipt.height
