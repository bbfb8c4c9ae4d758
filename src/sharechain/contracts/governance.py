"""Governance settings: the consortium's rules, agreed at genesis.

The genesis block writes them to `config/governance`; every setting has a
default here, so an empty map (what `sharechain init` writes) is a working
consortium. Contracts read them through `governance(state)`.

Settings (all optional):

- `admission_votes`: admin votes needed to admit or remove an organisation;
  default `0`, meaning a majority of the active admins (more than half).
- `default_policy`: a policy mapping (see `policies.policy_from_mapping`)
  used for datasets registered without one; default: the owner and one
  supervisor approve jointly.
- `risk.window`: the risk counters' window in ms of block time (default one
  hour, 3,600,000).
- `risk.max_requests`: access requests one organisation may send per window
  before an alert (default 100).
- `risk.max_key_releases`: key releases to one organisation per window before
  an alert (default 1,000).
- `risk.suspend_on_alert`: whether an alert suspends the organisation's grants
  until a supervisor clears it (default true).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sharechain.ledger.contract import State
from sharechain.ledger.genesis import GOVERNANCE_KEY
from sharechain.ledger.state import derived

__all__ = ["Governance", "RiskSettings", "governance", "governance_from_mapping"]

HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class RiskSettings:
    """Thresholds of the per-organisation risk counters."""

    window: int = HOUR_MS
    """Length of a counting window in ms of block time (windows are aligned to 0)."""
    max_requests: int = 100
    """Requests one organisation may send in a window; one more raises an alert."""
    max_key_releases: int = 1000
    """Key releases to one organisation in a window; one more raises an alert."""
    suspend_on_alert: bool = True
    """Whether an alert suspends the organisation's grants until cleared."""


@dataclass(frozen=True, slots=True)
class Governance:
    """The consortium's rules."""

    admission_votes: int = 0
    """Admin votes to admit or remove; 0 means a majority of active admins."""
    default_policy: Mapping[str, Any] | None = None
    """Policy mapping for datasets registered without one (None: owner + supervisor)."""
    risk: RiskSettings = RiskSettings()
    """Risk-control thresholds."""

    def votes_needed(self, active_admins: int) -> int:
        if self.admission_votes > 0:
            return self.admission_votes
        return active_admins // 2 + 1


def _pos_int(m: Mapping[str, Any], name: str, default: int, low: int = 1) -> int:
    value = m.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"governance setting {name} must be an integer of at least {low}")
    return value


def governance_from_mapping(m: Mapping[str, Any]) -> Governance:
    """Parse governance settings, filling in defaults; raises `ValueError`."""
    if not isinstance(m, Mapping):
        raise ValueError("governance settings must be a map")
    risk = m.get("risk", {})
    if not isinstance(risk, Mapping):
        raise ValueError("governance setting risk must be a map")
    suspend = risk.get("suspend_on_alert", True)
    if not isinstance(suspend, bool):
        raise ValueError("governance setting risk.suspend_on_alert must be true or false")
    policy = m.get("default_policy")
    if policy is not None and not isinstance(policy, Mapping):
        raise ValueError("governance setting default_policy must be a policy map")
    return Governance(
        admission_votes=_pos_int(m, "admission_votes", 0, low=0),
        default_policy=policy,
        risk=RiskSettings(
            window=_pos_int(risk, "window", HOUR_MS),
            max_requests=_pos_int(risk, "max_requests", 100),
            max_key_releases=_pos_int(risk, "max_key_releases", 1000),
            suspend_on_alert=suspend,
        ),
    )


def governance(state: State) -> Governance:
    value = state.get(GOVERNANCE_KEY)
    return governance_from_mapping({}) if value is None else derived(value, governance_from_mapping)
