"""The data-sharing state machine: pure, deterministic contracts.

`default_registry()` is every contract a sharechain node runs: the notary,
membership, datasets, key epochs, access requests, grants, risk control,
masking profiles and masked releases (`dataset.transform`).
See docs/contracts.md for every transaction type, who may send it and its
codes. Other layers name transaction types and refusal codes through the
constants here (and `derive_id` for the id of what a transaction creates),
never by string literals of their own.
"""

from __future__ import annotations

from sharechain.contracts import (
    access,
    anchors,
    computations,
    datasets,
    epochs,
    grants,
    membership,
    notary,
    profiles,
    risk,
    transforms,
)
from sharechain.contracts.codes import CODES
from sharechain.contracts.ids import derive_id
from sharechain.ledger.contract import ContractRegistry

__all__ = [
    "ACCESS_APPROVE",
    "ACCESS_CANCEL",
    "ACCESS_REJECT",
    "ACCESS_REQUEST",
    "ALERTS_CLEAR",
    "CODES",
    "DATASET_DERIVE",
    "DATASET_EPOCH",
    "DATASET_POLICY",
    "DATASET_PURGE",
    "DATASET_REGISTER",
    "DATASET_RETIRE",
    "DATASET_TRANSFORM",
    "DATASET_VERSION",
    "GRANT_KEY_RELEASE",
    "GRANT_READ",
    "GRANT_REVOKE",
    "NOTARY_ENDORSE",
    "NOTARY_RECORD",
    "ORG_PROPOSE",
    "ORG_ROTATE_KEY",
    "ORG_VOTE",
    "PROFILE_REGISTER",
    "TX_TYPES",
    "default_registry",
    "derive_id",
]

ORG_PROPOSE = membership.PROPOSE
ORG_VOTE = membership.VOTE
ORG_ROTATE_KEY = membership.ROTATE
DATASET_REGISTER = datasets.REGISTER
DATASET_VERSION = datasets.VERSION
DATASET_DERIVE = datasets.DERIVE
DATASET_RETIRE = datasets.RETIRE
DATASET_PURGE = datasets.PURGE
DATASET_POLICY = datasets.POLICY
DATASET_EPOCH = epochs.EPOCH
DATASET_TRANSFORM = transforms.TRANSFORM
PROFILE_REGISTER = profiles.REGISTER
ACCESS_REQUEST = access.REQUEST
ACCESS_APPROVE = access.APPROVE
ACCESS_REJECT = access.REJECT
ACCESS_CANCEL = access.CANCEL
GRANT_KEY_RELEASE = grants.KEY_RELEASE
GRANT_READ = grants.READ
GRANT_REVOKE = grants.REVOKE
ALERTS_CLEAR = risk.CLEAR
NOTARY_RECORD = notary.RECORD
NOTARY_ENDORSE = notary.ENDORSE

TX_TYPES = (
    ORG_PROPOSE,
    ORG_VOTE,
    ORG_ROTATE_KEY,
    DATASET_REGISTER,
    DATASET_VERSION,
    DATASET_DERIVE,
    DATASET_RETIRE,
    DATASET_PURGE,
    DATASET_POLICY,
    DATASET_EPOCH,
    DATASET_TRANSFORM,
    PROFILE_REGISTER,
    ACCESS_REQUEST,
    ACCESS_APPROVE,
    ACCESS_REJECT,
    ACCESS_CANCEL,
    GRANT_KEY_RELEASE,
    GRANT_READ,
    GRANT_REVOKE,
    ALERTS_CLEAR,
    NOTARY_RECORD,
    NOTARY_ENDORSE,
    anchors.FOLLOW,
    anchors.KEYS,
    anchors.RECORD,
    *computations.TX_TYPES,
)
"""Every transaction type the contracts handle."""


def default_registry() -> ContractRegistry:
    """All contracts, keyed by transaction type."""
    registry = notary.registry()
    for module in (
        membership,
        datasets,
        epochs,
        access,
        grants,
        risk,
        profiles,
        transforms,
        anchors,
        computations,
    ):
        registry = registry.merged(module.registry())
    return registry
