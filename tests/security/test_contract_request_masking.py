"""Attack: get the raw data of a dataset whose policy requires masking, through `masking`.

A request may name a masking profile (`access.request`, field `masking`). If
the requester's choice replaced the policy's, a grantee could name a weak
profile of its own (every column kept, k = 1) and receive what is, in effect,
the raw table; if an unregistered digest were accepted, the grant would name
a profile nobody can produce and the owner's side could be pushed into odd
states. The contract refuses both: a profile other than the one the policy
requires is `denied`, an unregistered one `not_found`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from security_kit import Net, consortium

from sharechain.contracts import queries
from sharechain.contracts.ids import derive_id
from sharechain.privacy.profiles import parse_profile, profile_digest, profile_form

STRICT = parse_profile("k: 5\nquasi_identifiers: [glucose]\ncolumns: {glucose: keep}\n")
WEAK = parse_profile("k: 1\ndefault: keep\ncolumns: {patient_id: keep}\n")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with consortium(tmp_path) as n:
        yield n


def test_a_requester_cannot_swap_in_a_weaker_profile(net: Net) -> None:
    net.ok("hospital-a", "profile.register", {"name": "strict", "profile": profile_form(STRICT)})
    net.ok("hospital-b", "profile.register", {"name": "weak", "profile": profile_form(WEAK)})
    strict, weak = profile_digest(STRICT), profile_digest(WEAK)
    ds = net.register(policy={"masking": {"confidential": strict.hex()}})
    ask = {"dataset": ds, "purpose": "treatment", "duration": 3_600_000}
    swapped = net.send("hospital-b", "access.request", {**ask, "masking": weak})
    assert swapped.code == "denied" and strict.hex() in swapped.reason
    unknown = net.send("hospital-b", "access.request", {**ask, "masking": bytes(32)})
    assert unknown.code == "not_found"
    # Asking without `masking` still gets the policy's profile, never none.
    rid = derive_id("request", net.ok("hospital-b", "access.request", ask).tx_id)
    assert queries.request(net.store, rid).masking == strict.hex()
