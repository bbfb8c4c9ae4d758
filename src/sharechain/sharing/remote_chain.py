"""The chain through a node: the data plane's `Chain` port and the faces' read side.

`RemoteChain` reads one node's copy of the chain through its REST API (a
signed `NodeClient`) and decodes the answers back into the records the
embedded default reads (`sharechain.api.wire`), so both modes print the same
tables and JSON. Transactions are signed here, with the acting
organisation's keys, and submitted through `POST /v1/txs`; only that one
organisation can act through it.

Every proof it returns has been verified against the node's block hash at
that height. `committed_tx` waits until a node has committed a transaction
another node committed (the custodians' and the grantee's nodes follow the
orderer a little behind).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

from sharechain.api.client import NodeClient
from sharechain.api.wire import entry_from_json, from_jsonable, proof_from_json
from sharechain.contracts.access import AccessRequest
from sharechain.contracts.datasets import Dataset
from sharechain.contracts.epochs import KeyEpoch
from sharechain.contracts.membership import Proposal
from sharechain.contracts.notary import NotaryRecord
from sharechain.contracts.queries import AuditEntry, GrantView, Lineage
from sharechain.contracts.risk import Alert
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import ConfigError, NotFoundError, TransactionRejectedError
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.identities import Organisation
from sharechain.ledger.proofs import TxProof, verify_tx_proof
from sharechain.ledger.transactions import SignedTransaction, decode_transaction, sign_transaction
from sharechain.ordering.solo import Receipt
from sharechain.sharing.ports import verify_entries
from sharechain.sharing.records import CatalogueQuery, ChainInfo

__all__ = ["CHAIN_WAIT", "RemoteChain", "committed_tx", "organisations"]

CHAIN_WAIT: Final = 30.0
"""Seconds to wait for a node to commit a transaction another node committed."""
_AUDIT_PAGE: Final = 10_000
"""Entries asked for per page of an audit trail (the API's largest page; the node
ends a page sooner after 32 MiB of blocks)."""


def committed_tx(client: NodeClient, tx_id: bytes) -> tuple[dict[str, Any], SignedTransaction]:
    """A committed transaction, read from `client`'s node's own chain (waits for it)."""
    deadline = time.monotonic() + CHAIN_WAIT
    while True:
        try:
            info = client.tx(tx_id)
            break
        except NotFoundError:
            if time.monotonic() > deadline:
                raise NotFoundError(
                    f"transaction {tx_id.hex()} did not reach {client.base_url} within "
                    f"{CHAIN_WAIT:.0f}s"
                ) from None
            time.sleep(0.05)
    (raw_block,) = client.sync_blocks(int(info["height"]), limit=1)
    raw = decode_block(raw_block, check_canonical=False).txs[int(info["index"])]
    return info, decode_transaction(raw)


def organisations(client: NodeClient) -> list[Organisation]:
    """Every organisation `client`'s node records."""
    body = client.get_json("/v1/organisations")["organisations"]
    return [from_jsonable(Organisation, o) for o in body]


def _path(*parts: str) -> str:
    return "/".join(quote(p, safe="") for p in parts)


