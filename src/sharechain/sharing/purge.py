"""Purging: the record on the chain, then the crypto-shredding wherever material is held.

`dataset.purge` (by the owner or a supervisor) revokes every grant and keeps
the dataset's record, marked purged. Then every place holding key material
or blobs of the dataset destroys them (`Custodian.shred`): on the embedded
default the one data directory (its commit hook has usually done it
already, and the counts are still reported); on a network every node known,
each checking the purge on its own chain first. A node that cannot be
reached is named in the report (and a warning); it shreds by itself when it
commits the purge, or lazily on the next request about the dataset
(`sharechain.sharing.shredding`).
"""

from __future__ import annotations

from sharechain.contracts.datasets import PURGE
from sharechain.sharing.ports import Ports
from sharechain.sharing.records import PurgeReport

__all__ = ["purge", "shred"]


def purge(ports: Ports, by: str, dataset: str, *, reason: str = "") -> PurgeReport:
    """Record the purge on the chain, then destroy every key, share and blob of the dataset.

    Raises `TransactionRejectedError` with the chain's code when the purge is refused
    (not the owner or a supervisor, already purged); nothing is shredded then.
    """
    stx = ports.chain.sign(by, PURGE, {"dataset": dataset, "reason": reason})
    (receipt,) = ports.chain.commit([stx])
    return shred(ports, dataset, receipt.tx_id)


def shred(ports: Ports, dataset: str, purge_tx: bytes) -> PurgeReport:
    """After the purge `purge_tx` committed: every place destroys what it holds of `dataset`."""
    report = PurgeReport(dataset, purge_tx, ports.custodian.shred(dataset, purge_tx))
    for n in report.unreached:
        ports.warn(
            f"[yellow]warning:[/] {n.org}'s node at {n.url} did not shred dataset {dataset} now "
            f"({n.error}); it shreds on its next request about the dataset"
        )
    return report
