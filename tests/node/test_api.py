"""The REST API of one node: submit, receipts, blocks, proofs, health, metrics."""

from __future__ import annotations

import hashlib
import json
import time

import httpx
import pytest
from node_helpers import Running

from sharechain.api.client import NodeClient
from sharechain.codec import decode, encode
from sharechain.crypto.merkle import verify_inclusion
from sharechain.crypto.signing import SigningKey
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.upkeep import Upkeep
from sharechain.storage.uploads import Uploads


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


def test_answers_on_a_kept_alive_connection_do_not_wait_for_a_delayed_ack(
    orderer: Running,
) -> None:
    # An answer is written in two parts (headers, then body). With Nagle's algorithm on,
    # the body waited for the client's acknowledgement of the headers, which Linux
    # delays by at least 40 ms: every request after a connection's first took 42 ms.
    with httpx.Client(base_url=orderer.url) as http:
        http.get("/v1/health")  # the connection's first answer is acknowledged at once
        took = []
        for _ in range(15):
            start = time.perf_counter()
            assert http.get("/v1/health").status_code == 200
            took.append(time.perf_counter() - start)
    assert sorted(took)[len(took) // 2] < 0.030


def test_bad_input_is_a_client_error(orderer: Running) -> None:
    with orderer.client() as client:
        http = client._http
        assert http.post("/v1/txs", json={"txs": ["zz"]}).status_code == 400
        assert http.post("/v1/txs", json={"txs": ["a0"]}).status_code == 400
        assert http.post("/v1/txs", json={"nope": 1}).status_code == 422
        assert http.post("/v1/txs", content=b"{not json").status_code == 422
        assert http.post("/v1/txs", json={"txs": ["00"], "timeout": -1}).status_code == 422
        assert http.get("/v1/txs/xyz").status_code == 400
        assert http.get("/v1/txs/" + "00" * 32).status_code == 404
        assert http.get("/v1/blocks/99").status_code == 404
        assert http.get("/v1/blocks", params={"limit": 0}).status_code == 422


# -- POST /v1/txs in CBOR --------------------------------------------------------

CBOR = {"Content-Type": "application/cbor", "Accept": "application/cbor"}


def test_client_submits_in_cbor_and_reads_cbor_receipts(orderer: Running) -> None:
    sent: list[str] = []
    with orderer.client("bank-b") as client:
        client.http.event_hooks["request"].append(
            # the client asks the node's id once (unsigned health) before signing for it
            lambda r: r.url.path == "/v1/health" or sent.append(r.headers.get("content-type", ""))
        )
        raws = _record(orderer, "bank-b", 20)
        receipts = client.submit(raws)
        assert sent == ["application/cbor"]
        assert [r.tx_id for r in receipts] == [hashlib.sha256(r).digest() for r in raws]
        assert {r.code for r in receipts} == {"valid"} and receipts[0].height >= 1
        # The same batch again, in JSON: the same receipts, answered from the chain.
        reply = client.http.post("/v1/txs", json={"txs": [r.hex() for r in raws]})
        assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
        again = reply.json()["receipts"]
        assert [(bytes.fromhex(r["tx_id"]), r["height"], r["index"], r["code"]) for r in again] == [
            (r.tx_id, r.height, r.index, r.code) for r in receipts
        ]


def test_cbor_body_and_answer_are_negotiated_separately(orderer: Running) -> None:
    with orderer.client("bank-b") as client:
        raws = _record(orderer, "bank-b", 3)
        body = encode({"txs": raws, "timeout": 20})
        reply = client.http.post("/v1/txs", content=body, headers=CBOR)
        assert reply.headers["content-type"] == "application/cbor"
        rows = decode(reply.content, canonical=False)["receipts"]
        assert [row[0] for row in rows] == [hashlib.sha256(r).digest() for r in raws]
        assert [row[3:] for row in rows] == [["valid", ""]] * 3
        # A CBOR body without Accept: application/cbor gets JSON receipts.
        reply = client.http.post(
            "/v1/txs", content=body, headers={"Content-Type": "application/cbor"}
        )
        assert reply.json()["receipts"][0]["tx_id"] == rows[0][0].hex()
        # Without waiting: 202 and the ids.
        more = _record(orderer, "bank-b", 2)
        reply = client.http.post(
            "/v1/txs", content=encode({"txs": more, "wait": False}), headers=CBOR
        )
        assert reply.status_code == 202
        assert decode(reply.content)["tx_ids"] == [hashlib.sha256(r).digest() for r in more]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\x00", "is not valid CBOR"),
        (b"\x9f\x01", "is not valid CBOR"),  # an indefinite array cut short
        (encode([1, 2]), "must be a map"),
        (encode({"wait": True}), "txs must be an array"),
        (encode({"txs": []}), "txs must be an array"),
        (encode({"txs": "ab"}), "txs must be an array"),
        (encode({"txs": [b"\x84", "text"]}), "transaction 1 must be a byte string"),
        (encode({"txs": [b"x"], "wait": 1}), "wait must be true or false"),
        (encode({"txs": [b"x"], "timeout": 301}), "timeout must be"),
        (encode({"txs": [b"x"], "timeout": float("nan")}), "timeout must be"),
        (encode({"txs": [b"x"], "timeout": True}), "timeout must be"),
        (encode({"txs": [b"\x84\x01"]}), "transaction 0 is not a signed envelope"),
    ],
)
def test_malformed_cbor_bodies_are_400_saying_why(
    orderer: Running, body: bytes, message: str
) -> None:
    with orderer.client("bank-b") as client:
        reply = client.http.post("/v1/txs", content=body, headers=CBOR)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"] == "bad_request" and message in reply.json()["detail"]


