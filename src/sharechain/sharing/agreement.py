"""Do the peers agree with this ledger? The attestation part of `chain verify`.

Each node signs `(height, block hash, state root)` after every commit
(`sharechain.ledger.attestations`). `chain verify` reports, per peer, the latest
attestation it signed and whether it matches our chain at that height:

- the embedded default holds one ledger and has no peers: not applicable;
- a node's data directory (it holds `node.json`, written by `sharechain node
  start`) is compared here with what its peers sign: each peer's recent
  attestations are fetched, their signatures checked against the peer's key
  on our chain, and the highest one at or below our height compared with our
  block hash and state root;
- with `--node URL`, the node's own comparison (`GET /v1/attestations/status`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sharechain.api.client import NodeClient
from sharechain.contracts import queries
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import InvalidSignatureError, SharechainError
from sharechain.ledger.attestations import Attestation, Conflict, verify_attestation
from sharechain.ledger.store import Store

__all__ = [
    "NODE_FILE",
    "AttestationReport",
    "NodeFile",
    "PeerAgreement",
    "compare_with_peers",
    "from_node_status",
    "not_applicable",
    "read_node_file",
    "write_node_file",
]

NODE_FILE = "node.json"
_EMBEDDED = "not applicable (embedded, single ledger)"


@dataclass(frozen=True, slots=True)
class NodeFile:
    """What `sharechain node start` leaves in its data directory: who it is, its peers."""

    org: str
    """The node's organisation."""
    url: str
    """Where it serves its API."""
    peers: tuple[tuple[str, str], ...]
    """(organisation, URL) of the other nodes."""


