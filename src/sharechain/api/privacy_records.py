"""Bodies of the privacy reads: computation sessions, transformation records, privacy budgets.

The routes are in `sharechain.api.state_routes` (`GET /v1/computations`,
`/v1/grants/{gid}/transformation`, `/v1/datasets/{ds}/transformations`,
`/v1/datasets/{ds}/budgets`); one session is `GET /v1/computations/{session}`
of `sharechain.sharing.mailbox_routes`, whose body (`api.mailbox.ComputationView`) the
list repeats. The records behind them are `contracts.privacy_queries`'s.
`computation_from_view` turns a session's body back into the chain's record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from pydantic import BaseModel

from sharechain.api.mailbox import ComputationView
from sharechain.api.records import Model, record_model
from sharechain.contracts.computations import Computation, computation_from_value
from sharechain.contracts.privacy_queries import Budget, Transformation

__all__ = [
    "BudgetList",
    "BudgetModel",
    "ComputationList",
    "TransformationList",
    "TransformationModel",
    "TransformationReply",
    "computation_from_view",
]

# Built at import time from the dataclasses (as in `api.models`).
if TYPE_CHECKING:
    BudgetModel: TypeAlias = BaseModel
    TransformationModel: TypeAlias = BaseModel
else:
    BudgetModel = record_model(Budget)
    TransformationModel = record_model(Transformation)


class ComputationList(Model):
    """Computation sessions, newest first."""

    computations: list[ComputationView]
    total: int
    """How many sessions matched (the list stops at the `limit` asked for)."""


class TransformationReply(Model):
    """The transformation record of a grant's masked release."""

    transformation: TransformationModel | None
    """None until the owner has made the masked version."""


class TransformationList(Model):
    """The transformation records of the masked versions made from one dataset."""

    transformations: list[TransformationModel]


class BudgetList(Model):
    """The privacy budget spent on one dataset, per grantee."""

    budgets: list[BudgetModel]


def computation_from_view(body: Mapping[str, Any]) -> Computation:
    """The chain's record of a session from its API body (`ComputationView`)."""
    value = dict(body)
    value["commits"] = {
        k: {"digest": bytes.fromhex(c["digest"]), "size": c["size"]}
        for k, c in body["commits"].items()
    }
    result = body["result"]
    if result is not None and "sums_digest" in result:
        value["result"] = {**result, "sums_digest": bytes.fromhex(result["sums_digest"])}
    return computation_from_value(value)
