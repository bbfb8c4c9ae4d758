"""`make demo`: the story runs and its outcomes hold."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from rich.console import Console

from sharechain import demo, demo_computing, demo_join
from sharechain.contracts import queries
from sharechain.ledger.state import StateReader
from sharechain.privacy import psi
from sharechain.sharing.embedded import Embedded


def test_the_demo_story_holds(tmp_path: Path) -> None:
    console = Console(record=True, width=100)
    story = demo.run_story(tmp_path, console, rows=2000)
    assert story.outcomes["fetch"] == "ok"
    assert (
        story.outcomes["intruder"].startswith("refused")
        and "wrong_grantee" in story.outcomes["intruder"]
    )
    assert story.outcomes["fetch_after_revoke"].startswith("refused")
    assert "revoked" in story.outcomes["fetch_after_revoke"]
    assert story.outcomes["verify"] == "ok"
    assert "every proof verified" in story.outcomes["audit"]
    with Embedded(tmp_path / "consortium") as emb:
        kinds = [(e.type, e.code) for e in queries.audit(emb.store, ds=story.dataset, proofs=False)]
    assert ("grant.read", "valid") in kinds and ("grant.key-release", "revoked") in kinds
    assert "the audit trail" in console.export_text()
    # A clinic admitted by the admins' votes mid-story asks for the data like any member.
    assert story.outcomes["join"] == "ok" and story.outcomes["new_member_request"] == "valid"
    with Embedded(tmp_path / "consortium") as emb:
        asked = {e.sender for e in queries.audit(emb.store, ds=story.dataset, proofs=False)}
    assert demo_join.NEW_MEMBER in asked


def test_the_demo_matches_two_banks_blacklists_and_averages_three_employers_salaries(
    tmp_path: Path,
) -> None:
    console = Console(record=True, width=120)
    story = demo.run_story(tmp_path, console, rows=500)
    # bank-b learns exactly the plain set intersection (in its own spelling and order).
    holder = {psi.normalise(v) for v in demo_computing.HOLDER_BLACKLIST}
    expected = [v for v in demo_computing.CLIENT_BLACKLIST if psi.normalise(v) in holder]
    assert expected and story.outcomes["blacklist_matches"].split("; ") == expected
    assert story.outcomes["blacklist_match"] == f"{len(expected)} matches"
    # The joint average is exactly the plain average of the three employers' salaries.
    assert story.outcomes["joint_average_employers"] == "hospital-a, hospital-b, insurer"
    mean = sum(Decimal(v) for v in demo_computing.SALARIES.values()) / len(demo_computing.SALARIES)
    assert story.outcomes["joint_average"] == f"{mean:.2f}"
    text = " ".join(console.export_text().split())
    assert "blacklist match between two banks" in text
    assert "2 of its 4 customers are on bank-a's blacklist: marta leroy, Hugo SIMON" in text
    assert "the average nurse salary across the 3 employers" in text
    assert "dropped out" in text and "regulator" in text
    with Embedded(tmp_path / "consortium") as emb:
        done = [v for _, v in StateReader(emb.store).scan("computation/")]
    assert sorted(v["kind"] for v in done) == ["aggregate", "psi"]
    assert all(v["status"] == "done" for v in done)
    psi_session = next(v for v in done if v["kind"] == "psi")
    assert set(psi_session["parties"]) == {demo_computing.HOLDER_BANK, demo_computing.CLIENT_BANK}
    # The chain holds sizes and digests, never a name or a salary.
    for value in done:
        flat = repr(value)
        assert not any(
            n in flat for n in (*demo_computing.HOLDER_BLACKLIST, *demo_computing.CLIENT_BLACKLIST)
        )
        assert not any(v.split(".")[0] in flat for v in demo_computing.SALARIES.values())


def test_main_exits_zero(tmp_path: Path) -> None:
    assert demo.main(["--data-dir", str(tmp_path / "d"), "--rows", "1000"]) == 0
    # `--network etcd` runs the story on node processes: tests/node/test_network_story.py


def test_synthetic_records_are_deterministic(tmp_path: Path) -> None:
    demo.synthetic_patients(tmp_path / "a.csv", 3000)
    demo.synthetic_patients(tmp_path / "b.csv", 3000)
    text = (tmp_path / "a.csv").read_text()
    assert text == (tmp_path / "b.csv").read_text()
    assert len(text.splitlines()) == 3001 and text.startswith("patient_id,name,birth_date")
