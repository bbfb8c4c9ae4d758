"""A newly admitted organisation's node joining a running network.

The consortium admits the organisation on the chain (`sharechain org propose`
… `org vote`); its node then starts with `node start --join URL`, where URL
is any member's node. Before the node starts, `join_network` asks that node
(`GET /v1/join`, signed with the new organisation's key, so it answers only
once the admission has committed there) for the consortium's configuration,
its genesis block and signed genesis note, its ordering settings and its
peers; checks that the genesis hashes to the consortium's genesis hash (and
to `--genesis-hash`, when the operator got it out of band, which is the way
to not trust the first peer with the consortium's identity); and writes them
into the node's data directory. A directory that already holds another
consortium is refused. The node then syncs from its peers like any node,
from genesis or from a snapshot (`--from-snapshot URL`); nobody stops.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from sharechain.api.client import MAX_PEER_JSON_BYTES, NodeClient, NotANodeError
from sharechain.api.node_start import JoinDocument
from sharechain.api.problems import SIGNED_ERRORS
from sharechain.api.serving import Auth
from sharechain.crypto.keyfile import load_keys
from sharechain.errors import ConfigError, EncodingError, SharechainError
from sharechain.ledger.blocks import decode_block
from sharechain.node.service import Node
from sharechain.storage.datadir import CONFIG, GENESIS_NOTE, DataDir

__all__ = ["JoinRefusedError", "Joined", "join_network", "register"]


class JoinRefusedError(ConfigError):
    """Joining was refused: the peer would not answer, or what it sent is not the consortium's.

    Nothing was written to the data directory.
    """


@dataclass(frozen=True, slots=True)
class Joined:
    """What a joining node learnt from the member it joined through."""

    consortium: str
    """The consortium's name."""
    genesis_hash: bytes
    """Its genesis hash, checked against the genesis block."""
    peers: tuple[tuple[str, str], ...]
    """(organisation, URL) of the nodes to follow: the member joined through, and its peers."""
    ordering: str
    """`solo` or `etcd`."""
    orderer_url: str | None
    """solo: the ordering node's URL."""
    etcd_endpoints: tuple[str, ...]
    """etcd: the members' client URLs, as the peer knows them."""
    etcd_prefix: str
    """etcd: the chain's key prefix."""


def register(app: FastAPI, node: Node) -> None:
    """Add `GET /v1/join` to `app`."""

    @app.get("/v1/join", tags=["membership"], response_model=JoinDocument, responses=SIGNED_ERRORS)
    def join(who: Auth) -> dict[str, Any]:
        """What a member's new node needs to join: configuration, genesis, ordering, peers."""
        cfg = node.config
        path = node.datadir.path
        return {
            "org": node.org,
            "consortium": json.loads((path / CONFIG).read_text("utf-8")),
            "genesis": node.datadir.genesis_bytes().hex(),
            "genesis_note": node.datadir.genesis_note(),
            "ordering": cfg.ordering,
            "orderer_url": cfg.orderer_url,
            "etcd_endpoints": list(cfg.etcd_endpoints),
            "etcd_prefix": cfg.etcd_prefix,
            "peers": [[org, url] for org, url in cfg.peers if org != who.org],
        }


def _fetch(url: str, data_dir: Path, org: str) -> dict[str, Any]:
    key_path = data_dir / "keys" / f"{org}.key"
    if not key_path.exists():
        raise JoinRefusedError(
            f"no key file for {org} in {data_dir / 'keys'}: put the key generated at "
            "`sharechain org propose` there (mode 0600)"
        )
    keys = load_keys(key_path)
    try:
        with NodeClient(url, org, keys.signing, timeout=30.0) as client:
            body = client.get_json("/v1/join", cap=MAX_PEER_JSON_BYTES)
    except NotANodeError as exc:
        raise JoinRefusedError(
            f"{url} does not answer as a sharechain node ({exc}): check the URL given to --join"
        ) from None
    except (httpx.HTTPError, SharechainError) as exc:
        raise JoinRefusedError(
            f"the node at {url} did not let {org} join: {exc}; has the consortium admitted "
            f"{org} yet (`sharechain org propose` ... `org vote`)?"
        ) from None
    except (KeyError, TypeError, ValueError) as exc:  # not JSON, or not a node's answer
        raise JoinRefusedError(
            f"{url} does not answer as a sharechain node ({type(exc).__name__}: {exc}): "
            "check the URL given to --join"
        ) from None
    if not isinstance(body, dict):
        raise JoinRefusedError(f"the node at {url} sent a malformed join document")
    return body


def _checked(
    body: dict[str, Any], url: str, expected: bytes | None
) -> tuple[dict[str, Any], bytes]:
    try:
        config = body["consortium"]
        genesis = bytes.fromhex(body["genesis"])
        claimed = bytes.fromhex(config["genesis_hash"])
        block = decode_block(genesis)
        str(body["genesis_note"])
    except (KeyError, TypeError, ValueError, EncodingError) as exc:
        raise JoinRefusedError(f"the node at {url} sent a malformed join document: {exc}") from None
    if block.height != 0 or block.hash() != claimed:
        raise JoinRefusedError(
            f"the genesis block the node at {url} sent does not hash to the genesis hash of its "
            "configuration: refusing to join"
        )
    if expected is not None and claimed != expected:
        raise JoinRefusedError(
            f"the node at {url} belongs to the consortium {claimed.hex()[:16]}..., not to "
            f"{expected.hex()[:16]}... (--genesis-hash): refusing to join"
        )
    return config, genesis


def join_network(
    data_dir: Path, org: str, url: str, *, genesis_hash: bytes | None = None
) -> Joined:
    """Fetch and check the consortium's configuration from the node at `url`; write it here."""
    body = _fetch(url, data_dir, org)
    config, genesis = _checked(body, url, genesis_hash)
    claimed = bytes.fromhex(config["genesis_hash"])
    if (data_dir / CONFIG).exists():
        mine = DataDir.open(data_dir)
        if mine.genesis_hash != claimed:
            raise JoinRefusedError(
                f"{data_dir} already holds the consortium {mine.genesis_hash.hex()[:16]}..., and "
                f"the node at {url} is of {claimed.hex()[:16]}...: use another --data-dir"
            )
    else:
        for name, data in (
            ("genesis.cbor", genesis),
            (GENESIS_NOTE, str(body["genesis_note"]).encode()),
            (CONFIG, (json.dumps(config, indent=2) + "\n").encode()),  # last: marks it complete
        ):
            tmp = data_dir / (name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, data_dir / name)
    through = str(body.get("org", ""))
    peers = [(through, url.rstrip("/"))]
    for item in body.get("peers") or []:
        if isinstance(item, list) and len(item) == 2 and item[0] not in (org, through):
            peers.append((str(item[0]), str(item[1])))
    ordering = str(body.get("ordering", "solo"))
    orderer = body.get("orderer_url")
    return Joined(
        consortium=str(config.get("consortium", "")),
        genesis_hash=claimed,
        peers=tuple(peers),
        ordering=ordering,
        orderer_url=(str(orderer) if orderer else url.rstrip("/")) if ordering == "solo" else None,
        etcd_endpoints=tuple(str(e) for e in body.get("etcd_endpoints") or ()),
        etcd_prefix=str(body.get("etcd_prefix", "sharechain/")),
    )
