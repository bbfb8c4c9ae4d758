"""Privacy budgets: how much epsilon one grantee has been given of one dataset.

Differential-privacy losses add up: two noised releases of a dataset to the
same grantee cost the sum of their epsilons. A dataset's policy may set a
`privacy_budget`; every masked release to a grantee (`dataset.transform`)
adds the epsilon its profile spent to `budget/<dataset>/<grantee>`, and a
release that would take the sum over the budget is refused (`over_budget`).
The approval that would issue a masked grant is refused the same way when
the profile's own epsilon no longer fits, so a grantee is not handed a grant
that can never be served.

Epsilons are exact fractions, kept as text (`3/2`), so every peer adds them
alike; a budget of none (empty) is unlimited, but the spending is still kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from sharechain.contracts.codes import OVER_BUDGET
from sharechain.ledger.contract import Reject, State

__all__ = ["budget_key", "check_budget", "form_epsilon", "spend", "spent"]


def budget_key(ds: str, grantee: str) -> str:
    return f"budget/{ds}/{grantee}"


def spent(state: State, ds: str, grantee: str) -> Fraction:
    """Epsilon released of `ds` to `grantee` so far."""
    value = state.get(budget_key(ds, grantee))
    return Fraction(value["spent"]) if value is not None else Fraction(0)


def form_epsilon(form: Mapping[str, Any]) -> Fraction:
    """The epsilon a registered profile form spends: the sum over its noised columns."""
    rules = [rule for _, rule in form["columns"]]
    if form["default"]["rule"] == "noise":  # a default noise rule is refused by privacy/
        rules.append(form["default"])
    return sum((Fraction(r["epsilon"]) for r in rules if r["rule"] == "noise"), Fraction(0))


def check_budget(
    state: State, ds: str, grantee: str, policy: Mapping[str, Any], epsilon: Fraction
) -> None:
    """Refuse (`over_budget`) when `epsilon` more would exceed the policy's budget."""
    budget = policy.get("privacy_budget", "")
    if not budget or epsilon == 0:
        return
    used = spent(state, ds, grantee)
    if used + epsilon > Fraction(budget):
        raise Reject(
            OVER_BUDGET,
            f"a masked release spending epsilon {epsilon} would take {grantee}'s privacy "
            f"spending on dataset {ds} to {used + epsilon}, over the policy's budget of "
            f"{budget} ({used} spent); the owner may raise privacy_budget or choose a "
            "profile with less noise epsilon",
        )


def spend(state: State, ds: str, grantee: str, epsilon: Fraction, height: int) -> None:
    """Add `epsilon` to what `grantee` was released of `ds`."""
    total = spent(state, ds, grantee) + epsilon
    state.put(budget_key(ds, grantee), {"spent": str(total), "height": height})
