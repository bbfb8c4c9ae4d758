"""The whole sharing story over HTTP on one node process per organisation and 3 etcd members.

Threshold custody (2 of hospital-b and the regulator); the owner's node is
stopped before the fetch, so the shares come from the holders' nodes and the
blob from a holder's replica; a revocation moves every node to a new key
epoch; the refused attempts carry the chain's codes; every node ends with the
same state root and a ledger that re-verifies from genesis.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from sharechain.demo import ORGS, run_network_story
from sharechain.demo_join import NEW_MEMBER


def test_sharing_story_over_http_on_a_node_per_member_and_three_etcd(tmp_path: Path) -> None:
    console = Console(record=True, width=120, force_terminal=False)
    story = run_network_story(tmp_path, console, rows=20_000)
    outcomes = story.outcomes
    assert outcomes["publish"] == "ok"
    assert outcomes["fetch"] == "ok"  # byte-identical, with the owner's node stopped
    assert story.released_by == ("hospital-b", "regulator")
    assert outcomes["intruder"].startswith("refused")
    assert story.refusal_codes["intruder"] == "wrong_grantee"
    assert outcomes["revoke"] == "ok"
    assert outcomes["fetch_after_revoke"].startswith("refused")
    assert story.refusal_codes["fetch_after_revoke"] == "revoked"
    assert outcomes["audit"].endswith("every proof verified")
    assert outcomes["verify"] == "ok"
    # The clinic admitted mid-story joined with `node start --join`, caught up (same head
    # and state root as every node) and asked for the data through its own node.
    assert outcomes["join"] == "ok" and outcomes["new_member_request"] == "valid"
    assert NEW_MEMBER in story.state_roots and NEW_MEMBER not in {o.id for o in ORGS}
    assert len(story.state_roots) == len(ORGS) + 1 == 7
    assert len(set(story.state_roots.values())) == 1
    # The network is down: no node answers any more.
    assert not any(story.net.is_running(n.org) for n in story.net.nodes)
    text = console.export_text()
    assert "shares released by" in text and "hospital-b, regulator" in text
    # Nothing of the insurer's refused attempts reached the disk.
    assert not (story.work / "stolen.csv").exists()
    assert not (story.work / "again.csv").exists()