class RemoteChain:
    """One node's chain, acting as the organisation whose keys sign the client."""

    def __init__(
        self,
        client: NodeClient,
        keys: OrgKeys,
        *,
        rng: Callable[[int], bytes] = os.urandom,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.me = keys
        self.rng = rng
        self.now = now
        self._hashes: dict[int, bytes] = {}

    def _get(self, path: str, **params: Any) -> Any:
        return self.client.get_json(path, **params)

    def _one(self, tp: Any, path: str, field: str) -> Any:
        return from_jsonable(tp, self._get(path)[field])

    # -- the data plane's port ------------------------------------------------------

    def key_epoch(self, ds: str) -> KeyEpoch:
        epoch: KeyEpoch = self._one(KeyEpoch, f"/v1/datasets/{_path(ds)}/epoch", "epoch")
        return epoch

    def committed(self, tx_id: bytes) -> tuple[str, SignedTransaction]:
        info, stx = committed_tx(self.client, tx_id)
        return str(info["code"]), stx

    def holds_keys(self, org: str) -> bool:
        return org == self.me.org

    def live_users(self, digest: bytes) -> tuple[str, ...]:
        # The node offers no digest index; every dataset record names its payload (a new
        # version that keeps one repeats its digest), which the catalogue lists.
        everything = CatalogueQuery(None, None, None, None, True)
        return tuple(
            d.id
            for d in self.catalogue(everything)
            if d.ciphertext_digest == digest and d.status != "purged"
        )

    def keys(self, org: str) -> OrgKeys:
        if org != self.me.org:
            raise ConfigError(f"this command signs as {self.me.org}, not {org}")
        return self.me

    def sign(self, org: str, type: str, payload: Mapping[str, Any]) -> SignedTransaction:
        keys = self.keys(org)
        return sign_transaction(keys.signing, type, org, payload, now=self.now, rng=self.rng)

    def commit(self, stxs: Sequence[SignedTransaction]) -> list[Receipt]:
        receipts = self.client.submit([s.raw for s in stxs])
        for r in receipts:
            if not r.ok:
                raise TransactionRejectedError(r.code, r.reason, r.tx_id)
        return receipts

    # -- the faces' read side (ports.Queries) -----------------------------------------

    def submit(self, org: str, type: str, payload: Mapping[str, Any]) -> Receipt:
        return self.client.submit_checked(self.sign(org, type, payload).raw)

    def resolve(self, kind: str, prefix: str) -> str:
        return str(self._get(f"/v1/ids/{_path(kind, prefix)}")["id"])

    def chain_info(self) -> ChainInfo:
        body = self._get("/v1/chain")
        return ChainInfo(
            str(body["consortium"]),
            bytes.fromhex(body["genesis_hash"]),
            int(body["height"]),
            bytes.fromhex(body["head_hash"]),
            int(body["head_timestamp"]),
            bytes.fromhex(body["state_root"]),
            int(body["transactions"]),
            tuple(self.organisations()),
            None,
            self.client.base_url,
        )

    def _verify(self, p: TxProof) -> None:
        if p.height not in self._hashes:
            self._hashes[p.height] = bytes.fromhex(self.client.block(p.height)["hash"])
        verify_tx_proof(p, self._hashes[p.height])

    def proof(self, tx_id: bytes) -> TxProof:
        p = proof_from_json(self.client.proof(tx_id))
        self._verify(p)
        return p

    def notary(self, digest: bytes) -> NotaryRecord | None:
        try:
            rec: NotaryRecord = self._one(NotaryRecord, f"/v1/notary/{digest.hex()}", "record")
        except NotFoundError:
            return None
        return rec

    def organisations(self) -> list[Organisation]:
        return organisations(self.client)

    def proposals(self) -> list[Proposal]:
        return [from_jsonable(Proposal, p) for p in self._get("/v1/proposals")["proposals"]]

    def catalogue(self, query: CatalogueQuery) -> list[Dataset]:
        body = self._get("/v1/catalogue", **dataclasses.asdict(query))
        return [from_jsonable(Dataset, d) for d in body["datasets"]]

    def dataset(self, ds: str) -> Dataset:
        d: Dataset = self._one(Dataset, f"/v1/datasets/{_path(ds)}", "dataset")
        return d

    def lineage(self, ds: str) -> Lineage:
        graph: Lineage = self._one(Lineage, f"/v1/lineage/{_path(ds)}", "lineage")
        return graph

    def request(self, rid: str) -> AccessRequest:
        req: AccessRequest = self._one(AccessRequest, f"/v1/requests/{_path(rid)}", "request")
        return req

    def requests(self, *, org: str | None = None, ds: str | None = None) -> list[AccessRequest]:
        body = self._get("/v1/requests", org=org, dataset=ds)
        return [from_jsonable(AccessRequest, r) for r in body["requests"]]

    def inbox(self, org: str) -> list[AccessRequest]:
        if org != self.me.org:
            raise ConfigError(f"a node shows the inbox of the signer ({self.me.org}), not {org}")
        return [from_jsonable(AccessRequest, r) for r in self._get("/v1/inbox")["requests"]]

    def grants(self, *, org: str | None = None, ds: str | None = None) -> list[GrantView]:
        body = self._get("/v1/grants", org=org, dataset=ds)
        return [from_jsonable(GrantView, g) for g in body["grants"]]

    def alerts(self, *, open_only: bool) -> list[Alert]:
        body = self._get("/v1/alerts", open_only=open_only)
        return [from_jsonable(Alert, a) for a in body["alerts"]]

    def audit(
        self, *, ds: str | None = None, grant_id: str | None = None, org: str | None = None
    ) -> list[AuditEntry]:
        entries: list[AuditEntry] = []
        more: dict[str, int] | None = {"height": 0, "index": 0}
        while more is not None:  # the node answers a page at a time
            body = self._get(
                "/v1/audit",
                dataset=ds,
                grant=grant_id,
                org=org,
                proofs=True,
                limit=_AUDIT_PAGE,
                from_height=more["height"],
                from_index=more["index"],
            )
            page = [entry_from_json(e) for e in body["entries"]]
            verify_entries(page, self._verify)
            entries += page
            more = body.get("next")
        return entries

    def grant(self, gid: str) -> GrantView:
        view: GrantView = self._one(GrantView, f"/v1/grants/{_path(gid)}", "grant")
        return view
