"""The REST API of one node: submit, receipts, blocks, proofs, health, metrics."""

from __future__ import annotations

import httpx
from node_helpers import Running

from sharechain.ledger.merkle import verify_inclusion
from sharechain.ledger.transactions import sign_transaction


def _record(running: Running, org: str, n: int) -> list[bytes]:
    key = running.consortium.keys(org).signing
    return [
        sign_transaction(
            key, "notary.record", org, {"digest": bytes([i % 256]) * 32, "note": str(i)}
        ).raw
        for i in range(n)
    ]


def test_submit_many_and_read_back_with_proof(orderer: Running) -> None:
    with orderer.client("bank-b") as client:
        raws = _record(orderer, "bank-b", 50)
        receipts = client.submit(raws)
        assert [r.code for r in receipts] == ["valid"] * 50
        assert receipts[0].height >= 1
        info = client.tx(receipts[3].tx_id)
        assert info["code"] == "valid" and info["sender"] == "bank-b"
        proof = client.proof(receipts[3].tx_id)
        verify_inclusion(
            bytes.fromhex(proof["tx_id"]),
            proof["leaf_index"],
            proof["tree_size"],
            [bytes.fromhex(p) for p in proof["audit_path"]],
            bytes.fromhex(proof["tx_root"]),
        )
        block = client.block(receipts[0].height)
        assert block["tx_count"] >= 1
        assert receipts[0].tx_id.hex() in {t["tx_id"] for t in block["txs"]}
        heads = client.blocks(0, 10)
        assert heads[0]["height"] == 0 and heads[0]["orderer"] == ""
        # A resubmission is answered from the chain, not ordered again.
        again = client.submit(raws[:1])
        assert again[0].height == receipts[0].height and again[0].index == receipts[0].index


def test_health_ready_metrics_need_no_signature(orderer: Running) -> None:
    with httpx.Client(base_url=orderer.url) as http:
        assert http.get("/v1/health").json()["status"] == "ok"
        ready = http.get("/v1/ready")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        with orderer.client() as client:
            client.submit(_record(orderer, "hospital-a", 3))
        text = http.get("/metrics").text
        assert "sharechain_block_height 1.0" in text
        assert 'sharechain_transactions_total{code="valid"} 3.0' in text
        assert http.get("/openapi.json").json()["info"]["title"] == "sharechain node"


def test_bad_input_is_a_client_error(orderer: Running) -> None:
    with orderer.client() as client:
        http = client._http
        assert http.post("/v1/txs", json={"txs": ["zz"]}).status_code == 400
        assert http.post("/v1/txs", json={"txs": ["a0"]}).status_code == 400
        assert http.post("/v1/txs", json={"nope": 1}).status_code == 422
        assert http.post("/v1/txs", content=b"{not json").status_code == 422
        assert http.get("/v1/txs/xyz").status_code == 400
        assert http.get("/v1/txs/" + "00" * 32).status_code == 404
        assert http.get("/v1/blocks/99").status_code == 404
        assert http.get("/v1/blocks", params={"limit": 0}).status_code == 422
