"""Blob delivery and key releases between nodes over HTTP (three nodes in this process, solo).

hospital-a owns the data and orders; bank-b is the grantee; the regulator is the
supervisor (and custodian under supervisor custody).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from node_helpers import ORGS, Consortium, Running, run_node, shutdown_all
from test_replication import wait_until

from sharechain.api.client import NodeClient
from sharechain.api.transfer import download_blob
from sharechain.contracts import derive_id
from sharechain.errors import AccessDeniedError, IntegrityError
from sharechain.ledger.transactions import sign_transaction
from sharechain.sharing.records import Published, ReleaseRefusedError
from sharechain.sharing.remote import fetch_remote, publish_remote, revoke_remote
from sharechain.storage.blobs import BlobStore
from sharechain.storage.datadir import init_consortium

OWNER, GRANTEE, SUPERVISOR = "hospital-a", "bank-b", "regulator"


@dataclass
class Net:
    consortium: Consortium
    nodes: dict[str, Running]
    work: Path

    def clients(
        self, as_org: str, transport: httpx.BaseTransport | None = None
    ) -> dict[str, NodeClient]:
        key = self.consortium.keys(as_org).signing
        return {
            org: NodeClient(r.url, as_org, key, timeout=20.0, transport=transport)
            for org, r in self.nodes.items()
        }

    def submit(self, org: str, type: str, payload: dict[str, object]) -> bytes:
        stx = sign_transaction(self.consortium.keys(org).signing, type, org, payload)
        with NodeClient(self.nodes[org].url, org, self.consortium.keys(org).signing) as c:
            return c.submit_checked(stx.raw).tx_id

    def publish(self, name: str, size: int, **kw: object) -> tuple[Published, Path]:
        src = self.work / name
        src.write_bytes(os.urandom(size))
        clients = self.clients(OWNER)
        try:
            pub = publish_remote(
                clients[OWNER],
                self.consortium.keys(OWNER),
                src,
                peers=clients,
                title=name,
                **kw,  # type: ignore[arg-type]  # custody options
            )
        finally:
            close(clients)
        return pub, src

    def grant(self, ds: str, org: str = GRANTEE, duration: int = 86_400_000) -> str:
        body = {"dataset": ds, "purpose": "research", "duration": duration}
        rid = derive_id("request", self.submit(org, "access.request", body))
        self.submit(SUPERVISOR, "access.approve", {"request": rid})
        gid = derive_id("grant", self.submit(OWNER, "access.approve", {"request": rid}))
        self.sync()
        return gid

    def sync(self) -> None:
        """Wait until every node has committed what the orderer has."""
        head = self.nodes[OWNER].node.ledger.height
        wait_until(lambda: all(r.node.ledger.height >= head for r in self.nodes.values()))

    def blob(self, org: str, pub: Published) -> Path:
        return BlobStore(self.nodes[org].node.datadir.blob_dir).path(pub.digests.ciphertext_sha256)

    def codes(self, org: str = OWNER) -> list[tuple[str, str]]:
        node = self.nodes[org].node
        return [
            (info["type"], info["code"])
            for h in range(node.ledger.height + 1)
            for info in _block_txs(node, h)
        ]


def _block_txs(node: object, height: int) -> list[dict[str, str]]:
    from sharechain.ledger.blocks import decode_block

    store = node.store  # type: ignore[attr-defined]  # a Node
    block = decode_block(store.block_bytes(height), check_canonical=False)
    out = []
    for tx_id in block.tx_ids:
        loc = store.tx_location(tx_id)
        out.append({"type": loc.type, "code": loc.code})
    return out


def close(clients: dict[str, NodeClient]) -> None:
    for c in clients.values():
        c.close()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    base = tmp_path_factory.mktemp("delivery")
    init_consortium(base / "consortium", ORGS, consortium="test")
    consortium = Consortium(base / "consortium", base)
    orderer = run_node(consortium, OWNER, max_wait=0.005)
    nodes = {OWNER: orderer}
    try:
        for org in (GRANTEE, SUPERVISOR):
            nodes[org] = run_node(
                consortium,
                org,
                orderer_url=orderer.url,
                peers=((OWNER, orderer.url),),
                poll_interval=0.2,
            )
        work = base / "files"
        work.mkdir()
        yield Net(consortium, nodes, work)
    finally:
        shutdown_all(nodes.values())


class _Cut(httpx.SyncByteStream):
    """A response body that breaks off after `limit` bytes, as a dropped connection does."""

    def __init__(self, inner: httpx.SyncByteStream, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in self._inner:
            if sent + len(chunk) > self._limit:
                yield chunk[: self._limit - sent]
                raise httpx.ReadError("connection reset by peer (test)")
            sent += len(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class DropFirstDownload(httpx.HTTPTransport):
    """Loopback transport whose first blob download breaks off after `limit` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.ranges: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        reply = super().handle_request(request)
        if request.method == "GET" and request.url.path.startswith("/v1/blobs/"):
            self.ranges.append(request.headers.get("range"))
            if len(self.ranges) == 1:
                assert isinstance(reply.stream, httpx.SyncByteStream)
                return httpx.Response(
                    reply.status_code,
                    headers=reply.headers,
                    stream=_Cut(reply.stream, self.limit),
                    request=request,
                )
        return reply


