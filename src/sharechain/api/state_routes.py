"""Read endpoints of the data-sharing state: thin wrappers of `contracts.queries`.

Authorisation by role, decided from the caller's record on the chain:

- every member reads the catalogue, any dataset record, the organisations
  and its own inbox;
- a member reads the requests it sent or that concern its datasets, the
  grants it holds or gave, and the audit trails of its own datasets, of its
  grants and of itself;
- a supervisor reads every request, grant, audit trail and risk alert;
- computation sessions are read by their parties and supervisors; the
  transformation records and privacy budgets of a dataset by its owner and
  supervisors (a grant's own transformation record by its grantee too).

Anything else is a 403 that says which role is needed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query

from sharechain.api.models import (
    AlertList,
    AuditTrail,
    ChainInfo,
    DatasetList,
    DatasetReply,
    FullId,
    GrantList,
    GrantReply,
    LineageReply,
    NotaryReply,
    OrganisationList,
    ProposalList,
    RequestList,
    RequestReply,
)
from sharechain.api.privacy_records import (
    BudgetList,
    ComputationList,
    TransformationList,
    TransformationReply,
)
from sharechain.api.problems import SIGNED_ERRORS
from sharechain.api.serving import Auth, Caller, ServingNode
from sharechain.api.wire import jsonable
from sharechain.contracts import privacy_queries as pq
from sharechain.contracts import queries as q
from sharechain.contracts.notary import notary_record, record_key
from sharechain.errors import AccessDeniedError, EncodingError, NotFoundError
from sharechain.ledger.state import StateReader
from sharechain.sharing.mailbox import view

__all__ = ["register"]

_Text = Annotated[str | None, Query(max_length=256)]
_DOC: dict[str, Any] = {"tags": ["queries"], "responses": SIGNED_ERRORS}
_Limit = Annotated[int, Query(ge=1, le=10_000)]
_Position = Annotated[int, Query(ge=0, le=2**62)]


def register(app: FastAPI, node: ServingNode) -> None:
    """Add the query endpoints to `app`."""
    store = node.store

    def supervisor(who: Caller) -> bool:
        return who.supervisor

    def deny(who: Caller, what: str) -> AccessDeniedError:
        return AccessDeniedError(
            f"{who.org} may not read {what}: members read their own requests, grants and "
            "trails; a supervisor reads every one"
        )

    @app.get("/v1/organisations", response_model=OrganisationList, **_DOC)
    def organisations(who: Auth) -> dict[str, Any]:
        """The consortium's organisations, their roles and public keys."""
        return {"organisations": jsonable(q.organisations(store))}

    @app.get("/v1/catalogue", response_model=DatasetList, **_DOC)
    def catalogue(
        who: Auth,
        owner: _Text = None,
        tag: _Text = None,
        classification: _Text = None,
        text: _Text = None,
        include_inactive: bool = False,
    ) -> dict[str, Any]:
        """Datasets matching every filter given."""
        found = q.catalogue(
            store,
            owner=owner,
            tag=tag,
            classification=classification,
            text=text,
            include_inactive=include_inactive,
        )
        return {"datasets": jsonable(found)}

    @app.get("/v1/datasets/{ds}", response_model=DatasetReply, **_DOC)
    def dataset(ds: str, who: Auth) -> dict[str, Any]:
        """One dataset (id or unique hex prefix)."""
        return {"dataset": jsonable(q.dataset(store, q.resolve(store, "dataset", ds)))}

    @app.get("/v1/inbox", response_model=RequestList, **_DOC)
    def inbox(who: Auth) -> dict[str, Any]:
        """Open requests the caller may approve or reject."""
        return {"requests": jsonable(q.inbox(store, who.org))}

    @app.get("/v1/requests", response_model=RequestList, **_DOC)
    def requests(
        who: Auth,
        org: _Text = None,
        dataset: _Text = None,
    ) -> dict[str, Any]:
        """Requests sent by `org` (default: the caller) or made for `dataset`."""
        if dataset is not None:
            ds = q.dataset(store, q.resolve(store, "dataset", dataset))
            if not supervisor(who) and ds.owner != who.org:
                found = [r for r in q.requests(store, ds=ds.id) if r.requester == who.org]
            else:
                found = q.requests(store, ds=ds.id)
        else:
            org = org or who.org
            if org != who.org and not supervisor(who):
                raise deny(who, f"the requests of {org}")
            found = q.requests(store, org=org)
        return {"requests": jsonable(found)}

    @app.get("/v1/requests/{rid}", response_model=RequestReply, **_DOC)
    def request(rid: str, who: Auth) -> dict[str, Any]:
        """One access request."""
        req = q.request(store, q.resolve(store, "request", rid))
        if not supervisor(who) and who.org not in (req.requester, req.owner):
            raise deny(who, f"request {req.id}")
        return {"request": jsonable(req)}

    @app.get("/v1/grants", response_model=GrantList, **_DOC)
    def grants(
        who: Auth,
        org: _Text = None,
        dataset: _Text = None,
    ) -> dict[str, Any]:
        """Grants held by `org` (default: the caller) or given on `dataset`."""
        if dataset is not None:
            ds = q.dataset(store, q.resolve(store, "dataset", dataset))
            found = q.grants(store, ds=ds.id)
            if not supervisor(who) and ds.owner != who.org:
                found = [g for g in found if g.grant.grantee == who.org]
        else:
            org = org or who.org
            if org != who.org and not supervisor(who):
                raise deny(who, f"the grants of {org}")
            found = q.grants(store, org=org)
        return {"grants": jsonable(found)}

    @app.get("/v1/grants/{gid}", response_model=GrantReply, **_DOC)
    def grant(gid: str, who: Auth) -> dict[str, Any]:
        """One grant with its effective status."""
        view = q.grant(store, q.resolve(store, "grant", gid))
        if not supervisor(who) and who.org not in (view.grant.grantee, view.grant.owner):
            raise deny(who, f"grant {view.grant.id}")
        return {"grant": jsonable(view)}

    @app.get("/v1/audit", response_model=AuditTrail, **_DOC)
    def audit(
        who: Auth,
        dataset: _Text = None,
        grant: _Text = None,
        org: _Text = None,
        proofs: bool = True,
        limit: _Limit = 1000,
        from_height: _Position = 0,
        from_index: _Position = 0,
    ) -> dict[str, Any]:
        """The audit trail of a dataset, a grant or an organisation, with inclusion proofs,
        a page at a time: at most `limit` entries from position (`from_height`,
        `from_index`) on, and at most 32 MiB of blocks read; `next` is where the
        trail goes on (null at its end)."""
        ds_id = grant_id = None
        if dataset is not None:
            ds = q.dataset(store, q.resolve(store, "dataset", dataset))
            if not supervisor(who) and ds.owner != who.org:
                raise deny(who, f"the audit trail of dataset {ds.id}")
            ds_id = ds.id
        elif grant is not None:
            view = q.grant(store, q.resolve(store, "grant", grant))
            if not supervisor(who) and who.org not in (view.grant.grantee, view.grant.owner):
                raise deny(who, f"the audit trail of grant {view.grant.id}")
            grant_id = view.grant.id
        else:
            org = org or who.org
            if org != who.org and not supervisor(who):
                raise deny(who, f"the audit trail of {org}")
        page = q.audit_page(
            store,
            ds=ds_id,
            grant_id=grant_id,
            org=org,  # the trail is the first of the three given
            proofs=proofs,
            limit=limit,
            start=(from_height, from_index),
        )
        more = None if page.next is None else {"height": page.next[0], "index": page.next[1]}
        return {"entries": jsonable(page.entries), "next": more}

    @app.get("/v1/alerts", response_model=AlertList, **_DOC)
    def alerts(who: Auth, open_only: bool = True) -> dict[str, Any]:
        """Risk alerts (supervisors only)."""
        if not supervisor(who):
            raise deny(who, "risk alerts")
        return {"alerts": jsonable(q.alerts(store, open_only=open_only))}

    @app.get("/v1/lineage/{ds}", response_model=LineageReply, **_DOC)
    def lineage(ds: str, who: Auth) -> dict[str, Any]:
        """Ancestors and descendants of a dataset."""
        return {"lineage": jsonable(q.lineage(store, q.resolve(store, "dataset", ds)))}

    # The privacy records (`contracts.privacy_queries`), as the console's privacy pages read them.

    def owned(ds: str, who: Caller, what: str) -> str:
        d = q.dataset(store, q.resolve(store, "dataset", ds))
        if not supervisor(who) and d.owner != who.org:
            raise AccessDeniedError(
                f"{who.org} may not read the {what} of dataset {d.id}: its owner ({d.owner}) "
                "and supervisors read them"
            )
        return d.id

    @app.get("/v1/computations", response_model=ComputationList, **_DOC)
    def computations(who: Auth, party: _Text = None, limit: _Limit = 1000) -> dict[str, Any]:
        """Computation sessions, newest first: the caller's (a supervisor: all, or `party`'s)."""
        if party is not None and party != who.org and not supervisor(who):
            raise AccessDeniedError(
                f"{who.org} may not list the computations of {party}: members list their "
                "own; a supervisor lists every one"
            )
        found = pq.computations(store, party=party if supervisor(who) else who.org)
        return {"computations": [view(c) for c in found[:limit]], "total": len(found)}

    @app.get("/v1/grants/{gid}/transformation", response_model=TransformationReply, **_DOC)
    def transformation(gid: str, who: Auth) -> dict[str, Any]:
        """The transformation record of a grant's masked release (null until it is made)."""
        g = q.grant(store, q.resolve(store, "grant", gid)).grant
        if not supervisor(who) and who.org not in (g.grantee, g.owner):
            raise deny(who, f"the transformation record of grant {g.id}")
        return {"transformation": jsonable(pq.transformation(store, g.id))}

    @app.get("/v1/datasets/{ds}/transformations", response_model=TransformationList, **_DOC)
    def transformations(ds: str, who: Auth) -> dict[str, Any]:
        """The transformation records of the masked versions made from a dataset."""
        found = pq.transformations(store, owned(ds, who, "transformation records"))
        return {"transformations": jsonable(found)}

    @app.get("/v1/datasets/{ds}/budgets", response_model=BudgetList, **_DOC)
    def budgets(ds: str, who: Auth) -> dict[str, Any]:
        """The privacy budget (epsilon) spent on a dataset, per grantee, and what is left."""
        return {"budgets": jsonable(pq.budgets(store, owned(ds, who, "privacy budgets")))}

    # Read by the command line's node mode (`sharechain ... --node URL`).

    @app.get("/v1/chain", response_model=ChainInfo, **_DOC)
    def chain(who: Auth) -> dict[str, Any]:
        """The consortium, its genesis hash, the head and the number of transactions."""
        head = store.head()
        if head is None:
            raise NotFoundError("the ledger holds no blocks yet")
        return {
            "consortium": node.datadir.consortium,
            "genesis_hash": node.datadir.genesis_hash.hex(),
            "height": head.height,
            "head_hash": head.hash.hex(),
            "head_timestamp": head.timestamp,
            "state_root": head.state_root.hex(),
            "transactions": store.tx_count(),
        }

    @app.get("/v1/ids/{kind}/{prefix}", response_model=FullId, **_DOC)
    def full_id(kind: str, prefix: str, who: Auth) -> dict[str, Any]:
        """The full id of a dataset, request, grant, proposal or alert from a unique prefix."""
        if kind not in q.KINDS:
            raise NotFoundError(f"no kind of record {kind!r}; one of {', '.join(q.KINDS)}")
        return {"id": q.resolve(store, kind, prefix)}

    @app.get("/v1/proposals", response_model=ProposalList, **_DOC)
    def proposals(who: Auth) -> dict[str, Any]:
        """Membership proposals and their votes."""
        return {"proposals": jsonable(q.proposals(store))}

    @app.get("/v1/notary/{digest}", response_model=NotaryReply, **_DOC)
    def notary(digest: str, who: Auth) -> dict[str, Any]:
        """The notary record of a SHA-256 digest (hex), with its endorsements."""
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise EncodingError(f"{digest[:80]!r} is not a SHA-256 digest (64 hex digits)")
        value = StateReader(store).get(record_key(raw))
        if value is None:
            raise NotFoundError(f"no notary record of {raw.hex()}")
        return {"record": jsonable(notary_record(value))}
