"""Secure aggregation: the sum of everyone's numbers, and nobody's number.

Several employers want the total (hence the mean) of a role's salaries without
any of them, the aggregator, the chain or the supervisor seeing one employer's
figures. Each participant adds to its vector masks that cancel in the sum
(Bonawitz et al., CCS 2017, without the self-mask round)::

    participant i (values x_i)                       aggregator
    fresh X25519 key a_i; Shamir-share a_i among the others
        -- announcement: A_i = a_i*G, shares for j (to j only) -->  (relayed)
    m_ij = PRG(HKDF(X25519(a_i, A_j), session))  for every j != i
    y_i = x_i + sum_{j>i} m_ij - sum_{j<i} m_ij        (mod 2^64)
    C_i = Pedersen(x_i, r_i), range proof of x_i < 2^bits, masked r_i
        -- submission: y_i, masked r_i, C_i, proofs -->
                                         sum_i y_i = sum_i x_i  (the masks cancel)

If participant ``d`` never submits, the masks it shared with the others no
longer cancel. Every survivor then releases its Shamir share of ``a_d`` (and
only of ``d``); with ``threshold`` of them the aggregator rebuilds ``a_d``,
recomputes ``m_dk`` for every survivor ``k`` and removes them. A session
tolerates ``max_dropouts`` participants leaving; with more it fails with
`AggregationError` and gives no result at all.

Values are fixed-point integers (`to_fixed` / `from_fixed`) in ``[0, 2^bits)``;
sums are taken modulo 2^64 and the session requires ``n * 2^bits <= 2^64`` so
the sum never wraps. The PRG is ChaCha20 (RFC 8439, zero nonce: each key is
used once) keyed with HKDF-SHA256 of the X25519 secret, salted with the
session id and bound to both participant names: the first ``8 * length`` bytes
are the value masks (little-endian uint64), the next ``64 * length`` the
blinding masks (reduced modulo the group order).

Every result is checked against the commitments: the sum of the survivors'
Pedersen commitments must open to the sum and to the summed blindings, so a
participant whose masked input differs from what it committed (and proved in
range) makes the session fail rather than return a wrong total.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sharechain.crypto import pedersen, rangeproof, shamir
from sharechain.crypto import ristretto as r255
from sharechain.errors import ConfigError, EncodingError, SharechainError

__all__ = [
    "MIN_PARTICIPANTS",
    "MODULUS",
    "AggregateResult",
    "AggregationError",
    "Announcement",
    "KeyShare",
    "ParticipantState",
    "Session",
    "Submission",
    "aggregate",
    "from_fixed",
    "release_shares",
    "start",
    "submit",
    "to_fixed",
]

MIN_PARTICIPANTS: Final = 3
MODULUS: Final = 1 << 64
_PAIR_INFO = b"sharechain/aggregation/v1/pair-mask"


class AggregationError(SharechainError):
    """The session failed and has no result: too many dropouts, or a check did not hold."""


@dataclass(frozen=True, slots=True)
class Session:
    """The public parameters every participant and the aggregator agree on (from the chain)."""

    session_id: bytes
    """Unique per session; salts every mask and binds every proof."""
    participants: tuple[str, ...]
    """The participants' names, distinct, in the agreed order."""
    length: int
    """How many values each participant contributes."""
    max_dropouts: int
    """How many participants may drop out before the session fails."""
    bits: int = 32
    """Each value is proved to lie in ``[0, 2^bits)``."""

    def __post_init__(self) -> None:
        n = len(self.participants)
        if len(set(self.participants)) != n or n < MIN_PARTICIPANTS:
            raise ConfigError(f"a session needs at least {MIN_PARTICIPANTS} distinct participants")
        if not self.session_id or self.length < 1:
            raise ConfigError("a session needs an id and at least one value per participant")
        if not 0 <= self.max_dropouts <= n - MIN_PARTICIPANTS:
            raise ConfigError(
                f"max_dropouts must be 0..{n - MIN_PARTICIPANTS} so that at least "
                f"{MIN_PARTICIPANTS} participants remain in any result"
            )
        if self.bits < 1 or n << self.bits > MODULUS:
            raise ConfigError(f"{n} values of {self.bits} bits could overflow a 64-bit sum")

    @property
    def threshold(self) -> int:
        """Shares needed to rebuild a dropped participant's key: one per possible survivor."""
        return len(self.participants) - self.max_dropouts


