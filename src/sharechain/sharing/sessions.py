"""Running a party's side of a computation: steps that wait, and what ends a session.

Each party's side of a PSI or aggregation session (`sharing.computations`) is
written once as a generator of *steps*: it does what it can, and when it must
wait for another party (an acceptance, a commit on the chain, a message in
its mailbox) it yields a sentence saying for what. Two drivers run them:

- `drive` runs one side until it returns, polling; the command line uses it
  (each organisation runs its own side in its own process);
- `drive_all` interleaves several sides in one thread; the demo and the
  tests use it to play every organisation of an embedded consortium.

A side that waits longer than its timeout ends the session on the chain with
a clear state (`computation.reject` naming what never came, or
`computation.close` once the deadline passed), so no session is left hanging,
and raises `ComputationError` saying so. A session another party ended stops
every side waiting on it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from sharechain.contracts.codes import EXPIRED
from sharechain.contracts.computations import CLOSE, REJECT, Computation
from sharechain.errors import SharechainError, TransactionRejectedError
from sharechain.ordering.solo import Receipt
from sharechain.sharing.mailbox import Mailbox

__all__ = [
    "DEFAULT_TIMEOUT",
    "ComputationError",
    "Computing",
    "Side",
    "Steps",
    "alive",
    "drive",
    "drive_all",
    "end_session",
    "until",
    "until_mail",
]

DEFAULT_TIMEOUT: Final = 600.0
"""Seconds a side waits for the other parties before it ends the session."""

T = TypeVar("T")
Steps = Generator[str, None, T]
"""A party's side: yields what it waits for, returns its outcome."""


class ComputationError(SharechainError):
    """A computation session failed or ended without a result; the message says how."""


@dataclass(frozen=True, slots=True)
class Computing:
    """What a party's side needs: the chain, the mailboxes, randomness and a clock."""

    submit: Callable[[str, str, Mapping[str, Any]], Receipt]
    """Sign as an organisation, submit, wait for the commit (raises unless valid)."""
    mailbox: Mailbox
    """The sessions and their mailboxes."""
    rng: Callable[[int], bytes] = os.urandom
    """Randomness (blinds, mask keys, commitments' blindings)."""
    now: Callable[[], float] = time.monotonic
    """Seconds, for the timeouts."""
    sleep: Callable[[float], None] = time.sleep
    """How a driver waits between polls."""
    poll: float = 0.2
    """Seconds between two looks at the chain and the mailbox."""
    progress: Callable[[str, int, int], None] = field(default=lambda what, done, total: None)
    """Told `(what, done, total)` for long steps (blinding, evaluating, proving)."""


def alive(cx: Computing, session: str) -> Computation:
    """The session; `ComputationError` if it was rejected or expired."""
    c = cx.mailbox.computation(session)
    if c.ended:
        reason = c.raw.get("rejected", {}).get("reason") or ""
        raise ComputationError(
            f"computation {session} was {c.status} on the chain"
            + (f" ({reason})" if reason else "")
            + "; there is no result"
        )
    return c


def until(
    cx: Computing, session: str, ready: Callable[[Computation], T | None], waiting: str
) -> Steps[T]:
    """Wait until `ready(session)` is not None; stop if the session ended."""
    while True:
        found = ready(alive(cx, session))
        if found is not None:
            return found
        yield waiting


def until_mail(
    cx: Computing, session: str, me: str, kind: str, senders: Sequence[str], waiting: str
) -> Steps[dict[str, bytes]]:
    """Wait until `me` has a `kind` message from each of `senders`."""
    while True:
        alive(cx, session)
        got = cx.mailbox.read(session, me, kind)
        if all(s in got for s in senders):
            return {s: got[s] for s in senders}
        yield f"{waiting} from {', '.join(s for s in senders if s not in got)}"


def end_session(cx: Computing, org: str, session: str, why: str) -> str:
    """End `session` as `org` (reject, or close after the deadline); its status after."""
    try:
        cx.submit(org, REJECT, {"session": session, "reason": why[:200]})
    except TransactionRejectedError as exc:
        if exc.code == EXPIRED:
            cx.submit(org, CLOSE, {"session": session})
        elif cx.mailbox.computation(session).status in ("proposed", "open"):
            raise
    return cx.mailbox.computation(session).status


def _timed_out(cx: Computing, org: str, session: str, waiting: str, timeout: float) -> None:
    status = end_session(cx, org, session, f"timed out waiting for {waiting}")
    raise ComputationError(
        f"waited {timeout:g} s for {waiting}; {org} ended computation {session}, "
        f"which is now {status} on the chain with no result"
    )


@dataclass(frozen=True, slots=True)
class Side:
    """One organisation's side of a session, ready to run."""

    cx: Computing
    """What it runs with (its organisation's plane)."""
    org: str
    """The organisation."""
    session: str
    """The session."""
    steps: Steps[Any]
    """Its steps."""


def drive(
    cx: Computing, org: str, session: str, steps: Steps[T], *, timeout: float = DEFAULT_TIMEOUT
) -> T:
    """Run one side (as `org`) to its end; past `timeout` seconds, end the session."""
    outcome: T = drive_all([Side(cx, org, session, steps)], timeout=timeout)[0]
    return outcome


def drive_all(sides: Sequence[Side], *, timeout: float = DEFAULT_TIMEOUT) -> list[Any]:
    """Run several sides in turn until each returned; their outcomes, in order.

    If any side still waits after `timeout` seconds, the first waiting side's
    organisation ends its session and `ComputationError` is raised.
    """
    clock = sides[0].cx
    outcomes: list[Any] = [None] * len(sides)
    waiting: dict[int, str] = {i: "" for i in range(len(sides))}
    give_up = clock.now() + timeout
    while waiting:
        for i in list(waiting):
            try:
                waiting[i] = next(sides[i].steps)
            except StopIteration as done:
                outcomes[i] = done.value
                del waiting[i]
        if not waiting:
            break
        if clock.now() > give_up:
            side = sides[min(waiting)]
            _timed_out(side.cx, side.org, side.session, waiting[min(waiting)], timeout)
        clock.sleep(clock.poll)
    return outcomes