def write_node_file(data_dir: Path, node: NodeFile) -> None:
    body = {"org": node.org, "url": node.url, "peers": dict(node.peers)}
    tmp = data_dir / (NODE_FILE + ".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    tmp.replace(data_dir / NODE_FILE)


def read_node_file(data_dir: Path) -> NodeFile | None:
    """The node file of `data_dir`; None on the embedded default (there is none)."""
    path = data_dir / NODE_FILE
    if not path.exists():
        return None
    try:
        body = json.loads(path.read_text())
        return NodeFile(
            str(body["org"]), str(body["url"]), tuple(sorted(dict(body["peers"]).items()))
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise SharechainError(f"{path} is corrupt ({exc}); start the node again") from None


@dataclass(frozen=True, slots=True)
class PeerAgreement:
    """One peer's latest attestation and whether it matches our chain."""

    org: str
    """The peer."""
    height: int
    """Height of its latest attestation (-1: none seen)."""
    block_hash: bytes
    """Block hash it attested there (empty: none seen)."""
    state_root: bytes
    """State root it attested there (empty: none seen)."""
    checked: int
    """Highest height of its attestations compared with ours (-1: none yet)."""
    agrees: bool | None
    """True if everything compared matches, False on a conflict, None if nothing compared."""
    error: str = ""
    """Why its attestations could not be read or trusted ("" when they were)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "org": self.org,
            "height": self.height,
            "block_hash": self.block_hash.hex(),
            "state_root": self.state_root.hex(),
            "checked": self.checked,
            "agrees": self.agrees,
            "error": self.error,
        }

    def describe(self) -> str:
        if self.error:
            return f"{self.org}: {self.error}"
        if self.height < 0:
            return f"{self.org}: no attestation seen yet"
        seen = (
            f"{self.org}: latest attested height {self.height}, block "
            f"{self.block_hash.hex()[:16]}, state root {self.state_root.hex()[:16]}"
        )
        if self.agrees is None:
            return f"{seen}; not compared yet (above our height)"
        verdict = "agrees" if self.agrees else "DISAGREES"
        return f"{seen}; {verdict} with ours (checked up to height {self.checked})"


@dataclass(frozen=True, slots=True)
class AttestationReport:
    """The peers' agreement with one ledger."""

    applicable: bool
    """False on the embedded default (one ledger, no peers)."""
    source: str
    """Where the comparison was made, in words."""
    org: str
    """Our organisation ("" on the embedded default)."""
    height: int
    """Our height."""
    peers: tuple[PeerAgreement, ...]
    """Each peer."""
    conflicts: tuple[str, ...]
    """Each disagreement, naming the peer, the height and what differs."""

    @property
    def ok(self) -> bool:
        return not self.conflicts

    def to_json(self) -> dict[str, Any]:
        return {
            "applicable": self.applicable,
            "source": self.source,
            "org": self.org,
            "height": self.height,
            "ok": self.ok,
            "peers": [p.to_json() for p in self.peers],
            "conflicts": list(self.conflicts),
        }


def not_applicable(height: int) -> AttestationReport:
    return AttestationReport(False, _EMBEDDED, "", height, (), ())


def _hex(value: Any) -> bytes:
    return bytes.fromhex(value) if isinstance(value, str) else b""


def from_node_status(url: str, body: Mapping[str, Any]) -> AttestationReport:
    """A node's `GET /v1/attestations/status` answer as a report."""
    peers = []
    for p in body.get("peers", []):
        latest = p.get("latest") or {}
        checked = int(p.get("checked", -1))
        peers.append(
            PeerAgreement(
                str(p["org"]),
                int(p.get("height", -1)),
                _hex(latest.get("block_hash")),
                _hex(latest.get("state_root")),
                checked,
                bool(p["agrees"]) if checked >= 0 or not p["agrees"] else None,
            )
        )
    conflicts = tuple(str(c.get("detail", c)) for c in body.get("conflicts", []))
    return AttestationReport(
        True,
        f"node {url} (its own comparison)",
        str(body.get("org", "")),
        int(body.get("height", -1)),
        tuple(peers),
        conflicts,
    )


def _fetch(url: str, keys: OrgKeys) -> list[Attestation]:
    with NodeClient(url, keys.org, keys.signing, timeout=5.0) as client:
        return client.attestations()


def compare_with_peers(store: Store, node: NodeFile, keys: OrgKeys) -> AttestationReport:
    """Fetch each peer's attestations and compare them with the ledger in `store`."""
    head = store.head()
    ours = -1 if head is None else head.height
    public = {o.id: o.sign_key for o in queries.organisations(store) if o.active}
    peers: list[PeerAgreement] = []
    conflicts: list[str] = []
    for org, url in node.peers:
        try:
            atts = [a for a in _fetch(url, keys) if a.org == org]
        except (httpx.HTTPError, SharechainError) as exc:
            peers.append(PeerAgreement(org, -1, b"", b"", -1, None, f"unreachable at {url}: {exc}"))
            continue
        if org not in public:
            peers.append(PeerAgreement(org, -1, b"", b"", -1, None, "not an active organisation"))
            continue
        try:
            for a in atts:
                verify_attestation(a, public[org])
        except InvalidSignatureError:
            peers.append(
                PeerAgreement(org, -1, b"", b"", -1, None, "attestation signature does not verify")
            )
            continue
        if not atts:
            peers.append(PeerAgreement(org, -1, b"", b"", -1, None))
            continue
        latest = max(atts, key=lambda a: a.height)
        comparable = [a for a in atts if a.height <= ours]
        checked, agrees = -1, None
        for a in sorted(comparable, key=lambda a: a.height):
            meta = store.block_meta(a.height)
            if meta is None:
                continue
            checked = a.height
            same = a.block_hash == meta.hash and a.state_root == meta.state_root
            agrees = same if agrees is None else agrees and same
            if not same:
                conflicts.append(Conflict(org, a.height, a, meta.hash, meta.state_root).describe())
        peers.append(
            PeerAgreement(org, latest.height, latest.block_hash, latest.state_root, checked, agrees)
        )
    return AttestationReport(
        True,
        f"this ledger compared with its peers' attestations (node {node.org})",
        node.org,
        ours,
        tuple(peers),
        tuple(conflicts),
    )
