"""Joint computations as the faces use them: `Plane.computations()` returns `Computations`.

One object, embedded or over the nodes, whose methods run one organisation's
side of a session to its end (the command line: one process per
organisation) or, with `together`, several sides interleaved in one thread
(the demo, playing every organisation of an embedded consortium):

- `psi_offer`, `psi_answer` (the holder), `psi_match` (the client);
- `aggregate_propose`, `join`, `aggregate_submit` (every party),
  `aggregate_result` (the aggregator);
- `session` (the chain's record), `side_*` (a side not yet run, for `together`).

Embedded, the mailboxes are files under ``<data dir>/mailbox``; over the
nodes, a message goes to its recipient's node (`node.mailbox`), found from
the signer's node's peers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sharechain.api.client import BUSY_RETRIES, NodeClient
from sharechain.contracts.computations import ACCEPT, Computation
from sharechain.crypto.signing import SigningKey
from sharechain.errors import ConfigError
from sharechain.ordering.solo import Receipt
from sharechain.privacy.psi import CaseRule
from sharechain.sharing import aggregates, computations
from sharechain.sharing.aggregates import AggregateOutcome
from sharechain.sharing.computations import PsiAnswered, PsiMatched
from sharechain.sharing.embedded import Embedded
from sharechain.sharing.mailbox import LocalMailbox, Mailbox, RemoteMailbox, recorded_computation
from sharechain.sharing.remote import known_nodes
from sharechain.sharing.sessions import DEFAULT_TIMEOUT, Computing, Side, drive_all

__all__ = ["Computations", "open_computations"]

Progress = Callable[[str, int, int], None]


def _local_mailbox(emb: Embedded) -> LocalMailbox:
    def computation(session: str) -> Computation:
        return recorded_computation(emb.store, session, "this chain")

    return LocalMailbox(emb.datadir.path / "mailbox", computation)


def _remote_mailbox(client: NodeClient, signing: SigningKey) -> RemoteMailbox:
    nodes: dict[str, NodeClient] = {}
    for org, url in known_nodes(client, None, None).items():
        same = url.rstrip("/") == client.base_url
        nodes[org] = (
            client if same else NodeClient(url, client.org, signing, busy_retries=BUSY_RETRIES)
        )
    return RemoteMailbox(client, nodes)


class Computations:
    """PSI and secure aggregation sessions over one plane (see the module doc)."""

    def __init__(self, cx: Computing, close: Callable[[], None] = lambda: None) -> None:
        self.cx = cx
        """The chain, the mailboxes, randomness and clock the sides run with."""
        self._close = close

    def close(self) -> None:
        self._close()

    def __enter__(self) -> Computations:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def session(self, session: str) -> Computation:
        """A session as the chain records it."""
        return self.cx.mailbox.computation(session)

    def join(self, org: str, session: str) -> Receipt:
        """Accept a session as `org` (a party)."""
        return self.cx.submit(org, ACCEPT, {"session": session})

    @staticmethod
    def together(sides: Sequence[Side], *, timeout: float = DEFAULT_TIMEOUT) -> list[Any]:
        """Run several sides (of one plane or of several) interleaved; their outcomes."""
        return drive_all(sides, timeout=timeout)

    # -- PSI ------------------------------------------------------------------------

    def psi_offer(self, holder: str, client: str, **options: Any) -> str:
        """Propose a PSI session (`computations.psi_offer` options); its id."""
        return computations.psi_offer(self.cx, holder, client, **options)

    def side_psi_answer(
        self, holder: str, session: str, values: Iterable[str], case: CaseRule = "fold"
    ) -> Side:
        """The holder's side, to run with `together` (outcome: `PsiAnswered`)."""
        steps = computations.psi_holder(self.cx, holder, session, values, case=case)
        return Side(self.cx, holder, session, steps)

    def side_psi_match(
        self, client: str, session: str, values: Iterable[str], case: CaseRule = "fold"
    ) -> Side:
        """The client's side, to run with `together` (outcome: `PsiMatched`)."""
        steps = computations.psi_client(self.cx, client, session, values, case=case)
        return Side(self.cx, client, session, steps)

    def psi_answer(
        self,
        holder: str,
        session: str,
        values: Iterable[str],
        *,
        case: CaseRule = "fold",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> PsiAnswered:
        """The holder's side, to its end (waits for the client's request)."""
        out: PsiAnswered = drive_all(
            [self.side_psi_answer(holder, session, values, case)], timeout=timeout
        )[0]
        return out

    def psi_match(
        self,
        client: str,
        session: str,
        values: Iterable[str],
        *,
        case: CaseRule = "fold",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> PsiMatched:
        """The client's side, to its end (waits for the holder's answer)."""
        out: PsiMatched = drive_all(
            [self.side_psi_match(client, session, values, case)], timeout=timeout
        )[0]
        return out

    # -- secure aggregation -------------------------------------------------------------

    def aggregate_propose(self, aggregator: str, parties: Sequence[str], **options: Any) -> str:
        """Propose an aggregation (`aggregates.aggregate_propose` options); its id."""
        return aggregates.aggregate_propose(self.cx, aggregator, parties, **options)

    def side_aggregate_submit(
        self, org: str, session: str, values: Sequence[Decimal | int | str]
    ) -> Side:
        """A party's side (outcome: `AggregateOutcome`, None for the aggregator)."""
        return Side(self.cx, org, session, aggregates.aggregate_side(self.cx, org, session, values))

    def side_aggregate_result(self, org: str, session: str, grace: float = 60.0) -> Side:
        """The aggregator's side (outcome: `AggregateOutcome`)."""
        steps = aggregates.aggregate_result(self.cx, org, session, grace=grace)
        return Side(self.cx, org, session, steps)

    def aggregate_submit(
        self,
        org: str,
        session: str,
        values: Sequence[Decimal | int | str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> AggregateOutcome | None:
        """A party's side: submit, then (except the aggregator) wait for the sums."""
        out: AggregateOutcome | None = drive_all(
            [self.side_aggregate_submit(org, session, values)], timeout=timeout
        )[0]
        return out

    def aggregate_result(
        self, org: str, session: str, *, grace: float = 60.0, timeout: float = DEFAULT_TIMEOUT
    ) -> AggregateOutcome:
        """The aggregator's side: collect (dropouts after `grace` s), unmask, record, send."""
        out: AggregateOutcome = drive_all(
            [self.side_aggregate_result(org, session, grace)], timeout=timeout
        )[0]
        return out


def open_computations(
    submit: Callable[[str, str, Mapping[str, Any]], Receipt],
    *,
    embedded: Embedded | None,
    client: NodeClient | None,
    signing: SigningKey | None = None,
    rng: Callable[[int], bytes] = os.urandom,
    progress: Progress | None = None,
    poll: float = 0.2,
) -> Computations:
    """`Computations` over the embedded data directory, or over the signer's node."""
    mailbox: Mailbox
    closers: list[Callable[[], None]] = []
    if embedded is not None:
        mailbox = _local_mailbox(embedded)
    elif client is not None and signing is not None:
        remote = _remote_mailbox(client, signing)
        mailbox = remote
        closers = [c.close for c in remote.nodes.values() if c is not client]
    else:
        raise ConfigError("computations need a data directory, or a node and the signer's key")
    cx = Computing(
        submit,
        mailbox,
        rng=rng,
        now=time.monotonic,
        poll=poll,
        progress=progress or (lambda what, done, total: None),
    )

    def close() -> None:
        for c in closers:
            c()

    return Computations(cx, close)
