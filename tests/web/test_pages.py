"""The pages: what they show, that member text stays text, that proofs are checked."""

from __future__ import annotations

import html
import re

import pytest
from web_kit import XSS, Chain, login
from web_testclient import TestClient

from sharechain.contracts import derive_id
from sharechain.web import describe


def test_a_hostile_title_renders_as_text_everywhere(chain: Chain, client: TestClient) -> None:
    ds = chain.register(XSS, tags=["<b>tag</b>"], description="<script>alert(2)</script>")
    rid = chain.request(ds)
    login(client, "vera")
    for path in ("/ui/datasets", f"/ui/datasets/{ds}", "/ui/inbox"):
        text = client.get(path).text
        assert XSS not in text and "<script>alert" not in text and "<b>tag</b>" not in text
        assert html.escape(XSS, quote=False) in text.replace("&#34;", '"').replace("&#39;", "'")
    assert rid[:12] in client.get("/ui/inbox").text


def test_catalogue_filters_and_the_htmx_fragment(chain: Chain, client: TestClient) -> None:
    a = chain.register("Ward admissions", tags=["ward"])
    chain.register("Bank blacklist", owner="bank-b", tags=["fraud"])
    login(client, "vera")
    page = client.get("/ui/datasets").text
    assert "Ward admissions" in page and "Bank blacklist" in page and "2 dataset(s)" in page
    assert "Bank blacklist" not in client.get("/ui/datasets?owner=hospital-a").text
    assert "Ward admissions" not in client.get("/ui/datasets?tag=fraud").text
    found = client.get("/ui/datasets?text=admis").text
    assert "Ward admissions" in found and "1 dataset(s)" in found
    assert "Ward admissions" not in client.get("/ui/datasets?status=retired").text
    fragment = client.get("/ui/datasets?text=ward", headers={"HX-Request": "true"}).text
    assert fragment.lstrip().startswith('<section id="results"') and "<html" not in fragment
    assert f"/ui/datasets/{a}" in fragment


def test_transaction_page_decodes_and_verifies_its_proof(chain: Chain, client: TestClient) -> None:
    ds = chain.register("Labs")
    tx = chain.send("bank-b", "access.request", {"dataset": ds, "purpose": "x", "duration": 5})
    login(client, "vera")
    page = client.get(f"/ui/txs/{tx.tx_id.hex()}").text
    assert "access.request" in page and "bank-b" in page and ">purpose<" in page
    assert "verified" in page and "does not verify" not in page
    block = client.get(f"/ui/blocks/{tx.height}").text
    assert tx.tx_id.hex()[:16] in block
    # Search: a height goes to its block, an id to its transaction, anything else is refused.
    r = client.get(f"/ui/blocks?find={tx.tx_id.hex()}")
    assert r.url.path == f"/ui/txs/{tx.tx_id.hex()}"
    assert client.get(f"/ui/blocks?find={tx.height}").url.path == f"/ui/blocks/{tx.height}"
    bad = client.get("/ui/blocks?find=<x>")
    assert bad.status_code == 400 and "<x>" not in bad.text


def test_refused_validation_codes_show_with_their_reason(chain: Chain, client: TestClient) -> None:
    ds = chain.register("Labs")
    from web_kit import GRANTEE

    from sharechain.ledger.transactions import sign_transaction
    from sharechain.storage.datadir import DataDir

    keys = DataDir.open(chain.source).keys(GRANTEE)
    stx = sign_transaction(keys.signing, "access.request", GRANTEE, {"dataset": ds})
    (future,) = chain.node.submit([stx.raw])
    assert future.result(timeout=20).code == "bad_payload"
    login(client, "vera")
    page = client.get(f"/ui/txs/{stx.id.hex()}").text
    assert "bad_payload" in page and "verified" in page


def test_unknown_records_are_404_pages(client: TestClient) -> None:
    login(client, "vera")
    for path in ("/ui/datasets/abcdef", "/ui/txs/" + "00" * 32, "/ui/blocks/999"):
        r = client.get(path)
        assert r.status_code == 404 and "Not found" in r.text, path
    assert client.get("/ui/txs/zz").status_code == 400


def test_dataset_page_lineage_policy_and_trail(chain: Chain, client: TestClient) -> None:
    ds = chain.register("Labs 2025")
    v2 = derive_id(
        "dataset",
        chain.send(
            "hospital-a",
            "dataset.version",
            {
                "dataset": ds,
                "title": "Labs 2025 v2",
                "plaintext_digest": b"\x01" * 32,
                "ciphertext_digest": b"\x02" * 32,
                "size": 10,
                "segment_root": b"\x03" * 32,
            },
        ).tx_id,
    )
    chain.request(v2)
    login(client, "vera")
    page = client.get(f"/ui/datasets/{v2}").text
    assert "<svg" in page and f"/ui/datasets/{ds}" in page and "stroke-dasharray" in page
    assert "The owner and one supervisor must both approve." in page
    assert "access.request" in page and "dataset.version" in page and "timeline of" in page


def test_a_member_does_not_see_another_owners_trail(chain: Chain, client: TestClient) -> None:
    ds = chain.register("Blacklist", owner="bank-b")
    chain.request(ds, org="regulator")
    login(client, "vera")
    page = client.get(f"/ui/datasets/{ds}").text
    assert "Only the owner (bank-b) and supervisors read" in page
    assert "access.request" not in page


def test_overview_and_organisation(chain: Chain, client: TestClient) -> None:
    chain.register()
    login(client, "adam")
    page = client.get("/ui/").text
    for text in ("Consortium test", "regulator", "supervisor", "Recent blocks", "<svg"):
        assert text in page
    org = client.get("/ui/org").text
    assert "Key epochs" in org and "Key since block" in org and "Operators of this node" in org
    assert "anna" in org and "approver" in org


def test_a_long_trail_shows_its_newest_entries_and_pages_back_to_its_start(
    chain: Chain, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(describe, "TRAIL_LIMIT", 3)  # a page of 3 entries
    ds = chain.register("Labs")
    requests = [chain.request(ds) for _ in range(7)]
    login(client, "vera")
    shown: list[list[str]] = []
    url = f"/ui/datasets/{ds}"
    for _ in range(4):
        page = client.get(url).text
        items = re.findall(
            r'<li class="kind-[a-z]+">.*?<strong>([a-z.]+)</strong>.*?/txs/([0-9a-f]{64})', page
        )
        shown.append([f"{kind} {tx}" for kind, tx in items])
        older = re.search(r'class="older" href="\?trail_before=(\d+\.\d+)"', page)
        if older is None:
            break
        url = f"/ui/datasets/{ds}?trail_before={older.group(1)}"
    # Newest first, 3 a page: the 7 requests, then the registration, and nothing twice.
    assert [len(p) for p in shown] == [3, 3, 2]
    kinds = [e.split()[0] for p in shown for e in p]
    assert kinds == ["access.request"] * 7 + ["dataset.register"]
    ids = [e.split()[1] for p in shown for e in p]
    assert len(set(ids)) == 8
    expected = [derive_id("request", bytes.fromhex(t)) for t in ids[:7]]
    assert expected == requests[::-1]
    # An older page links back to the newest; the newest links to none.
    assert "Newest entries" in client.get(url).text
    assert "Newest entries" not in client.get(f"/ui/datasets/{ds}").text
    bad = client.get(f"/ui/datasets/{ds}?trail_before=12;drop")
    assert bad.status_code == 400 and "give height.index" in bad.text
