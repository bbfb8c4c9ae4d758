"""Queries of the privacy records: computation sessions, masked releases and privacy budgets.

The reads behind the console's privacy pages and the REST API's
`/v1/computations`, `/v1/grants/{id}/transformation`,
`/v1/datasets/{id}/transformations` and `/v1/datasets/{id}/budgets`. Like
`contracts.queries` (whose records they build on), they are point reads and
prefix scans of a peer's state, never a scan of the chain:

- a session is `computation/<id>` (`contracts.computations`);
- a masked release leaves a transformation record, `transform/<grant>`
  (`contracts.transforms`), found from the grants given on the raw dataset;
- a dataset's privacy spending is `budget/<dataset>/<grantee>`
  (`contracts.budgets`), read against the policy's `privacy_budget`.

Who may read which is decided by the faces (the API's routes, the console),
not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from sharechain.contracts import queries
from sharechain.contracts.budgets import budget_key
from sharechain.contracts.computations import Computation, computation_from_value, computation_key
from sharechain.contracts.transforms import transform_key
from sharechain.errors import NotFoundError
from sharechain.ledger.state import StateReader
from sharechain.ledger.store import Store

__all__ = [
    "Budget",
    "Transformation",
    "budgets",
    "computation",
    "computations",
    "transformation",
    "transformations",
]


def computation(store: Store, session: str) -> Computation:
    """One PSI or aggregation session (`contracts.computations`)."""
    value = StateReader(store).get(computation_key(session))
    if value is None:
        raise NotFoundError(f"no computation {session}")
    return computation_from_value(value)


def computations(store: Store, *, party: str | None = None) -> list[Computation]:
    """Computation sessions, newest first; with `party`, only those it takes part in."""
    found = (computation_from_value(v) for _, v in StateReader(store).scan("computation/"))
    out = [c for c in found if party is None or party in c.parties]
    return sorted(out, key=lambda c: (-c.raw["height"], c.id))


@dataclass(frozen=True, slots=True)
class Transformation:
    """The transformation record of a masked release (`contracts.transforms`)."""

    grant: str
    """The grant the masked version was made for."""
    source: str
    """The raw dataset."""
    dataset: str
    """The masked dataset registered for the grant."""
    profile: bytes
    """Digest of the masking profile applied."""
    output_digest: bytes
    """SHA-256 of the masked plaintext."""
    k: int
    """k-anonymity achieved."""
    l: int  # noqa: E741 - the l of l-diversity
    """l-diversity achieved (0: no target)."""
    suppressed: int
    """Rows suppressed below k."""
    rows: int
    """Rows released."""
    epsilon: str
    """Differential-privacy epsilon spent (an exact fraction as text)."""
    height: int
    """Block height of the `dataset.transform` transaction."""


def transformation(store: Store, gid: str) -> Transformation | None:
    """The transformation record of grant `gid`'s masked release, if made yet."""
    v = StateReader(store).get(transform_key(gid))
    if v is None:
        return None
    return Transformation(
        v["grant"],
        v["source"],
        v["dataset"],
        v["profile"],
        v["output_digest"],
        v["k"],
        v["l"],
        v["suppressed"],
        v["rows"],
        v["epsilon"],
        v["height"],
    )


def transformations(store: Store, ds: str) -> list[Transformation]:
    """The transformation records of the masked versions made from dataset `ds`, by grant id."""
    queries.dataset(store, ds)
    out = []
    for view in queries.grants(store, ds=ds):
        g = view.grant
        if g.masking and g.source == ds:
            record = transformation(store, g.id)
            if record is not None:
                out.append(record)
    return out


@dataclass(frozen=True, slots=True)
class Budget:
    """What one grantee was released of one dataset's privacy budget (`contracts.budgets`)."""

    dataset: str
    """The raw dataset."""
    grantee: str
    """Who received the masked releases."""
    spent: str
    """Epsilon released so far (an exact fraction as text)."""
    limit: str
    """The policy's `privacy_budget` (empty: unlimited)."""
    left: str
    """Epsilon still to spend under the limit (an exact fraction as text; empty: unlimited)."""
    height: int
    """Block height of the latest spending."""


def _left(limit: str, spent: str) -> str:
    if not limit:
        return ""
    return str(max(Fraction(0), Fraction(limit) - Fraction(spent)))


def budgets(store: Store, ds: str) -> list[Budget]:
    """The privacy budget spent on dataset `ds`, per grantee."""
    limit = queries.dataset(store, ds).policy.privacy_budget
    prefix = budget_key(ds, "")
    return [
        Budget(ds, key[len(prefix) :], v["spent"], limit, _left(limit, v["spent"]), v["height"])
        for key, v in StateReader(store).scan(prefix)
    ]