def test_a_bad_envelope_is_named_by_its_index(orderer: Running) -> None:
    good = _record(orderer, "bank-b", 2)
    with orderer.client("bank-b") as client:
        reply = client.http.post(
            "/v1/txs", content=encode({"txs": [*good, good[0][:-1]]}), headers=CBOR
        )
        assert reply.status_code == 400 and "transaction 2 " in reply.json()["detail"]
        reply = client.http.post("/v1/txs", json={"txs": [good[0].hex(), "0102"]})
        assert reply.status_code == 400 and "transaction 1 " in reply.json()["detail"]


def test_an_envelope_whose_body_is_no_transaction_is_kept_as_bad_encoding(
    orderer: Running,
) -> None:
    # The API checks the envelope's framing only; the ledger judges the body.
    raw = encode([1, b"\xa1\x61a\x01", bytes(32), bytes(64)])
    with orderer.client("bank-b") as client:
        (receipt,) = client.submit([raw])
    assert receipt.code == "bad_encoding" and receipt.tx_id == hashlib.sha256(raw).digest()


def test_other_media_types_are_415(orderer: Running) -> None:
    with orderer.client("bank-b") as client:
        reply = client.http.post(
            "/v1/txs", content=b"txs=00", headers={"Content-Type": "text/plain"}
        )
        assert reply.status_code == 415
        assert "application/json or application/cbor" in reply.json()["detail"]


def test_the_signature_covers_the_cbor_body(orderer: Running) -> None:
    raws = _record(orderer, "bank-b", 2)
    body = encode({"txs": raws})
    with orderer.client("bank-b") as client:
        signed = client.signed("POST", "/v1/txs", content=body, headers=CBOR)
        tampered = bytearray(body)
        tampered[-1] ^= 1  # the last signature byte of the last envelope
        forged = httpx.Request("POST", signed.url, headers=signed.headers, content=bytes(tampered))
        reply = client.http.send(forged, auth=None)
        assert reply.status_code == 401 and "Content-Digest" in reply.json()["detail"]
        # the signature is checked (and its nonce spent) before the body: sign afresh
        again = client.signed("POST", "/v1/txs", content=body, headers=CBOR)
        assert client.http.send(again, auth=None).status_code == 200


def test_client_falls_back_to_json_for_a_node_without_cbor() -> None:
    """A node of an earlier release answers a CBOR body 422; the client then speaks JSON."""
    seen: list[str] = []

    def older_node(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/health":  # the client asks whose node it is, once
            return httpx.Response(200, json={"status": "ok", "org": "hospital-a"})
        seen.append(request.headers["content-type"])
        if request.headers["content-type"] != "application/json":
            return httpx.Response(422, json={"error": "bad_request", "detail": "no match"})
        txs = json.loads(request.content)["txs"]
        receipts = [
            {"tx_id": hashlib.sha256(bytes.fromhex(t)).hexdigest(), "height": 4, "index": i}
            | {"code": "valid", "reason": ""}
            for i, t in enumerate(txs)
        ]
        return httpx.Response(200, json={"receipts": receipts})

    key = SigningKey.from_seed(bytes(32))
    with NodeClient(
        "http://old", "hospital-a", key, transport=httpx.MockTransport(older_node)
    ) as client:
        first = client.submit([b"\x01" * 110])
        second = client.submit([b"\x02" * 110])
    assert seen == ["application/cbor", "application/json", "application/json"]
    assert first[0].tx_id == hashlib.sha256(b"\x01" * 110).digest() and second[0].height == 4


def test_the_data_plane_state_lives_on_the_app_and_shows_in_the_status(orderer: Running) -> None:
    state = orderer.server.app.state
    assert isinstance(state.upkeep, Upkeep) and state.upkeep.node is orderer.node
    assert isinstance(state.uploads, Uploads)
    with orderer.client() as client:
        (receipt,) = client.submit(_record(orderer, "hospital-a", 1))
        deadline = time.monotonic() + 10
        while state.upkeep.followed < receipt.height and time.monotonic() < deadline:
            time.sleep(0.01)  # the upkeep follows commits on its own thread
        status = client.http.get("/v1/status").json()
    assert status["data_plane"]["followed_height"] == state.upkeep.followed == receipt.height
    assert status["data_plane"]["blob_fetch"] == {
        "queued": 0, "fetching": 0, "waiting": 0, "over_quota": 0, "failed": 0, "done": 0,
        "jobs": [], "recent": [],
    }  # fmt: skip


def test_an_answer_that_strays_from_its_model_is_a_500_not_a_new_wire(
    orderer: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = orderer.node.tx_info

    def with_a_new_field(tx_id: bytes) -> dict[str, object] | None:
        info = real(tx_id)
        return None if info is None else {**info, "surprise": 1}

    monkeypatch.setattr(orderer.node, "tx_info", with_a_new_field)
    with orderer.client() as client:
        (receipt,) = client.submit(_record(orderer, "hospital-a", 1))
        reply = client.http.get(f"/v1/txs/{receipt.tx_id.hex()}")
    assert reply.status_code == 500 and reply.json()["error"] == "internal"