@dataclass(frozen=True, slots=True)
class KeyShare:
    """One Shamir share of a participant's mask key, addressed to one other participant."""

    owner: str
    """Whose key this is a share of."""
    holder: str
    """Who keeps it (sent to the holder only, encrypted in transit)."""
    share: bytes
    """The `sharechain.crypto.shamir.Share` wire form."""

    def __repr__(self) -> str:
        return f"KeyShare(owner={self.owner!r}, holder={self.holder!r})"


@dataclass(frozen=True, slots=True)
class Announcement:
    """A participant's first message: its mask public key and the shares of its private key."""

    participant: str
    """Who announces."""
    public_key: bytes
    """The X25519 public key of this session's mask key."""
    shares: tuple[KeyShare, ...]
    """One share of the private key per other participant."""


@dataclass(frozen=True, slots=True)
class ParticipantState:
    """What a participant keeps between its steps; never sent."""

    session: Session
    """The session."""
    me: str
    """This participant."""
    private_key: bytes
    """The raw X25519 private key of this session's masks."""

    def __repr__(self) -> str:
        return f"ParticipantState(me={self.me!r})"


@dataclass(frozen=True, slots=True)
class Submission:
    """A participant's masked input, with the commitments and proofs that bind it."""

    participant: str
    """Who submits."""
    masked: tuple[int, ...]
    """``x + masks mod 2^64`` per value."""
    masked_blindings: tuple[int, ...]
    """The commitments' blinding factors plus masks, modulo the group order."""
    commitments: tuple[bytes, ...]
    """A Pedersen commitment to each value."""
    proofs: tuple[bytes, ...]
    """A range proof for each commitment, bound to the session, participant and position."""


@dataclass(frozen=True, slots=True)
class AggregateResult:
    """The outcome of a successful session."""

    sums: tuple[int, ...]
    """The exact sum of the contributors' values, position by position."""
    contributors: tuple[str, ...]
    """Whose values are in the sums."""
    dropped: tuple[str, ...]
    """Who dropped out (their masks were removed, their values are not in the sums)."""


def to_fixed(value: Decimal | int | str, scale: int) -> int:
    """A non-negative decimal as an integer with ``scale`` decimal places, exactly."""
    fixed = Decimal(value).scaleb(scale)
    if fixed != fixed.to_integral_value() or fixed < 0:
        raise ConfigError(f"{value} is negative or has more than {scale} decimal places")
    return int(fixed)


def from_fixed(value: int, scale: int) -> Decimal:
    """The decimal a fixed-point integer stands for."""
    return Decimal(value).scaleb(-scale)


def _context(session: Session, participant: str, index: int) -> bytes:
    return rangeproof.session_context(session.session_id, participant, index)


def _pair_masks(
    session: Session, private_key: bytes, me: str, peer: str, peer_public: bytes
) -> tuple[list[int], list[int]]:
    """The masks ``me`` shares with ``peer``, signed for ``me``: + if ``me`` comes first."""
    try:
        secret = X25519PrivateKey.from_private_bytes(private_key).exchange(
            X25519PublicKey.from_public_bytes(peer_public)
        )
    except ValueError:  # wrong length, or a low-order point giving an all-zero secret
        raise AggregationError(
            f"{peer}'s mask public key is not a usable X25519 key: the session cannot proceed"
        ) from None
    first, second = sorted((me, peer), key=session.participants.index)
    info = _PAIR_INFO + b"".join(
        len(n.encode()).to_bytes(2, "big") + n.encode() for n in (first, second)
    )
    key = HKDF(hashes.SHA256(), 32, session.session_id, info).derive(secret)
    n = session.length
    stream = (
        Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(bytes(72 * n))
    )
    values = list(struct.unpack(f"<{n}Q", stream[: 8 * n]))
    blinds = [
        int.from_bytes(stream[8 * n + 64 * k : 8 * n + 64 * (k + 1)], "little") for k in range(n)
    ]
    if me != first:
        values = [MODULUS - v for v in values]
        blinds = [r255.ORDER - b % r255.ORDER for b in blinds]
    return values, blinds


