"""The privacy and checkpoint pages: sessions and their timelines, masked releases, budgets,
the quorum checkpoint and a consistency proof checked in the page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_kit import GRANTEE, ORGS, OWNER, PASSWORD, SUPERVISOR, Chain, digest, login, node_dir
from web_testclient import TestClient

from sharechain.contracts import derive_id
from sharechain.node.app import create_app
from sharechain.node.service import Node, NodeConfig
from sharechain.privacy.profiles import parse_profile, profile_digest, profile_form
from sharechain.storage.datadir import init_consortium
from sharechain.web import mount
from sharechain.web.guard import CSP


def _psi(chain: Chain, proposer: str = OWNER, other: str = GRANTEE) -> str:
    payload = {
        "kind": "psi",
        "parties": [proposer, other],
        "purpose": "blacklist match",
        "max_set_size": 100,
        "duration": 3_600_000,
    }
    return derive_id("computation", chain.send(proposer, "computation.propose", payload).tx_id)


def test_a_psi_session_from_list_to_timeline(chain: Chain, client: TestClient) -> None:
    sid = _psi(chain)
    chain.send(GRANTEE, "computation.accept", {"session": sid})
    chain.send(SUPERVISOR, "computation.approve", {"session": sid})
    for org, size in ((OWNER, 10), (GRANTEE, 20)):
        body = {"session": sid, "digest": digest(f"in {org}"), "size": size}
        chain.send(org, "computation.commit", body)
    chain.send(OWNER, "computation.result", {"session": sid, "intersection_size": 3})
    chain.send(GRANTEE, "computation.receipt", {"session": sid})
    # A session hospital-a is no party to: not listed, and its page is refused.
    theirs = _psi(chain, GRANTEE, SUPERVISOR)
    login(client, "vera")
    page = client.get("/ui/privacy").text
    row = re.search(rf'<tr id="session-{sid}">.*?</tr>', page, re.S)
    assert row is not None, page
    for text in ("PSI", "hospital-a, bank-b", "blacklist match", "client&#39;s set at most 100",
                 "by regulator", "done", "2 of 2", "intersection of 3", "bank-b"):  # fmt: skip
        assert text in row.group(0), text
    assert theirs not in page and "1 private set intersection" in page
    refused = client.get(f"/ui/privacy/sessions/{theirs}")
    assert refused.status_code == 403 and "only its parties and supervisors" in refused.text
    answer = client.get(f"/ui/privacy/sessions/{sid[:12]}")
    assert answer.headers["content-security-policy"] == CSP
    one = answer.text
    assert not re.search(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", one)
    for text in ("Private set intersection", "hospital-a (client)", "20 committed", "acknowledged",
                 "computation.propose", "computation.result", "timeline of 7 event(s)",
                 "computation.approve</strong> by regulator"):  # fmt: skip
        assert text in one, text
    assert client.get("/ui/privacy/sessions/" + "ab" * 32).status_code == 404


PROFILE = parse_profile(
    """\
k: 2
quasi_identifiers: [glucose]
columns:
  patient_id: {rule: tokenize}
  glucose: {rule: generalise, width: 10}
  salary: {rule: noise, epsilon: 0.5, sensitivity: 1000}
"""
)


def test_the_dataset_page_shows_masked_releases_and_budgets(
    chain: Chain, client: TestClient
) -> None:
    chain.send(OWNER, "profile.register", {"name": "lab", "profile": profile_form(PROFILE)})
    masking = profile_digest(PROFILE).hex()
    ds = chain.register(policy={"masking": {"confidential": masking}, "privacy_budget": "2"})
    rid = chain.request(ds)
    chain.send(OWNER, "access.approve", {"request": rid})
    gid = derive_id("grant", chain.send(SUPERVISOR, "access.approve", {"request": rid}).tx_id)
    transform = {
        "grant": gid,
        "profile": profile_digest(PROFILE),
        "source_digest": digest("plain Blood tests 2025"),
        "plaintext_digest": digest("masked"),
        "ciphertext_digest": digest("masked cipher"),
        "segment_root": digest("masked root"),
        "size": 100,
        "k": 3,
        "l": 0,
        "suppressed": 1,
        "rows": 9,
        "epsilon": "1/2",
    }
    chain.send(OWNER, "dataset.transform", transform)
    login(client, "vera")
    page = client.get(f"/ui/datasets/{ds}").text
    releases = page.split('<table class="releases">')[1].split("</table>")[0]
    for text in (gid[:12], masking[:16], "<td>3</td>", "<td>9</td>", "1/2"):
        assert text in releases, text
    budgets = page.split('<table class="budgets">')[1].split("</table>")[0]
    assert "epsilon 2 per grantee" in budgets
    assert "<td>bank-b</td><td>1/2</td><td>3/2</td>" in budgets
    # The masked version's own page says what it is.
    masked = re.search(r'href="/ui/datasets/([0-9a-f]{64})"><code class="id">', releases)
    assert masked is not None
    assert "the masked version made for grant" in client.get(f"/ui/datasets/{masked[1]}").text


def test_checkpoints_without_a_quorum_still_prove_consistency(
    chain: Chain, client: TestClient
) -> None:
    chain.register()
    login(client, "vera")
    page = client.get("/ui/checkpoints").text
    # One node of three: its peers are not configured, so no quorum of 2 cosigns.
    assert "No quorum checkpoint" in page and "the quorum is 2 of 3" in page
    assert 'id="consistency-verdict">verified' in page
    assert "Checkpoints" in client.get("/ui/").text
    bad = client.get("/ui/checkpoints?old=3&new=2")
    assert bad.status_code == 400 and "must not exceed" in bad.text
    assert client.get("/ui/checkpoints?new=9999").status_code == 404


@pytest.fixture
def alone(tmp_path: Path) -> Iterator[tuple[Chain, TestClient]]:
    """A consortium whose checkpoints need one cosigner: hospital-a's node makes them alone."""
    source = tmp_path / "consortium"
    init_consortium(source, ORGS, consortium="test", governance={"checkpoint_quorum": 1})
    node = Node(NodeConfig(data_dir=node_dir(source, tmp_path, OWNER), org=OWNER, max_wait=0.005))
    node.start()
    try:
        app = create_app(node, (mount,))
        app.state.console.accounts.add("vera", "viewer", PASSWORD)
        with TestClient(app) as client:
            yield Chain(source, node), client
    finally:
        node.stop()


def test_the_latest_quorum_checkpoint_and_a_consistency_proof(
    alone: tuple[Chain, TestClient],
) -> None:
    chain, client = alone
    for i in range(5):
        chain.send(OWNER, "notary.record", {"digest": digest(f"n{i}"), "note": ""})
    login(client, "vera")
    page = client.get("/ui/checkpoints").text
    size = chain.node.ledger.height + 1
    assert f"<td>{size} block(s) (heights 0 to {size - 1})</td>" in page, page
    assert "1 of 3, quorum 1: verified" in page
    assert '<pre class="note">sharechain/' in page and "\u2014 hospital-a/" in page
    assert re.search(r"<td>hospital-a</td>.*?<span class=\"ok\">yes</span>", page, re.S)
    assert "the cosigned root" in page and 'id="consistency-verdict">verified' in page
    other: Any = client.get(f"/ui/checkpoints?old=2&new={size - 1}").text
    assert 'id="consistency-verdict">verified' in other and "the cosigned root" not in other
    assert "proof 0" in other
    assert f"latest quorum checkpoint covers {size} block(s)" in client.get("/ui/").text
