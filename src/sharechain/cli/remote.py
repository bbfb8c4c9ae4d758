"""Node mode of the command line: the same commands against a node's REST API.

`--node URL` (or `$SHARECHAIN_NODE`) talks to one node; `--network FILE`
(or `$SHARECHAIN_NETWORK`, the `network.json` of `sharechain network up`, or
its directory) picks the node of the signing organisation from the network
file and its key from the network's consortium directory. Without either the
command runs on the embedded default, exactly as before.

Who signs: `--as ORG` with ORG's key file from `--data-dir` (or `--key
FILE`); a query command without `--as` signs as the organisation of
`--key FILE`, as the only organisation whose key the data directory holds,
or (with a network file) as the first node's organisation. Transactions are
signed here and submitted through `POST /v1/txs`; queries use the node's
read endpoints and their answers are decoded back into the same records the
embedded default reads, so both modes print the same output.

The data plane (`dataset publish`, `fetch`, `dataset rotate-key`, `grant
revoke`, `dataset purge`) also reaches the other organisations' nodes (their
custodians); `sharechain.sharing.remote_plane` says how they are found.

Errors: an unreachable node names the URL and what to do; the node's own
explanation of a 401 or 403 is printed as it is; never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from sharechain.api.client import NodeClient
from sharechain.api.wire import entry_from_json as _entry
from sharechain.api.wire import from_jsonable, proof_from_json
from sharechain.cli.common import err_console, fail, handle_errors, open_embedded, resolve_data_dir
from sharechain.contracts.access import AccessRequest
from sharechain.contracts.datasets import Dataset
from sharechain.contracts.membership import Proposal
from sharechain.contracts.notary import NotaryRecord
from sharechain.contracts.queries import AuditEntry, GrantView, Lineage
from sharechain.contracts.risk import Alert
from sharechain.crypto.keyfile import OrgKeys, load_keys
from sharechain.errors import ConfigError, NotFoundError, SharechainError
from sharechain.ledger.identities import Organisation
from sharechain.ledger.proofs import TxProof, verify_tx_proof
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.launcher import NETWORK_FILE
from sharechain.ordering.solo import Receipt
from sharechain.sharing.backend import (
    Backend,
    ChainInfo,
    EmbeddedBackend,
    Listing,
    Progress,
    verify_entries,
)
from sharechain.sharing.local import Fetched, Published, Rotated
from sharechain.sharing.remote_plane import RemotePlane, known_nodes
from sharechain.sharing.remote_purge import PurgeReport
from sharechain.storage.datadir import DataDir

__all__ = [
    "RemoteBackend",
    "Target",
    "connect",
    "key_dir",
    "network_data_dir",
    "node_errors",
    "open_backend",
]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a command runs: the embedded default, a node, or a network file's node."""

    node: str | None = None
    """`--node URL`."""
    network: Path | None = None
    """`--network FILE` (a `network.json` or the directory holding it)."""
    key: Path | None = None
    """`--key FILE`: the signing organisation's key file."""

    @property
    def remote(self) -> bool:
        return self.node is not None or self.network is not None