def test_fetch_resumes_after_a_dropped_connection_and_verifies(net: Net) -> None:
    pub, src = net.publish("big.bin", 3 * 1024 * 1024 + 17, custody="supervisor")
    assert not pub.inline and pub.holders == (SUPERVISOR,)
    # The blob is on the owner's node and copied to the custodian's; the grantee's node
    # fetches its own replica, and the grantee downloads from it first.
    assert net.blob(OWNER, pub).read_bytes() == net.blob(SUPERVISOR, pub).read_bytes()
    wait_until(lambda: net.blob(GRANTEE, pub).exists())
    gid = net.grant(pub.dataset)
    transport = DropFirstDownload(limit=1_000_000)
    clients = net.clients(GRANTEE, transport=transport)
    out = net.work / "got.bin"
    try:
        got = fetch_remote(clients, net.consortium.keys(GRANTEE), gid, out)
    finally:
        close(clients)
    assert out.read_bytes() == src.read_bytes()
    assert got.digests.plaintext_sha256 == pub.digests.plaintext_sha256
    assert [r.custodian for r in got.releases] == [SUPERVISOR]
    # The first download broke off at 1,000,000 bytes; the second asked from there.
    assert transport.ranges == [None, "bytes=1000000-"]
    assert ("grant.read", "valid") in net.codes()
    assert ("grant.key-release", "valid") in net.codes()


def _get(net: Net, org: str, pub: Published, **headers: str) -> httpx.Response:
    key = net.consortium.keys(org).signing
    with NodeClient(net.nodes[OWNER].url, org, key) as c:
        return c.http.get(f"/v1/blobs/{pub.digests.ciphertext_sha256.hex()}", headers=headers)


