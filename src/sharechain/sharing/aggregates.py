"""Secure aggregation between organisations' nodes: each side's steps, written once.

The flow is drawn in `sharing.computations`; the masking, proofs and dropout
recovery are `sharechain.privacy.aggregation`. Messages (canonical CBOR, one
kind each, in the parties' mailboxes):

- ``agg.announce`` to every party (the sender included): its mask public key
  and the one Shamir share of its mask key meant for that recipient;
- ``agg.submission`` to the aggregator: masked values, masked blindings (32
  bytes each), the Pedersen commitments and range proofs;
- ``agg.unmask`` from the aggregator to the survivors, when some parties
  dropped: who dropped and who submitted;
- ``agg.shares`` back: the survivor's shares of the dropped parties' keys;
- ``agg.result`` to the contributors: the sums, whose SHA-256 (of their CBOR)
  is on the chain, so every contributor gets the same.

The aggregator's own side posts its submission and returns; its shares of
dropped parties' keys come from its own mailbox when it computes the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sharechain.codec import decode
from sharechain.codec import encode as cbor
from sharechain.contracts.computations import (
    COMMIT,
    MAX_CHECKED_VALUES,
    RECEIPT,
    RESULT,
    Computation,
)
from sharechain.errors import ConfigError, EncodingError, SharechainError
from sharechain.privacy import aggregation as agg
from sharechain.sharing.computations import HOUR_MS, accept_and_open, propose, refuse, sha
from sharechain.sharing.sessions import (
    ComputationError,
    Computing,
    Steps,
    alive,
    end_session,
    until_mail,
)

__all__ = ["AggregateOutcome", "aggregate_propose", "aggregate_result", "aggregate_side"]


@dataclass(frozen=True, slots=True)
class AggregateOutcome:
    """A session's result as every contributor receives it."""

    session: str
    """The session."""
    sums: tuple[Decimal, ...]
    """The exact sum of the contributors' values, position by position."""
    contributors: tuple[str, ...]
    """Whose values are in the sums."""
    dropped: tuple[str, ...]
    """Who dropped out."""

    @property
    def means(self) -> tuple[Decimal, ...]:
        """The sums divided by the number of contributors."""
        return tuple(s / len(self.contributors) for s in self.sums)


def aggregate_propose(
    cx: Computing,
    aggregator: str,
    parties: Sequence[str],
    *,
    length: int,
    purpose: str,
    bits: int = 32,
    scale: int = 0,
    max_dropouts: int = 0,
    duration_ms: int = HOUR_MS,
    supervisor_approval: bool = True,
) -> str:
    """Propose an aggregation among `parties` (the aggregator first, and a contributor)."""
    payload = {
        "kind": "aggregate",
        "parties": [aggregator, *(p for p in parties if p != aggregator)],
        "purpose": purpose,
        "duration": duration_ms,
        "length": length,
        "bits": bits,
        "scale": scale,
        "max_dropouts": max_dropouts,
        "supervisor_approval": supervisor_approval,
    }
    return propose(cx, aggregator, payload)


def _session(c: Computation) -> agg.Session:
    lim = c.limits
    return agg.Session(
        bytes.fromhex(c.id), c.parties, lim["length"], lim["max_dropouts"], lim["bits"]
    )


def _announcements(c: Computation, me: str, mail: dict[str, bytes]) -> list[agg.Announcement]:
    found = []
    for sender, raw in mail.items():
        try:
            body = decode(raw)
            key, share = bytes(body["public_key"]), bytes(body["share"])
        except (SharechainError, KeyError, TypeError, ValueError):
            raise ComputationError(f"{sender}'s announcement is malformed") from None
        shares = (agg.KeyShare(sender, me, share),) if share else ()
        found.append(agg.Announcement(sender, key, shares))
    return found


