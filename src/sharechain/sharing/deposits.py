"""Keys deposited with a custodian's node: deposits made ahead of the chain, and taking keys back.

An owner deposits each custodian's key (or share) on that custodian's node
before the dataset's key epoch commits (`PUT /v1/custody/...`, in
`sharechain.sharing.custody_routes`); the node checks a deposit against its own copy of
the chain (`sharechain.contracts.epochs.check_deposit`). Two cases need more:

- before a dataset is registered nobody but its owner knows its id, so such
  deposits cannot be checked against the chain: `PendingDeposits` bounds how
  many such datasets each member may deposit keys of on one node;
- an entry is destroyed by the node's own organisation, or by the dataset's
  owner once the chain moved past its epoch, never recorded it (a failed
  rotation takes its deposits back) or purged the dataset; a dataset not on
  the chain yet by the member that deposited it (`may_destroy`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sharechain.contracts.epochs import current_epoch, epoch_key
from sharechain.contracts.keys import dataset_key
from sharechain.errors import AccessDeniedError, TooLargeError
from sharechain.ledger.state import StateReader

__all__ = ["PendingDeposits", "may_destroy"]


class PendingDeposits:
    """Datasets not on the chain yet that each member deposited keys of; bounded per member.

    Before a dataset is registered nobody but its owner knows its id, so such
    deposits cannot be checked against the chain: each member may hold at most
    `per_member` of them on this node (413 beyond) until its datasets register.
    """

    def __init__(self, per_member: int) -> None:
        self.per_member = per_member
        self._by: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def admit(self, org: str, dataset: str, registered: Callable[[str], bool]) -> None:
        """Raise `TooLargeError` (413) if `org` may not deposit keys of one more such dataset.

        Datasets `registered` since (on the chain now) no longer count.
        """
        with self._lock:
            held = self._by.get(org, set())
            held -= {d for d in held if registered(d)}
            if dataset not in held and len(held) >= self.per_member:
                raise TooLargeError(
                    f"{org} deposited keys of {len(held)} datasets not on the chain yet (at "
                    f"most {self.per_member}); register them before depositing more"
                )

    def add(self, org: str, dataset: str) -> None:
        """Count a deposit `org` made of `dataset` (not on the chain yet)."""
        with self._lock:
            self._by.setdefault(org, set()).add(dataset)

    def deposited(self, org: str, dataset: str) -> bool:
        """Did `org` deposit keys of `dataset` (not on the chain yet) here since the start?"""
        with self._lock:
            return dataset in self._by.get(org, set())

    def drop(self, org: str, dataset: str) -> None:
        """`org` took its deposits of `dataset` back: they no longer count against it."""
        with self._lock:
            self._by.get(org, set()).discard(dataset)


def may_destroy(
    reader: StateReader, dataset: str, epoch: int | None, org: str, pending: PendingDeposits
) -> None:
    """Raise `AccessDeniedError` unless `org` (not this node's) may destroy these entries."""
    ds = reader.get(dataset_key(dataset))
    if ds is None:
        if not pending.deposited(org, dataset):
            raise AccessDeniedError(
                f"dataset {dataset} is not on this node's chain and {org} deposited no keys "
                "of it here; only its depositor takes them back"
            )
        return
    if org != ds["owner"]:
        raise AccessDeniedError(f"only the owner of dataset {dataset} destroys its keys")
    if ds["status"] == "purged":
        return
    current = current_epoch(reader, dataset)
    if epoch is None:
        raise AccessDeniedError(
            f"dataset {dataset} is not purged: name the epoch to destroy (?epoch=N)"
        )
    if reader.get(epoch_key(dataset, epoch)) is None:
        return  # never committed: nothing was released for it, its slot is only in the way
    if current is not None and epoch < current.epoch:
        return
    raise AccessDeniedError(
        f"epoch {epoch} of dataset {dataset} is still current; rotate or purge first"
    )