def test_byte_ranges_head_and_unsatisfiable(net: Net) -> None:
    pub, _ = net.publish("ranges.bin", 200_000, custody="owner")
    blob = net.blob(OWNER, pub).read_bytes()
    size = len(blob)
    whole = _get(net, OWNER, pub)
    assert whole.status_code == 200 and whole.content == blob
    assert whole.headers["etag"] == f'"{pub.digests.ciphertext_sha256.hex()}"'
    assert whole.headers["accept-ranges"] == "bytes"
    part = _get(net, OWNER, pub, Range="bytes=10-19")
    assert part.status_code == 206 and part.content == blob[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{size}"
    tail = _get(net, OWNER, pub, Range="bytes=-100")
    assert tail.status_code == 206 and tail.content == blob[-100:]
    rest = _get(net, OWNER, pub, Range=f"bytes={size - 5}-")
    assert rest.content == blob[-5:]
    for bad in (f"bytes={size}-", "bytes=5-2", "bytes=0-1,4-5", "items=0-1"):
        refused = _get(net, OWNER, pub, Range=bad)
        assert refused.status_code == 416, bad
        assert refused.headers["content-range"] == f"bytes */{size}"
    with NodeClient(net.nodes[OWNER].url, OWNER, net.consortium.keys(OWNER).signing) as c:
        head = c.http.head(f"/v1/blobs/{pub.digests.ciphertext_sha256.hex()}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(size)


def test_current_blobs_are_readable_by_members_other_blobs_are_not(net: Net) -> None:
    pub, _ = net.publish("private.bin", 100_000, custody="owner")
    for org in (GRANTEE, SUPERVISOR):  # every node keeps a replica: every member may read it
        assert _get(net, org, pub).status_code == 200
    missing = "ab" * 32
    key = net.consortium.keys(OWNER).signing
    with NodeClient(net.nodes[OWNER].url, OWNER, key) as c:
        assert c.http.get(f"/v1/blobs/{missing}").status_code == 404
        assert c.http.get("/v1/blobs/not-a-digest").status_code == 422
    key = net.consortium.keys(GRANTEE).signing
    with NodeClient(net.nodes[OWNER].url, GRANTEE, key) as c:
        reply = c.http.get(f"/v1/blobs/{missing}")  # no current epoch names it
    assert reply.status_code == 403
    assert f"{GRANTEE} may not read blob" in reply.json()["detail"]


def test_tampered_blob_is_detected_and_nothing_is_written(net: Net) -> None:
    pub, _ = net.publish("tamper.bin", 150_000, custody="owner")
    gid = net.grant(pub.dataset)
    path = net.blob(OWNER, pub)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    reads_before = net.codes().count(("grant.read", "valid"))
    clients = net.clients(GRANTEE)
    out = net.work / "tampered-out.bin"
    try:
        with pytest.raises(IntegrityError, match="hashes to"):
            fetch_remote(clients, net.consortium.keys(GRANTEE), gid, out)
    finally:
        close(clients)
    assert not out.exists()
    assert not any(p.name.startswith(".tampered-out") for p in net.work.iterdir())
    assert net.codes().count(("grant.read", "valid")) == reads_before  # no read receipt


def _release(net: Net, custodian: str, as_org: str, gid: str) -> httpx.Response:
    key = net.consortium.keys(as_org).signing
    with NodeClient(net.nodes[custodian].url, as_org, key) as c:
        issued = c.http.post(f"/v1/grants/{gid}/key-session")
        if issued.status_code != 200:
            return issued
        session = issued.json()["session"]
        return c.http.post(f"/v1/grants/{gid}/key-release", json={"session": session})


def test_key_release_refusals_carry_the_chain_code(net: Net) -> None:
    pub, _ = net.publish("refusals.bin", 80_000, custody="supervisor", inline_limit=0)
    gid = net.grant(pub.dataset)
    # Not the grantee: hospital-a asks the custodian's node for bank-b's grant.
    reply = _release(net, SUPERVISOR, OWNER, gid)
    assert reply.status_code == 403
    assert reply.json()["code"] == "wrong_grantee"
    assert "recorded in block" in reply.json()["detail"]
    assert "wrapped" not in reply.json()
    # A node that releases nothing for this dataset says so (the owner keeps its key for
    # rotation, but under supervisor custody the supervisor releases).
    for node in (GRANTEE, OWNER):
        reply = _release(net, node, GRANTEE, gid)
        assert reply.status_code == 403 and "holds no key" in reply.json()["detail"]
    # The grantee itself succeeds, and gets a wrap only it can open.
    ok = _release(net, SUPERVISOR, GRANTEE, gid)
    assert ok.status_code == 200 and ok.json()["to"] == GRANTEE and ok.json()["wrapped"]
    # Expired: a grant for 1 ms.
    short = net.grant(pub.dataset, duration=1)
    reply = _release(net, SUPERVISOR, GRANTEE, short)
    assert reply.status_code == 403 and reply.json()["code"] == "expired"
    # Revoked (the owner's tools then rotate the key epoch on every node).
    clients = net.clients(OWNER)
    try:
        revoked = revoke_remote(
            clients[OWNER], net.consortium.keys(OWNER), gid, peers=clients, reason="done"
        )
    finally:
        close(clients)
    assert revoked.rotated is not None and revoked.rotated.epoch == 2
    assert revoked.rotated.destroyed == 2  # the owner's key and the regulator's
    wait_until(
        lambda: net.nodes[SUPERVISOR].node.ledger.height >= net.nodes[OWNER].node.ledger.height
    )
    reply = _release(net, SUPERVISOR, GRANTEE, gid)
    assert reply.status_code == 403 and reply.json()["code"] == "revoked"
    clients = net.clients(GRANTEE)
    try:
        with pytest.raises(ReleaseRefusedError, match="revoked") as refused:
            fetch_remote(clients, net.consortium.keys(GRANTEE), gid, net.work / "late.bin")
    finally:
        close(clients)
    assert refused.value.code == "revoked"
    assert not (net.work / "late.bin").exists()
    # Every refusal is on the chain with its code.
    codes = net.codes()
    for code in ("wrong_grantee", "expired", "revoked"):
        assert ("grant.key-release", code) in codes
    # The old blob and keys are gone from both nodes.
    assert not net.blob(OWNER, pub).exists() and not net.blob(SUPERVISOR, pub).exists()


def test_custody_slots_are_written_once_and_only_by_the_owner(net: Net) -> None:
    pub, _ = net.publish("slots.bin", 70_000, custody="supervisor")
    path = f"/v1/custody/{pub.dataset}/1/key"
    key = net.consortium.keys(GRANTEE).signing
    with NodeClient(net.nodes[SUPERVISOR].url, GRANTEE, key) as c:
        denied = c.http.put(path, json={"wrapped": "00" * 80})
        assert denied.status_code == 403 and "only the owner" in denied.json()["detail"]
        assert c.http.get(path).status_code == 403  # a vault is read by its own org only
    key = net.consortium.keys(OWNER).signing
    with NodeClient(net.nodes[SUPERVISOR].url, OWNER, key) as c:
        again = c.http.put(path, json={"wrapped": "00" * 80})
        assert again.status_code == 403 and "written once" in again.json()["detail"]
        with pytest.raises(AccessDeniedError, match="still current"):
            from sharechain.api.client import raise_for_reply

            raise_for_reply(c.http.delete(f"/v1/custody/{pub.dataset}", params={"epoch": 1}))


class RecordRanges(httpx.HTTPTransport):
    """Loopback transport that notes the Range header of every blob download."""

    def __init__(self) -> None:
        super().__init__()
        self.ranges: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.startswith("/v1/blobs/"):
            self.ranges.append(request.headers.get("range"))
        return super().handle_request(request)


def test_a_resumed_download_continues_after_the_bytes_it_holds(net: Net) -> None:
    pub, _ = net.publish("resume.bin", 2_000_000, custody="owner")
    digest, blob = pub.digests.ciphertext_sha256, net.blob(OWNER, pub).read_bytes()
    part = net.work / "resume.part"
    part.write_bytes(blob[:700_000])  # an earlier attempt stopped here
    transport = RecordRanges()
    key = net.consortium.keys(OWNER).signing
    with NodeClient(net.nodes[OWNER].url, OWNER, key, transport=transport) as c:
        download_blob([c], digest, part, resume=True)
        assert part.read_bytes() == blob and transport.ranges == ["bytes=700000-"]
        download_blob([c], digest, part, resume=True)  # all there already: 416, kept
        assert part.read_bytes() == blob and transport.ranges[-1] == f"bytes={len(blob)}-"
        part.write_bytes(b"x" * 700_000)  # bytes that are not the blob's: all discarded
        with pytest.raises(IntegrityError, match="discarded"):
            download_blob([c], digest, part, resume=True)
    assert not part.exists()


def test_a_blob_fetch_retries_with_backoff_then_gives_up(net: Net) -> None:
    import itertools
    import threading

    from sharechain.sharing.blob_fetch import ATTEMPTS, BlobFetcher, FetchJob

    node = net.nodes[OWNER].node  # the orderer: it has no peers to fetch from
    pub, _ = net.publish("lonely.bin", 100_000, custody="owner")
    ticks = itertools.count(0, 1000)  # every job is due at once: no real waiting
    outcomes: list[str] = []
    fetcher = BlobFetcher(
        node,
        BlobStore(net.work / "empty-store"),
        threading.Lock(),
        wanted=lambda d: None if d != pub.digests.ciphertext_sha256 else object(),  # type: ignore[return-value,arg-type]  # any epoch
        on_bytes=lambda n: None,
        on_outcome=outcomes.append,
        clock=lambda: float(next(ticks)),
    )
    job = FetchJob(pub.digests.ciphertext_sha256, pub.dataset, 1, OWNER, (OWNER,))
    fetcher.queue(job, delay=0.0)
    for _ in range(ATTEMPTS):
        progress = fetcher._next_due()
        assert progress is not None
        fetcher._attempt(progress)
    assert outcomes == ["retry"] * (ATTEMPTS - 1) + ["failed"]
    (failed,) = fetcher.status()["jobs"]
    assert failed["state"] == "failed" and failed["attempts"] == ATTEMPTS
    assert "knows no peers" in failed["error"]
    assert fetcher._next_due() is None  # a failed job waits for a restart or a new epoch
    fetcher.queue(job, delay=0.0)
    assert fetcher.counts()["queued"] == 1


def test_chunked_upload_resumes_and_checks_the_digest(net: Net) -> None:
    import hashlib

    from sharechain.storage.uploads import Uploads

    data = os.urandom(3_000_000)
    digest = hashlib.sha256(data).hexdigest()
    key = net.consortium.keys(OWNER).signing
    url = f"/v1/blobs/{digest}"

    def put(c: NodeClient, offset: int, body: bytes, final: bool) -> httpx.Response:
        params = {"offset": offset, "final": str(final).lower()}
        return c.http.put(url, params=params, content=body)

    with NodeClient(net.nodes[OWNER].url, OWNER, key) as c:
        assert put(c, 0, data[:1_000_000], False).json()["received"] == 1_000_000
        skipped = put(c, 2_000_000, data[2_000_000:], True)  # a chunk went missing
        assert skipped.status_code == 409 and skipped.json()["received"] == 1_000_000
        uploads: Uploads = net.nodes[OWNER].server.app.state.uploads
        uploads.close()  # as after a restart: only the part file is left
        assert put(c, 1_000_000, data[1_000_000:2_000_000], False).json()["received"] == 2_000_000
        done = put(c, 2_000_000, data[2_000_000:], True).json()
        assert done["stored"] and done["size"] == len(data)
        assert BlobStore(net.nodes[OWNER].node.datadir.blob_dir).read_bytes(digest) == data
        other = hashlib.sha256(b"y" * 10).hexdigest()  # bytes that are not what the name says
        bad = c.http.put(f"/v1/blobs/{other}", params={"offset": 0}, content=b"x" * 10)
        assert bad.status_code == 422 and bad.json()["error"] == "digest_mismatch"
        assert not BlobStore(net.nodes[OWNER].node.datadir.blob_dir).has(other)
        assert not list((net.nodes[OWNER].node.datadir.blob_dir / ".incoming").glob("upload-*"))


def test_streamed_upload_is_named_at_the_end_and_only_by_the_node_itself(net: Net) -> None:
    import hashlib

    from sharechain.api.transfer import StreamingUpload

    data = os.urandom(2_500_000)
    digest = hashlib.sha256(data).digest()
    key = net.consortium.keys(OWNER).signing
    store = BlobStore(net.nodes[OWNER].node.datadir.blob_dir)
    with NodeClient(net.nodes[OWNER].url, OWNER, key) as c:
        upload = StreamingUpload(c, chunk=1_000_000)
        for i in range(0, len(data), 300_000):  # as a sealer produces it
            upload.write(data[i : i + 300_000])
        upload.finish(digest)
        assert store.read_bytes(digest) == data
        wrong = StreamingUpload(c, chunk=1_000_000)
        wrong.write(b"z" * 1_500_000)
        with pytest.raises(IntegrityError, match="do not hash"):
            wrong.finish(hashlib.sha256(b"other").digest())
        unnamed = c.http.put("/v1/uploads/" + "ab" * 16, params={"final": "true"}, content=b"x")
        assert unnamed.status_code == 400 and "names the digest" in unnamed.json()["detail"]
    other = net.consortium.keys(GRANTEE).signing
    with NodeClient(net.nodes[OWNER].url, GRANTEE, other) as c:
        refused = c.http.put("/v1/uploads/" + "cd" * 16, params={"offset": 0}, content=b"x")
    assert refused.status_code == 403 and "streams uploads to its own node" in refused.text
    assert not list((store.root / ".incoming").glob("upload-id-*"))