def _submission(c: Computation, sender: str, raw: bytes) -> agg.Submission:
    n = c.limits["length"]
    try:
        body = decode(raw)
        masked, blinds = bytes(body["masked"]), bytes(body["blindings"])
        if len(masked) != 8 * n or len(blinds) != 32 * n:
            raise EncodingError(f"need {n} values and {n} blindings")
        return agg.Submission(
            sender,
            tuple(int.from_bytes(masked[8 * i : 8 * i + 8], "big") for i in range(n)),
            tuple(int.from_bytes(blinds[32 * i : 32 * i + 32], "little") for i in range(n)),
            tuple(bytes(x) for x in body["commitments"]),
            tuple(bytes(x) for x in body["proofs"]),
        )
    except (SharechainError, KeyError, TypeError, ValueError) as exc:
        raise ComputationError(f"{sender}'s submission is malformed ({exc})") from None


def _encode_submission(sub: agg.Submission) -> bytes:
    return cbor(
        {
            "masked": b"".join(v.to_bytes(8, "big") for v in sub.masked),
            "blindings": b"".join(b.to_bytes(32, "little") for b in sub.masked_blindings),
            "commitments": list(sub.commitments),
            "proofs": list(sub.proofs),
        }
    )


def _fixed(c: Computation, values: Sequence[Decimal | int | str]) -> list[int]:
    scale, bits = c.limits.get("scale", 0), c.limits["bits"]
    if len(values) != c.limits["length"]:
        raise ConfigError(f"session {c.id} takes {c.limits['length']} values, not {len(values)}")
    fixed = [agg.to_fixed(v, scale) for v in values]
    for i, v in enumerate(fixed):
        if v >= 1 << bits:
            raise ConfigError(
                f"value {i} is out of range: at scale {scale} it must stay below 2^{bits} "
                f"({agg.from_fixed((1 << bits) - 1, scale)} at most)"
            )
    return fixed


def aggregate_side(
    cx: Computing, me: str, session: str, values: Sequence[Decimal | int | str]
) -> Steps[AggregateOutcome | None]:
    """A party's side: accept, announce, submit; then help unmask and take the result.

    The aggregator's side returns None once its submission is posted (it then
    runs `aggregate_result`); every other side waits for the result.
    """
    c = alive(cx, session)
    if c.kind != "aggregate":
        raise ConfigError(f"computation {session} is not an aggregation")
    fixed = _fixed(c, values)  # refused before anything is sent
    c = yield from accept_and_open(cx, me, session)
    state, ann = agg.start(_session(c), me, cx.rng)
    mine = {s.holder: s.share for s in ann.shares}
    for peer in c.parties:
        body = cbor({"public_key": ann.public_key, "share": mine.get(peer, b"")})
        cx.mailbox.post(session, me, peer, "agg.announce", body)
    mail = yield from until_mail(cx, session, me, "agg.announce", c.parties, "the announcements")
    announcements = _announcements(c, me, mail)
    cx.progress("proving", 0, len(fixed))
    sub = agg.submit(state, announcements, fixed, cx.rng)
    cx.progress("proving", len(fixed), len(fixed))
    commit: dict[str, Any] = {
        "session": session,
        "digest": sha(b"".join(sub.commitments)),
        "size": len(fixed),
    }
    if len(fixed) <= MAX_CHECKED_VALUES:  # short vectors: the chain checks the proofs itself
        commit |= {"commitments": list(sub.commitments), "proofs": list(sub.proofs)}
    cx.submit(me, COMMIT, commit)
    cx.mailbox.post(session, me, c.proposer, "agg.submission", _encode_submission(sub))
    if me == c.proposer:
        return None
    released = False
    while (c := alive(cx, session)).status != "done":
        ask = cx.mailbox.read(session, me, "agg.unmask").get(c.proposer)
        if ask is not None and not released:
            body = decode(ask)
            shares = agg.release_shares(state, announcements, body["dropped"], body["submitted"])
            cx.mailbox.post(session, me, c.proposer, "agg.shares", _encode_shares(shares))
            released = True
        yield "the aggregator's result"
    result = yield from until_mail(cx, session, me, "agg.result", [c.proposer], "the sums")
    outcome = _outcome(c, result[c.proposer])
    cx.submit(me, RECEIPT, {"session": session})
    return outcome


