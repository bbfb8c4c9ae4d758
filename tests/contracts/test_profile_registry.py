"""profile.register: masking profiles recorded under the digest privacy computes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from contracts_kit import ORGS, Clock

from sharechain.contracts import default_registry, profiles
from sharechain.ledger.state import StateReader
from sharechain.privacy.profiles import (
    parse_profile,
    profile_digest,
    profile_form,
    profile_from_form,
)
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import init_consortium

PROFILE = parse_profile(
    """\
k: 5
l: 2
quasi_identifiers: [birth_date, sex]
sensitive: [diagnosis]
columns:
  id: tokenize
  birth_date: {rule: generalise, date: year}
  sex: keep
  diagnosis: keep
  salary: {rule: noise, epsilon: 0.5, sensitivity: 1000}
"""
)


@pytest.fixture
def emb(tmp_path: Path) -> Embedded:
    clock = Clock()
    init_consortium(tmp_path / "c", ORGS, now=clock)
    return Embedded(tmp_path / "c", registry=default_registry(), now=clock)


def register(emb: Embedded, form: Any, name: str = "research release") -> tuple[str, str]:
    r = emb.submit("hospital-a", profiles.REGISTER, {"name": name, "profile": form}, check=False)
    return r.code, r.reason


def test_registered_under_the_digest_privacy_computes(emb: Embedded) -> None:
    assert register(emb, profile_form(PROFILE)) == ("valid", "")
    value = StateReader(emb.store).get(profiles.profile_key(profile_digest(PROFILE)))
    record = profiles.profile_from_value(value)
    assert record.digest == profile_digest(PROFILE) == profiles.profile_digest_of(record.form)
    assert (record.name, record.owner) == ("research release", "hospital-a")
    assert profile_from_form(record.form) == PROFILE
    code, reason = register(emb, profile_form(PROFILE), "again")
    assert code == "duplicate" and "research release" in reason


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"k": 0}, "profile.k"),
        ({"l": "2"}, "profile.l"),
        ({"suppress": 1}, "suppress"),
        ({"quasi_identifiers": "sex"}, "quasi_identifiers"),
        ({"default": {"rule": "shuffle"}}, "profile.default"),
        ({"columns": []}, "1 to 1024"),
        ({"columns": [["a"]]}, "pair"),
        ({"columns": [["a", {"rule": "blur"}]]}, "column 'a'"),
        ({"extra": 1}, "exactly"),
    ],
)
def test_malformed_forms_are_refused(emb: Embedded, change: dict[str, Any], message: str) -> None:
    code, reason = register(emb, {**profile_form(PROFILE), **change})
    assert code == "bad_payload" and message in reason


def test_name_and_size_bounds(emb: Embedded) -> None:
    assert register(emb, profile_form(PROFILE), name="")[0] == "bad_payload"
    huge = {
        **profile_form(PROFILE),
        "columns": [[f"c{i:05d}" + "x" * 100, {"rule": "keep"}] for i in range(1000)],
    }
    code, reason = register(emb, huge)
    assert code == "bad_payload" and "at most" in reason
    assert register(emb, "not a map")[0] == "bad_payload"