def start(
    session: Session, me: str, rng: Callable[[int], bytes] = os.urandom
) -> tuple[ParticipantState, Announcement]:
    """Draw this session's mask key and split it among the other participants."""
    if me not in session.participants:
        raise ConfigError(f"{me!r} is not a participant of this session")
    private_key = rng(32)
    public_key = X25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes_raw()
    others = [p for p in session.participants if p != me]
    shares: tuple[KeyShare, ...] = ()
    if session.max_dropouts:  # nobody may drop out: nothing to recover, nothing to share
        split = shamir.split(private_key, session.threshold, len(others), rng)
        shares = tuple(KeyShare(me, to, s.encode()) for to, s in zip(others, split, strict=True))
    return ParticipantState(session, me, private_key), Announcement(me, public_key, shares)


def _announcements(session: Session, given: Iterable[Announcement]) -> dict[str, Announcement]:
    found = {a.participant: a for a in given}
    missing = [p for p in session.participants if p not in found]
    if missing:
        raise AggregationError(f"no announcement from {missing}: the session cannot start")
    return found


def submit(
    state: ParticipantState,
    announcements: Iterable[Announcement],
    values: Sequence[int],
    rng: Callable[[int], bytes] = os.urandom,
) -> Submission:
    """Commit to ``values``, prove their range and mask them for the aggregator."""
    session = state.session
    if len(values) != session.length:
        raise ConfigError(f"this session takes {session.length} values, got {len(values)}")
    known = _announcements(session, announcements)
    masked = list(values)
    commitments, proofs, blindings = [], [], []
    for index, value in enumerate(values):
        if not 0 <= value < 1 << session.bits:
            raise ConfigError(f"value {index} is outside [0, 2^{session.bits})")
        context = _context(session, state.me, index)
        commitment, opening, proof = rangeproof.prove_value(value, session.bits, context, rng)
        commitments.append(commitment)
        proofs.append(proof)
        blindings.append(opening.blinding)
    for peer in session.participants:
        if peer == state.me:
            continue
        mask_values, mask_blinds = _pair_masks(
            session, state.private_key, state.me, peer, known[peer].public_key
        )
        masked = [(x + m) % MODULUS for x, m in zip(masked, mask_values, strict=True)]
        blindings = [(r + m) % r255.ORDER for r, m in zip(blindings, mask_blinds, strict=True)]
    return Submission(state.me, tuple(masked), tuple(blindings), tuple(commitments), tuple(proofs))


def release_shares(
    state: ParticipantState,
    announcements: Iterable[Announcement],
    dropped: Iterable[str],
    submitted: Iterable[str],
) -> tuple[KeyShare, ...]:
    """The shares this participant holds of the dropped participants' keys.

    Refuses to release a share of anyone who submitted: with their key and their
    masked input the aggregator could unmask their values.
    """
    dropped, submitted = set(dropped), set(submitted)
    if dropped & submitted:
        raise AggregationError(
            f"{sorted(dropped & submitted)} submitted: their key shares are never released"
        )
    return tuple(
        share
        for a in announcements
        if a.participant in dropped
        for share in a.shares
        if share.holder == state.me
    )


def _check_submission(session: Session, sub: Submission) -> None:
    n = session.length
    if (
        not len(sub.masked)
        == len(sub.masked_blindings)
        == len(sub.commitments)
        == len(sub.proofs)
        == n
    ):
        raise AggregationError(
            f"{sub.participant} sent a submission of the wrong length (need {n})"
        )
    if any(not 0 <= v < MODULUS for v in sub.masked) or any(
        not 0 <= b < r255.ORDER for b in sub.masked_blindings
    ):
        raise AggregationError(f"{sub.participant} sent masked values out of range")