def _encode_shares(shares: Sequence[agg.KeyShare]) -> bytes:
    return cbor([[s.owner, s.share] for s in shares])


def _outcome(c: Computation, raw: bytes) -> AggregateOutcome:
    assert c.result is not None
    if sha(raw) != c.result["sums_digest"]:
        raise ComputationError(f"the sums {c.proposer} sent are not the ones on the chain")
    body = decode(raw)
    scale = c.limits.get("scale", 0)
    return AggregateOutcome(
        c.id,
        tuple(agg.from_fixed(v, scale) for v in body["sums"]),
        tuple(body["contributors"]),
        tuple(p for p in c.parties if p not in body["contributors"]),
    )


def aggregate_result(
    cx: Computing, me: str, session: str, *, grace: float = 60.0
) -> Steps[AggregateOutcome]:
    """The aggregator: collect, unmask, check, record and send the sums.

    Parties that have not submitted `grace` seconds after this side started
    count as dropped; with more than the session allows, the session ends.
    """
    c = alive(cx, session)
    if me != c.proposer or c.kind != "aggregate":
        raise ConfigError(f"{me} is not the aggregator of computation {session}")
    started = cx.now()
    mail = yield from until_mail(cx, session, me, "agg.announce", c.parties, "the announcements")
    while True:
        c = alive(cx, session)
        got = cx.mailbox.read(session, me, "agg.submission")
        arrived = {p: raw for p, raw in got.items() if p in c.committed}
        if len(arrived) == len(c.parties) or cx.now() - started > grace:
            break
        yield f"the submissions ({len(arrived)} of {len(c.parties)} so far)"
    dropped = [p for p in c.parties if p not in arrived]
    if len(dropped) > c.limits["max_dropouts"]:
        status = end_session(cx, me, session, f"{len(dropped)} parties never submitted")
        raise ComputationError(
            f"{', '.join(dropped)} never submitted; at most {c.limits['max_dropouts']} may "
            f"drop out, so computation {session} is {status} with no result"
        )
    try:
        subs = [_submission(c, p, raw) for p, raw in arrived.items()]
        for sub in subs:
            if sha(b"".join(sub.commitments)) != c.committed[sub.participant][0]:
                raise ComputationError(f"{sub.participant}'s submission is not the one committed")
    except ComputationError as exc:
        refuse(cx, me, session, "a party", exc)
    announcements = _announcements(c, me, mail)
    released: list[agg.KeyShare] = []
    if dropped:
        survivors = list(arrived)
        ask = cbor({"dropped": dropped, "submitted": survivors})
        others = [p for p in survivors if p != me]
        for p in others:
            cx.mailbox.post(session, me, p, "agg.unmask", ask)
        own = [s for a in announcements if a.participant in dropped for s in a.shares]
        released.extend(own)
        shares = yield from until_mail(cx, session, me, "agg.shares", others, "key shares")
        for holder, raw in shares.items():
            try:
                released.extend(agg.KeyShare(str(o), holder, bytes(s)) for o, s in decode(raw))
            except (SharechainError, TypeError, ValueError) as exc:
                refuse(cx, me, session, holder, EncodingError(f"malformed shares ({exc})"))
    try:
        result = agg.aggregate(_session(c), announcements, subs, released)
    except agg.AggregationError as exc:
        status = end_session(cx, me, session, "the sums did not check out")
        raise ComputationError(f"{exc}; computation {session} is {status}") from None
    body = cbor({"sums": list(result.sums), "contributors": list(result.contributors)})
    payload = {"session": session, "contributors": list(result.contributors)}
    cx.submit(me, RESULT, payload | {"sums_digest": sha(body)})
    for p in result.contributors:
        if p != me:
            cx.mailbox.post(session, me, p, "agg.result", body)
    cx.submit(me, RECEIPT, {"session": session})
    return _outcome(alive(cx, session), body)
