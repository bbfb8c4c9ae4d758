"""The consortium's default policy, read from a node: `GET /v1/policies/default`.

A dataset registered without a policy gets the consortium's default: the
genesis governance setting `default_policy`, or else the built-in one (the
owner and one supervisor approve jointly). `sharechain dataset
publish|register|derive --masking P` without `--policy FILE` adds the
profile to that default. On an embedded chain the command line reads the
setting from the store; on the nodes it asks this route, so both put the
same policy on the chain.

Every member may read it (the route is signed like every `/v1` route). The
answer is the policy in its wire form (`contracts.policies.Policy` field by
field, as in a dataset's record), and whether the consortium set it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

from fastapi import FastAPI
from pydantic import BaseModel

from sharechain.api.problems import SIGNED_ERRORS
from sharechain.api.records import Model, record_model
from sharechain.api.serving import Auth, ServingNode
from sharechain.api.wire import jsonable
from sharechain.contracts.governance import governance_from_mapping
from sharechain.contracts.policies import Policy, PolicyError, policy_from_mapping
from sharechain.errors import ConfigError
from sharechain.ledger.genesis import GOVERNANCE_KEY
from sharechain.ledger.state import StateReader

__all__ = ["DEFAULT_POLICY_PATH", "DefaultPolicyReply", "default_policy", "register"]

DEFAULT_POLICY_PATH = "/v1/policies/default"

# Built at import time from the dataclass (as in `api.models`).
if TYPE_CHECKING:
    PolicyModel: TypeAlias = BaseModel
else:
    PolicyModel = record_model(Policy)


class DefaultPolicyReply(Model):
    """The policy a dataset registered without one gets."""

    policy: PolicyModel
    """The consortium's default policy (the built-in one when `configured` is false)."""
    configured: bool
    """Whether the genesis governance settings name a `default_policy`."""


def default_policy(store: Any) -> tuple[Policy, bool]:
    """The consortium's default policy in `store`, and whether governance sets it.

    Raises `ConfigError` when the setting does not parse (every registration
    without a policy is then refused by the contract, saying the same).
    """
    raw = governance_from_mapping(StateReader(store).get(GOVERNANCE_KEY) or {}).default_policy
    try:
        return policy_from_mapping(raw), raw is not None
    except PolicyError as exc:
        raise ConfigError(
            f"the consortium's governance setting default_policy does not parse: {exc}; "
            "give a policy file (--policy FILE)"
        ) from None


def register(app: FastAPI, node: ServingNode) -> None:
    """Add `GET /v1/policies/default` to `app`."""

    @app.get(
        DEFAULT_POLICY_PATH,
        response_model=DefaultPolicyReply,
        tags=["queries"],
        responses=SIGNED_ERRORS,
    )
    def policies_default(who: Auth) -> dict[str, Any]:
        """The consortium's default policy: what a dataset registered without one gets."""
        policy, configured = default_policy(node.store)
        return {"policy": jsonable(policy), "configured": configured}