class RemoteBackend:
    """A node's REST API seen as a `Backend`, signing as one organisation."""

    def __init__(
        self,
        client: NodeClient,
        keys: OrgKeys,
        *,
        nodes: Mapping[str, str] | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self._hashes: dict[int, bytes] = {}
        self._nodes = nodes
        self._data_dir = data_dir
        self._plane: RemotePlane | None = None

    @property
    def url(self) -> str:
        return self.client.base_url

    def _get(self, path: str, **params: Any) -> Any:
        return self.client.get_json(path, **params)

    def submit(self, org: str, type: str, payload: Mapping[str, Any]) -> Receipt:
        if org != self.keys.org:
            raise ConfigError(f"this command signs as {self.keys.org}, not {org}")
        stx = sign_transaction(self.keys.signing, type, org, payload)
        return self.client.submit_checked(stx.raw)

    def resolve(self, kind: str, prefix: str) -> str:
        body = self._get(f"/v1/ids/{quote(kind, safe='')}/{quote(prefix, safe='')}")
        return str(body["id"])

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
            self.url,
        )

    def _block_hash(self, height: int) -> bytes:
        if height not in self._hashes:
            self._hashes[height] = bytes.fromhex(self.client.block(height)["hash"])
        return self._hashes[height]

    def _verify(self, p: TxProof) -> None:
        verify_tx_proof(p, self._block_hash(p.height))

    def proof(self, tx_id: bytes) -> TxProof:
        p = proof_from_json(self.client.proof(tx_id))
        self._verify(p)
        return p

    def notary(self, digest: bytes) -> NotaryRecord | None:
        try:
            body = self._get(f"/v1/notary/{digest.hex()}")
        except NotFoundError:
            return None
        rec: NotaryRecord = from_jsonable(NotaryRecord, body["record"])
        return rec

    def organisations(self) -> list[Organisation]:
        return [
            from_jsonable(Organisation, o) for o in self._get("/v1/organisations")["organisations"]
        ]

    def proposals(self) -> list[Proposal]:
        return [from_jsonable(Proposal, p) for p in self._get("/v1/proposals")["proposals"]]

    def catalogue(
        self,
        *,
        owner: str | None,
        tag: str | None,
        classification: str | None,
        text: str | None,
        include_inactive: bool,
    ) -> list[Dataset]:
        body = self._get(
            "/v1/catalogue",
            owner=owner,
            tag=tag,
            classification=classification,
            text=text,
            include_inactive=include_inactive,
        )
        return [from_jsonable(Dataset, d) for d in body["datasets"]]

    def dataset(self, ds: str) -> Dataset:
        d: Dataset = from_jsonable(
            Dataset, self._get(f"/v1/datasets/{quote(ds, safe='')}")["dataset"]
        )
        return d

    def lineage(self, ds: str) -> Lineage:
        graph: Lineage = from_jsonable(
            Lineage, self._get(f"/v1/lineage/{quote(ds, safe='')}")["lineage"]
        )
        return graph

    def request(self, rid: str) -> AccessRequest:
        req: AccessRequest = from_jsonable(
            AccessRequest, self._get(f"/v1/requests/{quote(rid, safe='')}")["request"]
        )
        return req

    def requests(self, *, org: str | None = None, ds: str | None = None) -> list[AccessRequest]:
        body = self._get("/v1/requests", org=org, dataset=ds)
        return [from_jsonable(AccessRequest, r) for r in body["requests"]]

    def inbox(self, org: str) -> list[AccessRequest]:
        if org != self.keys.org:
            raise ConfigError(f"a node shows the inbox of the signer ({self.keys.org}), not {org}")
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
        body = self._get("/v1/audit", dataset=ds, grant=grant_id, org=org, proofs=True)
        entries = [_entry(e) for e in body["entries"]]
        verify_entries(entries, self._verify)
        return entries

    def grant(self, gid: str) -> GrantView:
        view: GrantView = from_jsonable(
            GrantView, self._get(f"/v1/grants/{quote(gid, safe='')}")["grant"]
        )
        return view

    # -- the data plane (sharechain.sharing.remote_plane) ---------------------------------

    def _data_plane(self, org: str) -> RemotePlane:
        if org != self.keys.org:
            raise ConfigError(f"this command signs as {self.keys.org}, not {org}")
        if self._plane is None:
            nodes = known_nodes(self.client, self._nodes, self._data_dir)
            self._plane = RemotePlane(
                self.client, self.keys, nodes, lambda m: err_console.print(m, highlight=False)
            )
        return self._plane

    def publish(
        self, org: str, source: Path, listing: Listing, progress: Progress | None
    ) -> Published:
        return self._data_plane(org).publish(source, listing, progress)

    def rotate(self, org: str, ds: str, *, reason: str) -> Rotated:
        return self._data_plane(org).rotate(ds, reason=reason)

    def rotate_after_revoke(self, org: str, gid: str) -> Rotated | None:
        return self._data_plane(org).rotate_after_revoke(self.grant(gid).grant)

    def fetch(
        self, org: str, gid: str, out: Path, *, offline: frozenset[str], progress: Progress | None
    ) -> Fetched:
        return self._data_plane(org).fetch(gid, out, offline=offline, progress=progress)

    def shred(self, org: str, ds: str, purge_tx: bytes) -> PurgeReport:
        return self._data_plane(org).shred(ds, purge_tx)


# -- connecting ------------------------------------------------------------------


