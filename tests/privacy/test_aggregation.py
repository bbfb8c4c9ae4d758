"""Tests of secure aggregation: exact sums, dropouts, failures, and what the aggregator sees."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

import pytest

from sharechain.crypto import rangeproof
from sharechain.errors import ConfigError
from sharechain.privacy import aggregation as ag

NAMES = ("bank-a", "bank-b", "bank-c", "bank-d", "bank-e")


def setup(
    session: ag.Session, seed: int = 1
) -> tuple[dict[str, ag.ParticipantState], list[ag.Announcement]]:
    rng = random.Random(seed)
    states, announcements = {}, []
    for name in session.participants:
        state, announcement = ag.start(session, name, rng.randbytes)
        states[name] = state
        announcements.append(announcement)
    return states, announcements


def plain_sums(values: dict[str, list[int]], who: Sequence[str]) -> tuple[int, ...]:
    return tuple(sum(values[p][i] for p in who) for i in range(len(values[who[0]])))


def random_values(session: ag.Session, seed: int) -> dict[str, list[int]]:
    rng = random.Random(seed)
    top = 1 << session.bits
    return {p: [rng.randrange(top) for _ in range(session.length)] for p in session.participants}


def test_three_participants_sum_exactly() -> None:
    session = ag.Session(b"s1", NAMES[:3], length=4, max_dropouts=0, bits=16)
    states, announcements = setup(session)
    values = random_values(session, 2)
    values["bank-a"][0] = (1 << 16) - 1  # the largest value allowed
    subs = [ag.submit(states[p], announcements, values[p]) for p in session.participants]
    result = ag.aggregate(session, announcements, subs)
    assert result.sums == plain_sums(values, session.participants)
    assert result.contributors == NAMES[:3] and result.dropped == ()


def test_dropouts_within_the_limit_still_give_the_exact_sum() -> None:
    session = ag.Session(b"s2", NAMES, length=3, max_dropouts=2, bits=16)
    states, announcements = setup(session)
    values = random_values(session, 3)
    survivors = ["bank-a", "bank-c", "bank-e"]
    dropped = ["bank-b", "bank-d"]
    subs = [ag.submit(states[p], announcements, values[p]) for p in survivors]
    released = [
        share
        for p in survivors
        for share in ag.release_shares(states[p], announcements, dropped, survivors)
    ]
    result = ag.aggregate(session, announcements, subs, released)
    assert result.sums == plain_sums(values, survivors)
    assert result.dropped == tuple(dropped)


def test_too_many_dropouts_fail_without_a_result() -> None:
    session = ag.Session(b"s3", NAMES, length=2, max_dropouts=2, bits=8)
    states, announcements = setup(session)
    values = random_values(session, 4)
    subs = [ag.submit(states[p], announcements, values[p]) for p in ("bank-a", "bank-b")]
    with pytest.raises(ag.AggregationError, match="3 of 5 participants dropped out"):
        ag.aggregate(session, announcements, subs)


def test_withheld_shares_fail_the_session() -> None:
    session = ag.Session(b"s4", NAMES[:4], length=2, max_dropouts=1, bits=8)
    states, announcements = setup(session)
    values = random_values(session, 5)
    survivors = ["bank-a", "bank-b", "bank-c"]
    subs = [ag.submit(states[p], announcements, values[p]) for p in survivors]
    released = list(ag.release_shares(states["bank-a"], announcements, ["bank-d"], survivors))
    with pytest.raises(ag.AggregationError, match="cannot rebuild the masks of dropped"):
        ag.aggregate(session, announcements, subs, released)


def test_shares_of_a_participant_who_submitted_are_never_released() -> None:
    session = ag.Session(b"s5", NAMES[:4], length=1, max_dropouts=1, bits=8)
    states, announcements = setup(session)
    with pytest.raises(ag.AggregationError, match="never released"):
        ag.release_shares(states["bank-a"], announcements, ["bank-b"], ["bank-a", "bank-b"])


def test_bad_submissions_are_refused() -> None:
    session = ag.Session(b"s6", NAMES[:3], length=2, max_dropouts=0, bits=8)
    states, announcements = setup(session)
    values = random_values(session, 6)
    subs = [ag.submit(states[p], announcements, values[p]) for p in session.participants]
    with pytest.raises(ag.AggregationError, match="submitted twice"):
        ag.aggregate(session, announcements, [*subs, subs[0]])
    stranger = replace(subs[0], participant="bank-z")
    with pytest.raises(ag.AggregationError, match="not a participant"):
        ag.aggregate(session, announcements, [stranger, *subs[1:]])
    short = replace(subs[0], masked=subs[0].masked[:1])
    with pytest.raises(ag.AggregationError, match="wrong length"):
        ag.aggregate(session, announcements, [short, *subs[1:]])
    # b's proofs were made for b: presented as a's they are refused.
    swapped = replace(subs[0], commitments=subs[1].commitments, proofs=subs[1].proofs)
    with pytest.raises(ag.AggregationError, match="range proof refused"):
        ag.aggregate(session, announcements, [swapped, *subs[1:]])
    # A masked input that is not what was committed: the session fails, no wrong sum.
    lying = replace(subs[0], masked=((subs[0].masked[0] + 1) % ag.MODULUS, subs[0].masked[1]))
    with pytest.raises(ag.AggregationError, match="does not match the participants' commitments"):
        ag.aggregate(session, announcements, [lying, *subs[1:]])
    with pytest.raises(ConfigError, match="outside"):
        ag.submit(states["bank-a"], announcements, [256, 0])
    with pytest.raises(ConfigError, match="takes 2 values"):
        ag.submit(states["bank-a"], announcements, [1])
    with pytest.raises(ag.AggregationError, match="no announcement"):
        ag.submit(states["bank-a"], announcements[:2], [1, 2])


def test_session_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="at least 3"):
        ag.Session(b"s", NAMES[:2], length=1, max_dropouts=0)
    with pytest.raises(ConfigError, match="at least 3"):
        ag.Session(b"s", ("a", "a", "b"), length=1, max_dropouts=0)
    with pytest.raises(ConfigError, match=r"max_dropouts must be 0\.\.2"):
        ag.Session(b"s", NAMES, length=1, max_dropouts=3)
    with pytest.raises(ConfigError, match="overflow"):
        ag.Session(b"s", NAMES, length=1, max_dropouts=0, bits=63)
    with pytest.raises(ConfigError, match="not a participant"):
        ag.start(ag.Session(b"s", NAMES[:3], length=1, max_dropouts=0), "bank-z")


def test_mean_salary_of_decimals_is_exact() -> None:
    salaries = {"bank-a": "52000.10", "bank-b": "61000.25", "bank-c": "48999.65"}
    session = ag.Session(b"salary", tuple(salaries), length=1, max_dropouts=0, bits=32)
    states, announcements = setup(session)
    subs = [ag.submit(states[p], announcements, [ag.to_fixed(salaries[p], 2)]) for p in salaries]
    total = ag.from_fixed(ag.aggregate(session, announcements, subs).sums[0], 2)
    assert total == sum(Decimal(s) for s in salaries.values())
    assert total / 3 == Decimal("54000")
    with pytest.raises(ConfigError, match="decimal places"):
        ag.to_fixed("1.005", 2)
    with pytest.raises(ConfigError, match="negative"):
        ag.to_fixed("-1", 2)


def test_the_aggregators_view_is_uniformly_masked() -> None:
    # All-zero inputs: whatever structure the view has comes from the masks alone.
    session = ag.Session(b"uniform", NAMES[:3], length=512, max_dropouts=0, bits=1)
    states, announcements = setup(session, seed=11)
    rng = random.Random(12)
    view = b"".join(
        b"".join(
            v.to_bytes(8, "little")
            for v in ag.submit(states[p], announcements, [0] * 512, rng.randbytes).masked
        )
        for p in session.participants
    )
    counts = [0] * 256
    for byte in view:
        counts[byte] += 1
    expected = len(view) / 256
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert chi2 < 330.5  # the 0.001 critical value of chi-square with 255 degrees of freedom
    top_bits = sum(b >> 7 for b in view[7::8])
    assert abs(top_bits - len(view) / 16) < 4 * (len(view) / 8) ** 0.5 / 2


def test_proof_contexts_bind_session_participant_and_position() -> None:
    session = ag.Session(b"s7", NAMES[:3], length=2, max_dropouts=0, bits=8)
    states, announcements = setup(session)
    sub = ag.submit(states["bank-a"], announcements, [3, 4])
    other = replace(session, session_id=b"s8")
    with pytest.raises(rangeproof.InvalidProofError):
        rangeproof.verify(
            sub.commitments[0], sub.proofs[0], ag._context(other, "bank-a", 0), session.bits
        )
    with pytest.raises(rangeproof.InvalidProofError):
        rangeproof.verify(
            sub.commitments[0], sub.proofs[0], ag._context(session, "bank-a", 1), session.bits
        )


def test_a_hostile_mask_key_is_refused_clearly() -> None:
    session = ag.Session(b"s9", NAMES[:3], length=1, max_dropouts=0, bits=8)
    states, announcements = setup(session)
    hostile = replace(announcements[1], public_key=bytes(32))  # low order: all-zero secret
    with pytest.raises(ag.AggregationError, match="bank-b's mask public key"):
        ag.submit(states["bank-a"], [announcements[0], hostile, announcements[2]], [1])


def test_no_error_reveals_a_participants_values() -> None:
    session = ag.Session(b"s10", NAMES[:4], length=2, max_dropouts=1, bits=24)
    states, announcements = setup(session)
    values = {p: [3_141_592 + i, 2_718_281 + i] for i, p in enumerate(session.participants)}
    subs = [ag.submit(states[p], announcements, values[p]) for p in session.participants]
    lying = replace(subs[1], masked=((subs[1].masked[0] + 1) % ag.MODULUS, subs[1].masked[1]))
    swapped = replace(subs[1], proofs=(subs[1].proofs[1], subs[1].proofs[0]))
    failures = [
        [lying, *subs[:1], *subs[2:]],  # a masked input other than the committed one
        [swapped, *subs[:1], *subs[2:]],  # proofs for the other position
        subs[:2],  # too many dropouts
    ]
    messages = []
    for attempt in failures:
        with pytest.raises(ag.AggregationError) as err:
            ag.aggregate(session, announcements, attempt)
        messages.append(str(err.value))
    with pytest.raises(ag.AggregationError) as err:  # shares withheld for a dropout
        ag.aggregate(session, announcements, subs[:3])
    messages.append(str(err.value))
    for message in messages:
        assert not any(str(v) in message for vs in values.values() for v in vs), message
        assert not any(str(v) in message for sub in subs for v in sub.masked), message