def _check_proofs(session: Session, subs: Sequence[Submission]) -> None:
    """Every range proof of every submission, spread over the cores (`rangeproof.verify_batch`)."""
    items = [
        (commitment, proof, _context(session, sub.participant, index))
        for sub in subs
        for index, (commitment, proof) in enumerate(zip(sub.commitments, sub.proofs, strict=True))
    ]
    try:
        rangeproof.verify_batch(items, session.bits)
    except rangeproof.BatchProofError as exc:
        sub = subs[exc.index // session.length]
        raise AggregationError(
            f"{sub.participant}'s value {exc.index % session.length}: {exc}"
        ) from None


def _recover_key(
    session: Session, owner: Announcement, released: Sequence[KeyShare], survivors: set[str]
) -> bytes:
    shares = []
    for ks in released:
        if ks.owner == owner.participant and ks.holder in survivors:
            try:
                shares.append(shamir.Share.decode(ks.share))
            except EncodingError as exc:
                raise AggregationError(f"{ks.holder}'s share of {ks.owner}: {exc}") from None
    try:
        private_key = shamir.combine(shares)
    except SharechainError as exc:
        raise AggregationError(
            f"session failed: cannot rebuild the masks of dropped participant "
            f"{owner.participant!r} ({exc}); no result"
        ) from None
    public = X25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes_raw()
    if not hmac.compare_digest(public, owner.public_key):
        raise AggregationError(
            f"the rebuilt key of {owner.participant!r} does not match its announcement"
        )
    return private_key


def aggregate(
    session: Session,
    announcements: Iterable[Announcement],
    submissions: Iterable[Submission],
    released: Sequence[KeyShare] = (),
) -> AggregateResult:
    """Check every submission, remove the dropped participants' masks and return the exact sums."""
    known = _announcements(session, announcements)
    subs: dict[str, Submission] = {}
    for sub in submissions:
        if sub.participant not in known:
            raise AggregationError(f"{sub.participant!r} is not a participant of this session")
        if sub.participant in subs:
            raise AggregationError(f"{sub.participant!r} submitted twice; the second is refused")
        _check_submission(session, sub)
        subs[sub.participant] = sub
    _check_proofs(session, list(subs.values()))
    dropped = [p for p in session.participants if p not in subs]
    if len(dropped) > session.max_dropouts:
        raise AggregationError(
            f"session failed: {len(dropped)} of {len(session.participants)} participants "
            f"dropped out ({', '.join(dropped)}), at most {session.max_dropouts} can be "
            "recovered; no result"
        )
    sums = [0] * session.length
    blinds = [0] * session.length
    for sub in subs.values():
        sums = [(s + v) % MODULUS for s, v in zip(sums, sub.masked, strict=True)]
        blinds = [(s + v) % r255.ORDER for s, v in zip(blinds, sub.masked_blindings, strict=True)]
    survivors = set(subs)
    for gone in dropped:
        key = _recover_key(session, known[gone], released, survivors)
        for peer in subs:
            # The survivor added the pair's mask with its own sign, which is the
            # opposite of the dropped participant's: adding gone's signed mask cancels it.
            mask_values, mask_blinds = _pair_masks(session, key, gone, peer, known[peer].public_key)
            sums = [(s + m) % MODULUS for s, m in zip(sums, mask_values, strict=True)]
            blinds = [(s + m) % r255.ORDER for s, m in zip(blinds, mask_blinds, strict=True)]
    for index, (total, blind) in enumerate(zip(sums, blinds, strict=True)):
        committed = pedersen.sum_commitments(sub.commitments[index] for sub in subs.values())
        if not hmac.compare_digest(committed, pedersen.commit_with(total, blind)):
            raise AggregationError(
                f"session failed: sum {index} does not match the participants' commitments "
                "(a masked input differs from its committed value); no result"
            )
    contributors = tuple(p for p in session.participants if p in subs)
    return AggregateResult(tuple(sums), contributors, tuple(dropped))
