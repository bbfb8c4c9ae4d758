"""The data plane as the faces see it: one `Plane`, embedded or over the nodes.

`Plane.local(data_dir)` opens the embedded default (one data directory holds
the whole development consortium); `Plane.connect(node_url)` or
`Plane.connect(network=file)` reaches a node's REST API signing as one
organisation (its key file from `key=`, or the data or consortium
directory). Either way the same methods answer:

- the read side (`ports.Queries`): `resolve`, `chain_info`, `proof` (verified),
  `notary`, `organisations`, `proposals`, `catalogue`, `dataset`, `lineage`,
  `request(s)`, `inbox`, `grants`, `alerts`, `audit` (every proof verified),
  `grant`, and `submit` for one signed transaction;
- the data plane, each operation written once over the ports
  (`sharing.publish`, `fetch`, `rotation`, `purge`): `publish`, `fetch`,
  `rotate`, `revoke`, `rotate_after_revoke`, `purge`, `shred`; and an
  organisation's own key rotation, `rotate_keys`.

The command line, the demo and the console build a Plane and never touch
SQLite or HTTP themselves. Notes for the operator (a rotation only the owner
can do, a node that did not shred) go to `warn`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sharechain.api.client import BUSY_RETRIES, NodeClient, trust_ca
from sharechain.contracts import membership
from sharechain.contracts.access import AccessRequest
from sharechain.contracts.datasets import Dataset
from sharechain.contracts.membership import Proposal
from sharechain.contracts.notary import NotaryRecord
from sharechain.contracts.queries import AuditEntry, GrantView, Lineage
from sharechain.contracts.risk import Alert
from sharechain.crypto.keyfile import OrgKeys, load_keys
from sharechain.crypto.stream import DEFAULT_SEGMENT_SIZE
from sharechain.errors import ConfigError
from sharechain.ledger.identities import Organisation
from sharechain.ledger.proofs import TxProof
from sharechain.ordering.solo import Receipt
from sharechain.sharing import fetch, publish, purge, rotation
from sharechain.sharing.embedded import Embedded
from sharechain.sharing.local import LocalChain, local_ports
from sharechain.sharing.ports import Ports, Queries, quiet
from sharechain.sharing.records import (
    CatalogueQuery,
    ChainInfo,
    Fetched,
    Listing,
    Progress,
    Published,
    PurgeReport,
    Revoked,
    Rotated,
)
from sharechain.sharing.remote import NodeSet
from sharechain.sharing.remote_chain import RemoteChain
from sharechain.storage.datadir import DataDir, default_data_dir
from sharechain.storage.vault import rewrap

if TYPE_CHECKING:  # masking and joint computation load pyarrow, numpy and libsodium:
    # imported where used, so publishing and fetching start without them.
    from sharechain.sharing import masked
    from sharechain.sharing.computing import Computations

__all__ = ["NETWORK_FILE", "Plane", "load_network"]

NETWORK_FILE: Final = "network.json"
"""The file `sharechain network up` writes in its directory: the nodes and their URLs."""


def load_network(path: Path) -> dict[str, Any]:
    """A network file (or the directory holding it) of a network that is up."""
    file = path / NETWORK_FILE if path.is_dir() else path
    if not file.exists():
        raise ConfigError(f"no network file {file}; start a network with `sharechain network up`")
    try:
        body: dict[str, Any] = json.loads(file.read_text())
        body["nodes"] = list(body["nodes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{file} is not a network file ({exc})") from None
    if body.get("state") != "up":
        raise ConfigError(
            f"the network in {file.parent} is {body.get('state', 'not up')}; "
            "start it with `sharechain network up`"
        )
    return body


def _signer(key: Path | None, key_dir: Path, org: str | None) -> OrgKeys:
    """The signer's keys: the key file `key`, or `org`'s key file in `key_dir`."""
    if key is not None:
        keys = load_keys(key)
        if org is not None and keys.org != org:
            raise ConfigError(f"key file {key} belongs to {keys.org}, not {org}")
        return keys
    dd = DataDir.open(key_dir)
    if org is None:
        held = dd.held_orgs()
        if len(held) != 1:
            raise ConfigError(
                "say which organisation signs the requests to the node: --as ORG "
                f"(keys held in {key_dir / 'keys'}: {', '.join(held) or 'none'}) or --key FILE"
            )
        org = held[0]
    return dd.keys(org)


class Plane:
    """The chain and the data plane, embedded or over the nodes (see the module doc)."""

    def __init__(
        self,
        queries: Queries,
        ports: Callable[[str, bool], AbstractContextManager[Ports]],
        close: Callable[[], None],
        *,
        where: str,
        embedded: Embedded | None = None,
        client: NodeClient | None = None,
    ) -> None:
        self._queries = queries
        self._ports = ports
        self._close = close
        self.where = where
        """The data directory, or the URL of the node the plane talks to."""
        self.embedded = embedded
        """The embedded data directory (None in node mode)."""
        self.client = client
        """The node's client (None on the embedded default)."""

    # -- opening ----------------------------------------------------------------------

    @classmethod
    def local(
        cls,
        data_dir: Path | None = None,
        *,
        now: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = os.urandom,
        warn: Callable[[str], None] = quiet,
        check_store: bool = True,
    ) -> Plane:
        """The embedded default in `data_dir` (default: $SHARECHAIN_HOME or ~/.sharechain).

        `check_store=False` only for the tools that verify the store themselves
        (`chain verify`, `chain export`, `chain info`): such a Plane refuses to submit.
        """
        emb = Embedded(
            data_dir if data_dir is not None else default_data_dir(),
            now=now,
            rng=rng,
            check_store=check_store,
        )

        @contextmanager
        def ports(org: str, owner: bool) -> Iterator[Ports]:
            yield local_ports(emb, warn)

        return cls(LocalChain(emb), ports, emb.close, where=str(emb.datadir.path), embedded=emb)

    @classmethod
    def connect(
        cls,
        node: str | None = None,
        *,
        network: Path | None = None,
        key: Path | None = None,
        as_org: str | None = None,
        data_dir: Path | None = None,
        warn: Callable[[str], None] = quiet,
    ) -> Plane:
        """A node's API (`node` URL, or the signer's node in the `network` file).

        Signs as `as_org` with its key file in `data_dir` (or the network's consortium
        directory), or with the key file `key`; without either, as the one organisation
        whose key the directory holds (with a network file: the first node's).
        """
        listed: dict[str, str] | None = None
        if network is not None:
            net = load_network(network)
            if isinstance(net.get("tls"), dict) and net["tls"].get("ca"):
                trust_ca(str(net["tls"]["ca"]))  # every client of this process: peers too
            listed = {str(n["org"]): str(n["url"]) for n in net["nodes"]}
            first = str(net["nodes"][0]["org"])
            org = as_org if as_org is not None or key is not None else first
            keys = _signer(key, Path(net["consortium_dir"]), org)
            url = node or listed.get(keys.org, listed[first])
        elif node is not None:
            keys = _signer(key, data_dir if data_dir is not None else default_data_dir(), as_org)
            url = node
        else:
            raise ConfigError("give a node's URL or a network file to connect to")
        client = NodeClient(url, keys.org, keys.signing, timeout=30.0, busy_retries=BUSY_RETRIES)
        nodes = NodeSet(client, keys, listed, data_dir)

        @contextmanager
        def ports(org: str, owner: bool) -> Iterator[Ports]:
            if org != keys.org:
                raise ConfigError(f"this command signs as {keys.org}, not {org}")
            with nodes.ports(owner=owner, warn=warn) as made:
                yield made

        return cls(
            RemoteChain(client, keys), ports, client.close, where=client.base_url, client=client
        )

    def close(self) -> None:
        self._close()

    def __enter__(self) -> Plane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the data plane ---------------------------------------------------------------

    def publish(
        self,
        org: str,
        source: Path,
        listing: Listing,
        progress: Progress | None = None,
        *,
        inline_limit: int | None = None,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> Published:
        """Seal `source` as `org`, keep its key per custody, register it with epoch 1."""
        with self._ports(org, True) as ports:
            return publish.publish(
                ports,
                org,
                source,
                listing,
                inline_limit=inline_limit,
                segment_size=segment_size,
                progress=progress,
            )

    def fetch(
        self,
        org: str,
        gid: str,
        out: Path,
        *,
        offline: frozenset[str] = frozenset(),
        progress: Progress | None = None,
        dataset: str | None = None,
    ) -> Fetched:
        """Have the custodians release under `gid`, open into `out`, check, sign the read."""
        with self._ports(org, False) as ports:
            return fetch.fetch(
                ports, org, gid, out, dataset=dataset, offline=offline, progress=progress
            )

    def rotate(
        self, org: str, ds: str, *, reason: str = "rotation", progress: Progress | None = None
    ) -> Rotated:
        """Move `ds` to a new key epoch as its owner `org`; the old keys and blob destroyed."""
        with self._ports(org, True) as ports:
            return rotation.rotate(ports, org, ds, reason=reason, progress=progress)

    def rotate_after_revoke(self, org: str, gid: str) -> Rotated | None:
        """After `gid` was revoked: a new key epoch (None when none is made; see `rotation`)."""
        with self._ports(org, self._owns(org, gid)) as ports:
            return rotation.rotate_after_revoke(ports, gid)

    def revoke(self, org: str, gid: str, *, reason: str = "") -> Revoked:
        """Revoke `gid` as `org` (the owner or a supervisor), then rotate the key epoch."""
        with self._ports(org, self._owns(org, gid)) as ports:
            return rotation.revoke(ports, org, gid, reason=reason)

    def produce_masked(self, org: str, gid: str) -> masked.Transformed | None:
        """After `gid` was issued under a masking profile: the owner's masked version.

        Issue 15 hook (sharing/masked.py): None when nothing is due, and in node
        mode, where the owner's node produces it by itself.
        """
        if self.embedded is None:
            return None  # node mode: the owner's node does it (sharing/masking_job.py)
        from sharechain.sharing import masked  # pyarrow and numpy only when masking

        owner = self._queries.grant(gid).grant.owner
        with self._ports(owner, True) as ports:
            return masked.produce(ports, owner, gid)

    def _owns(self, org: str, gid: str) -> bool:
        return self._queries.grant(gid).grant.owner == org

    def purge(self, org: str, ds: str, *, reason: str = "") -> PurgeReport:
        """Record the purge of `ds` as `org`, then shred it wherever it is held."""
        with self._ports(org, False) as ports:
            return purge.purge(ports, org, ds, reason=reason)

    def rotate_keys(self, org: str, old: OrgKeys) -> tuple[Receipt, OrgKeys]:
        """Rotate `org`'s keys (`old` are its current ones) to fresh ones; the chain first.

        Embedded, the organisation's vault is then re-wrapped to the new key and its
        key file replaced. Over the nodes the caller writes the new key file; the
        organisation's node re-wraps its vault when it takes the file
        (`node.keyring`), and `storage.vault.rewrap` does it for a node directory
        at hand.
        """
        new = OrgKeys.generate(org)
        msg = membership.rotation_message(org, new.signing.public_key, new.encryption_public)
        payload = {
            "sign_key": new.signing.public_key,
            "enc_key": new.encryption_public,
            "proof": new.signing.sign(membership.ROTATE_DOMAIN, msg),
        }
        receipt = self.submit(org, membership.ROTATE, payload)
        if self.embedded is not None:
            # The vault first: a key file replaced before would leave entries that only
            # the lost old key opens.
            rewrap(self.embedded.datadir.path, old, new)
            self.embedded.datadir.save_keys(new)
            self.embedded._keys.pop(org, None)  # Embedded caches keys; it has no public reset
        return receipt, new

    def shred(self, org: str, ds: str, purge_tx: bytes) -> PurgeReport:
        """After the purge `purge_tx` committed: destroy the keys and blobs of `ds`."""
        with self._ports(org, False) as ports:
            return purge.shred(ports, ds, purge_tx)

    def computations(self, progress: Callable[[str, int, int], None] | None = None) -> Computations:
        """PSI and secure aggregation sessions over this plane (`sharing.computing`)."""
        from sharechain.sharing.computing import open_computations  # libsodium when used

        q = self._queries
        signing = q.me.signing if isinstance(q, RemoteChain) else None
        return open_computations(
            self.submit,
            embedded=self.embedded,
            client=self.client,
            signing=signing,
            progress=progress,
        )

    # -- the read side ----------------------------------------------------------------

    def submit(self, org: str, type: str, payload: Mapping[str, Any]) -> Receipt:
        """Sign as `org`, submit, wait for the commit; raise unless the code is valid."""
        return self._queries.submit(org, type, payload)

    def resolve(self, kind: str, prefix: str) -> str:
        """The full id of a dataset, request, grant, proposal or alert from a unique prefix."""
        return self._queries.resolve(kind, prefix)

    def chain_info(self) -> ChainInfo:
        return self._queries.chain_info()

    def proof(self, tx_id: bytes) -> TxProof:
        """A transaction's inclusion proof, verified against the chain's block hash."""
        return self._queries.proof(tx_id)

    def notary(self, digest: bytes) -> NotaryRecord | None:
        return self._queries.notary(digest)

    def organisations(self) -> list[Organisation]:
        return self._queries.organisations()

    def proposals(self) -> list[Proposal]:
        return self._queries.proposals()

    def catalogue(
        self,
        *,
        owner: str | None = None,
        tag: str | None = None,
        classification: str | None = None,
        text: str | None = None,
        include_inactive: bool = False,
    ) -> list[Dataset]:
        query = CatalogueQuery(owner, tag, classification, text, include_inactive)
        return self._queries.catalogue(query)

    def dataset(self, ds: str) -> Dataset:
        return self._queries.dataset(ds)

    def lineage(self, ds: str) -> Lineage:
        return self._queries.lineage(ds)

    def request(self, rid: str) -> AccessRequest:
        return self._queries.request(rid)

    def requests(self, *, org: str | None = None, ds: str | None = None) -> list[AccessRequest]:
        return self._queries.requests(org=org, ds=ds)

    def inbox(self, org: str) -> list[AccessRequest]:
        return self._queries.inbox(org)

    def grants(self, *, org: str | None = None, ds: str | None = None) -> list[GrantView]:
        return self._queries.grants(org=org, ds=ds)

    def alerts(self, *, open_only: bool = True) -> list[Alert]:
        return self._queries.alerts(open_only=open_only)

    def audit(
        self, *, ds: str | None = None, grant_id: str | None = None, org: str | None = None
    ) -> list[AuditEntry]:
        """An audit trail, every entry's proof verified."""
        return self._queries.audit(ds=ds, grant_id=grant_id, org=org)

    def grant(self, gid: str) -> GrantView:
        return self._queries.grant(gid)
