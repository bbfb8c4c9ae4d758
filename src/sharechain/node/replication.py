"""The loops that order and replicate blocks between nodes, and which a node runs.

`start_roles` starts what the node's configuration asks for:

- `builder` / `etcd_builder` and `elector` (`sharechain.node.builder`): cut
  the queue into blocks, solo or on the etcd log, and hold the leader lease;
- `etcd_watcher` (`sharechain.node.etcd_watch`): commits the etcd log's
  blocks in order;
- `follower` (here): in `solo` mode, long-polls the orderer's `/v1/sync/blocks`;
- `peer_poller` (here): asks each peer for its status every `poll_interval`
  seconds: heights for the metrics, attestations for fork detection.

Blocks received from elsewhere are validated and committed by
`sharechain.node.arrivals`. Every loop is bounded by the node's stop event,
backs off on errors, and is started again if it fails (`Node.spawn`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx

from sharechain.api.client import BLOCKS_ANSWER_BYTES
from sharechain.api.peer_client import PeerClient
from sharechain.errors import (
    AuthenticationError,
    NotFoundError,
    OrderingError,
    SharechainError,
)
from sharechain.node.arrivals import apply_remote, apply_remote_blocks, catch_up_from_peers
from sharechain.node.builder import builder, elector, etcd_builder
from sharechain.node.etcd_watch import ensure_genesis_in_log, etcd_watcher
from sharechain.node.service import Node
from sharechain.node.vouching import Seen, receive_attestations
from sharechain.ordering.etcd_lease import Election
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.storage.diskspace import DiskFullError

__all__ = [
    "apply_remote",
    "apply_remote_blocks",
    "catch_up_from_peers",
    "reached_the_head",
    "start_roles",
]

log = logging.getLogger("sharechain.node")

SYNC_LIMIT = 64
"""Blocks a follower asks its orderer for at once."""


def reached_the_head(blocks: Sequence[bytes], limit: int, max_block_bytes: int) -> bool:
    """Whether an answer of `/v1/sync/blocks` (at most `limit` blocks) held every block
    its node had when it answered: fewer than asked for, with room under
    `BLOCKS_ANSWER_BYTES` for any further block (none is over `max_block_bytes`).

    A follower that committed such an answer counts as caught up: the blocks after
    it were built since, so they are recent (the clock bound for live blocks,
    `ledger.blocktime`, then holds them). An empty answer is one; under steady load
    it never comes, so it cannot be the only sign.
    """
    return len(blocks) < limit and sum(map(len, blocks)) + max_block_bytes <= BLOCKS_ANSWER_BYTES


def start_roles(node: Node) -> None:
    """Start the loops the node's configuration asks for."""
    cfg = node.config
    if cfg.ordering == "etcd" or cfg.orderer_url is not None:
        node.pipeline.start()  # it validates blocks others built (`node.follow_pipeline`)
    if cfg.ordering == "etcd":
        etcd = EtcdLog(
            cfg.etcd_endpoints,
            prefix=cfg.etcd_prefix,
            timeout=5.0,
            max_block_bytes=cfg.max_block_bytes,
            page_size=16,
            watch_idle_timeout=2.0,
            tls=cfg.etcd_tls,
        )
        node.on_close(etcd.close)
        ensure_genesis_in_log(node, etcd)
        # Lease renewals must not queue behind slow appends, and must give up
        # well within the TTL: a connection of their own, a short timeout.
        election = Election(
            EtcdLog(
                cfg.etcd_endpoints,
                prefix=cfg.etcd_prefix,
                timeout=2.0,
                page_size=1,
                tls=cfg.etcd_tls,
            )
        )
        node.on_close(election.log.close)
        node.spawn("etcd-watch", lambda: etcd_watcher(node, etcd))
        node.spawn("elector", lambda: elector(node, election))
        node.spawn("builder", lambda: etcd_builder(node, etcd, election))
    elif cfg.orderer_url is None:
        catch_up_from_peers(node)
        node.caught_up = True
        node.spawn("builder", lambda: builder(node, None))
    else:
        upstream = PeerClient(node, cfg.orderer_url, timeout=30.0)
        node.on_close(upstream.close)
        forwarder = PeerClient(node, cfg.orderer_url, timeout=30.0)
        node.on_close(forwarder.close)

        def forward(raws: Sequence[bytes]) -> None:
            try:
                forwarder.get().submit(list(raws), wait=False)
            except httpx.HTTPError as exc:
                raise OrderingError(
                    f"the orderer at {cfg.orderer_url} is unreachable ({exc}); retry later"
                ) from None

        node.forward = forward
        node.spawn("follower", lambda: _follower(node, upstream))
    if cfg.peers:
        node.spawn("peer-poller", lambda: _peer_poller(node))


def _follower(node: Node, upstream: PeerClient) -> None:
    failures = 0
    while not node.stop_event.is_set() and node.halted is None:
        start = node.ledger.height + 1
        try:
            blocks = upstream.get().sync_blocks(start, limit=SYNC_LIMIT, wait=2.0)
        except NotFoundError as exc:
            # The orderer started from a snapshot past our head: the peers have those blocks.
            log.info("the orderer lacks blocks from %d (%s); asking the peers", start, exc)
            catch_up_from_peers(node)
            if node.ledger.height < start:
                node.stop_event.wait(2.0)
            continue
        except (httpx.HTTPError, SharechainError) as exc:
            if isinstance(exc, AuthenticationError) and node.adopt_file_keys():
                continue  # behind its own rotation: the orderer names the key file's key
            failures += 1
            if failures in (1, 10) or failures % 100 == 0:
                log.warning("cannot reach the orderer: %s", exc)
            node.stop_event.wait(min(2.0, 0.05 * 2 ** min(failures, 6)))
            continue
        failures = 0
        try:
            apply_remote_blocks(node, list(enumerate(blocks, start)))
        except DiskFullError:
            node.stop_event.wait(1.0)  # the guard logged it; try again when space returns
            continue
        if (
            not node.caught_up
            and node.ledger.height >= start + len(blocks) - 1
            and reached_the_head(blocks, SYNC_LIMIT, node.config.max_block_bytes)
        ):
            node.caught_up = True


def _peer_poller(node: Node) -> None:
    timeout = max(2.0, node.config.poll_interval)
    clients = {org: PeerClient(node, url, timeout=timeout) for org, url in node.config.peers}
    # Each peer's status repeats its last 16 attestations: the ones handed to the
    # book in the last poll under the same key are not parsed and checked again.
    known: dict[str, set[Seen]] = {}
    try:
        while not node.stop_event.wait(node.config.poll_interval):
            for org, client in clients.items():
                try:
                    status = client.get().status()
                except (httpx.HTTPError, SharechainError) as exc:
                    node.peer_errors[org] = str(exc)[:300]
                    continue
                node.peer_errors.pop(org, None)
                height = int(status.get("height", -1))
                if height > node.ledger.height:
                    node.log_is_mine = False  # somebody appended past us: watch again
                node.peer_heights[org] = height
                node.metrics.peer_height.labels(org).set(height)
                known[org] = receive_attestations(
                    node, org, status.get("attestations", []), known.get(org, set())
                )
                node.refusals.receive(org, status.get("refusals", []), node.public_key(org))
            node.poll_rounds += 1
    finally:
        for client in clients.values():
            client.close()
