"""How a node runs: its organisation, data directory, ordering role and limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sharechain.errors import ConfigError
from sharechain.ledger.blocktime import DEFAULT_MAX_SKEW
from sharechain.ordering import etcd_compact
from sharechain.ordering.etcd_log import DEFAULT_MAX_BLOCK_BYTES
from sharechain.ordering.etcd_tls import EtcdTLS

__all__ = ["ORDERING_MODES", "NodeConfig"]

ORDERING_MODES = ("solo", "etcd")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """How a node runs."""

    data_dir: Path
    """The organisation's data directory (consortium.json, genesis, its key, ledger.db)."""
    org: str
    """The organisation this node belongs to; its key signs blocks, attestations, requests."""
    ordering: str = "solo"
    """`solo` or `etcd`."""
    orderer_url: str | None = None
    """solo only: URL of the ordering node to follow; None means this node orders."""
    etcd_endpoints: tuple[str, ...] = ()
    """etcd only: client URLs of the etcd members."""
    etcd_prefix: str = "sharechain/"
    """etcd only: key prefix of this consortium's log."""
    etcd_tls: EtcdTLS | None = None
    """etcd only: CA, client certificate and key for mutual TLS (None: plain HTTP)."""
    peers: tuple[tuple[str, str], ...] = ()
    """(organisation, URL) of the other nodes: attestations, heights, catch-up."""
    max_block_txs: int = 2000
    """Cut a block at this many transactions..."""
    max_wait: float = 0.02
    """...or when the oldest queued transaction has waited this long (seconds)."""
    max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES
    """Largest block (bytes) this node builds; must fit one etcd request."""
    max_clock_skew: float = DEFAULT_MAX_SKEW
    """Seconds a block received live may be ahead of (or behind) this node's clock."""
    verify_on_start: bool = True
    """Re-verify the whole store on start and quarantine it if it fails."""
    poll_interval: float = 1.0
    """Seconds between asking peers for their heights and attestations."""
    key_check_interval: float = 1.0
    """Seconds between checks whether the organisation's key file or on-chain key changed."""
    compaction_interval: float = etcd_compact.DEFAULT_INTERVAL
    """etcd only: seconds between the leader's pruning rounds (0 turns pruning off)."""
    compaction_keep: int = etcd_compact.DEFAULT_KEEP_BLOCKS
    """etcd only: blocks kept in etcd below the height every member attested."""
    defrag_interval: float = etcd_compact.DEFAULT_DEFRAG_INTERVAL
    """etcd only: seconds between the leader's defragmentations of the etcd members."""
    forward_timeout: float = 30.0
    """etcd only: seconds a follower waits for the leader to commit a forwarded batch
    before it appends the batch itself (`node.doubts`)."""

    def __post_init__(self) -> None:
        if self.ordering not in ORDERING_MODES:
            raise ConfigError(f"--ordering must be one of {ORDERING_MODES}, not {self.ordering!r}")
        if self.ordering == "etcd" and not self.etcd_endpoints:
            raise ConfigError("--ordering etcd needs --etcd-endpoints URL[,URL...]")