def _load_network(path: Path) -> dict[str, Any]:
    import json

    file = path / NETWORK_FILE if path.is_dir() else path
    if not file.exists():
        fail(f"no network file {file}; start a network with `sharechain network up`")
    try:
        body: dict[str, Any] = json.loads(file.read_text())
        body["nodes"] = list(body["nodes"])
    except (ValueError, KeyError, TypeError) as exc:
        fail(f"{file} is not a network file ({exc})")
    if body.get("state") != "up":
        fail(
            f"the network in {file.parent} is {body.get('state', 'not up')}; "
            "start it with `sharechain network up`"
        )
    return body


def _keys(target: Target, key_dir: Path, org: str | None) -> OrgKeys:
    """The signer's keys: `--key FILE`, or `org`'s key file in `key_dir`."""
    if target.key is not None:
        keys = load_keys(target.key)
        if org is not None and keys.org != org:
            fail(f"key file {target.key} belongs to {keys.org}, not {org}")
        return keys
    dd = DataDir.open(key_dir)
    if org is None:
        held = dd.held_orgs()
        if len(held) != 1:
            fail(
                "say which organisation signs the requests to the node: --as ORG "
                f"(keys held in {key_dir / 'keys'}: {', '.join(held) or 'none'}) or --key FILE"
            )
        org = held[0]
    return dd.keys(org)


def key_dir(data_dir: Path | None, target: Target) -> Path:
    """Where node mode keeps key files: the network's consortium directory or `--data-dir`."""
    if target.network is not None:
        with handle_errors():
            return Path(_load_network(target.network)["consortium_dir"])
    return resolve_data_dir(data_dir)


def network_data_dir(target: Target, org: str) -> Path | None:
    """The data directory of `org`'s node in the network file of `target` (None without one)."""
    if target.network is None:
        return None
    with handle_errors():
        listed = _load_network(target.network)["nodes"]
    for n in listed:
        if n.get("org") == org and n.get("data_dir"):
            return Path(str(n["data_dir"]))
    return None


def connect(
    data_dir: Path | None, target: Target, as_org: str | None
) -> tuple[NodeClient, OrgKeys]:
    """A signed client of the node `target` names, and the signer's keys."""
    with handle_errors():
        if target.network is not None:
            net = _load_network(target.network)
            nodes = {str(n["org"]): str(n["url"]) for n in net["nodes"]}
            first = str(net["nodes"][0]["org"])
            org = as_org
            if org is None and target.key is None:
                org = first
            keys = _keys(target, Path(net["consortium_dir"]), org)
            url = target.node or nodes.get(keys.org, nodes[first])
        else:
            assert target.node is not None
            keys = _keys(target, resolve_data_dir(data_dir), as_org)
            url = target.node
    return NodeClient(url, keys.org, keys.signing, timeout=30.0), keys


@contextmanager
def node_errors(url: str) -> Iterator[None]:
    """An unreachable node or a refusal becomes a clear message and a non-zero exit."""
    try:
        yield
    except httpx.TransportError as exc:
        url = _where(exc, url)
        fail(
            f"cannot reach the node at {url} ({type(exc).__name__}: {exc or 'no answer'}); "
            "is it running? Check with `sharechain network status` (or start it with "
            "`sharechain network up` / `sharechain node start`)"
        )
    except SharechainError as exc:
        fail(f"the node at {url} refused: {exc}" if _refusal(exc) else str(exc))


def _where(exc: httpx.TransportError, default: str) -> str:
    """The node a failed request went to (a custodian's, not always the command's node)."""
    try:
        u = exc.request.url
    except RuntimeError:  # raised before a request was made
        return default
    return f"{u.scheme}://{u.netloc.decode('ascii')}"


def _refusal(exc: SharechainError) -> bool:
    return "HTTP 401" in str(exc) or "HTTP 403" in str(exc)


@contextmanager
def open_backend(
    data_dir: Path | None, target: Target, as_org: str | None = None
) -> Iterator[Backend]:
    """The embedded data directory, or the node `target` names signing as `as_org`."""
    if not target.remote:
        with open_embedded(data_dir) as emb:
            yield EmbeddedBackend(emb)
        return
    client, keys = connect(data_dir, target, as_org)
    nodes = None
    if target.network is not None:
        with handle_errors():
            listed = _load_network(target.network)["nodes"]
        nodes = {str(n["org"]): str(n["url"]) for n in listed}
    try:
        with node_errors(client.base_url):
            yield RemoteBackend(client, keys, nodes=nodes, data_dir=data_dir)
    finally:
        client.close()
