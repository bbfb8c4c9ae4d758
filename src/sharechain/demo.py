"""`make demo`: the whole data-sharing story, narrated, in under a minute.

Four organisations (two hospitals, an insurer, a regulator) on the embedded
default. hospital-a publishes a CSV of synthetic patient records under
threshold custody; the insurer asks for access for actuarial research; the
regulator and hospital-a approve; an organisation without a grant (hospital-b,
trying the insurer's grant) is refused, and the refusal is on the chain; the
insurer fetches and verifies (with hospital-a offline); hospital-a revokes,
which moves the dataset to a new key epoch; a fetch after revocation is
refused; the audit trail with verified proofs and a full `chain verify` close
the story.

Each step is a function of a `Story` (the data directory and what happened so
far) calling the library, so the same story can later run over the REST API.
Run ``python -m sharechain.demo --network solo [--data-dir DIR] [--rows N]``;
``--network etcd`` plays the same story over HTTP on a local network of four
node processes and three etcd members (`sharechain.demo_network`).
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Protocol

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from sharechain.contracts import queries
from sharechain.contracts._fields import derive_id
from sharechain.errors import SharechainError
from sharechain.ledger.chain import verify_chain
from sharechain.ledger.proofs import verify_tx_proof
from sharechain.sharing import local as sharing
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import OrgSpec, init_consortium

__all__ = ["ORGS", "POLICY", "Story", "main", "run_story", "synthetic_patients"]

ORGS = (
    OrgSpec("hospital-a", ("member", "admin"), "Hospital A"),
    OrgSpec("hospital-b", ("member", "admin"), "Hospital B"),
    OrgSpec("insurer", ("member",), "Mutual Insurance"),
    OrgSpec("regulator", ("member", "supervisor", "admin"), "Health Data Regulator"),
)
POLICY = {
    "approval": "owner+supervisor",
    "purposes": ["treatment", "public-health", "actuarial-research"],
    "max_duration": "90d",
    "max_uses": 5,
}
_FIRST = (
    "Ada",
    "Ben",
    "Chloe",
    "David",
    "Emma",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Karim",
    "Lea",
    "Marta",
    "Noah",
    "Olga",
    "Paul",
)
_LAST = (
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
)
_DIAGNOSES = ("E11.9", "I10", "J45.909", "E78.5", "N18.3", "I25.10", "F32.9", "K21.9", "Z00.00")


def synthetic_patients(path: Path, rows: int, seed: int = 2025) -> None:
    """A deterministic CSV of made-up patient records (same seed, same bytes)."""
    rng = random.Random(seed)
    header = (
        "patient_id,name,birth_date,sex,postcode,diagnosis_code,hba1c_pct,"
        "glucose_mmol_l,ldl_mmol_l,systolic_bp,visit_date"
    )
    with path.open("w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(header.split(","))
        for i in range(1, rows + 1):
            born = date(1930, 1, 1) + timedelta(days=rng.randrange(0, 365 * 85))
            visit = date(2024, 1, 1) + timedelta(days=rng.randrange(0, 540))
            out.writerow(
                [
                    f"P{i:07d}",
                    f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                    born.isoformat(),
                    rng.choice("FM"),
                    f"{rng.randrange(1000, 99999):05d}",
                    rng.choice(_DIAGNOSES),
                    f"{rng.gauss(6.1, 1.1):.1f}",
                    f"{rng.gauss(5.8, 1.6):.1f}",
                    f"{rng.gauss(3.1, 0.9):.2f}",
                    int(rng.gauss(128, 17)),
                    visit.isoformat(),
                ]
            )


@dataclass
class Story:
    """What the story has done so far (mutable on purpose: each step adds to it)."""

    emb: Embedded
    """The consortium's data directory."""
    work: Path
    """Where files are written."""
    console: Console
    """Where the narration goes."""
    dataset: str = ""
    grant: str = ""
    request: str = ""
    outcomes: dict[str, str] = field(default_factory=dict)
    """Step name to outcome (`ok`, `refused: ...`), for tests and the summary."""


class Narrated(Protocol):
    """Anything narrating to a console (the solo `Story`, the network story)."""

    @property
    def console(self) -> Console: ...

    @property
    def outcomes(self) -> dict[str, str]: ...


def _say(story: Narrated, title: str, body: str) -> None:
    story.console.print(Panel(body, title=f"[bold]{title}[/]", title_align="left", expand=True))


def _kv(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column(overflow="fold")
    for k, v in rows:
        table.add_row(k, v)
    return table


def step_consortium(story: Story) -> None:
    table = Table(title="the consortium", title_justify="left")
    for col in ("organisation", "name", "roles"):
        table.add_column(col)
    for o in queries.organisations(story.emb.store):
        table.add_row(o.id, o.name, ", ".join(o.roles))
    story.console.print(table)
    story.outcomes["consortium"] = "ok"


def step_publish(story: Story, rows: int) -> None:
    src = story.work / "patients-2025.csv"
    synthetic_patients(src, rows)
    _say(
        story,
        "1. hospital-a publishes patient records",
        f"{rows:,} synthetic patient records ({src.stat().st_size:,} bytes) are sealed under a "
        "fresh AES-256-GCM data key. The key is split 2-of-2 between hospital-b and the "
        "regulator (threshold custody): neither can read the data alone.",
    )
    pub = sharing.publish(
        story.emb,
        "hospital-a",
        src,
        title="Patient records 2025",
        description="Diagnoses and lab results, synthetic",
        tags=("patients", "lab"),
        classification="confidential",
        schema=tuple((c, "string") for c in src.read_text().split("\n", 1)[0].split(",")),
        policy=POLICY,
        custody="threshold",
        holders=("hospital-b", "regulator"),
        threshold=2,
        inline_limit=0,
    )
    story.dataset = pub.dataset
    story.console.print(
        _kv(
            "dataset registered",
            [
                ("dataset", pub.dataset),
                ("size", f"{pub.digests.size:,} bytes in {pub.digests.segment_count} segment(s)"),
                ("plaintext sha256", pub.digests.plaintext_sha256.hex()),
                ("ciphertext sha256", pub.digests.ciphertext_sha256.hex()),
                ("segment root", pub.digests.segment_root.hex()),
                ("custody", f"{pub.custody}: {pub.threshold} of {', '.join(pub.holders)}"),
            ],
        )
    )
    story.outcomes["publish"] = "ok"


def step_request(story: Story) -> None:
    _say(story, "2. the insurer asks for access", "purpose: actuarial-research, for 30 days")
    r = story.emb.submit(
        "insurer",
        "access.request",
        {
            "dataset": story.dataset,
            "purpose": "actuarial-research",
            "duration": 30 * 86_400_000,
            "justification": "pricing of chronic-disease cover",
        },
    )
    story.request = derive_id("request", r.tx_id)
    story.console.print(f"request [bold]{story.request[:16]}[/] is open, awaiting approvals")
    story.outcomes["request"] = "ok"


def _attempt(story: Story, name: str, action: Callable[[], object]) -> None:
    try:
        action()
    except SharechainError as exc:
        story.outcomes[name] = f"refused: {exc}"
        story.console.print(f"[bold red]refused[/]: {exc}", highlight=False)
        return
    story.outcomes[name] = "ok"


def step_approve(story: Story) -> None:
    _say(story, "3. the regulator and hospital-a approve", "joint approval, as the policy requires")
    story.emb.submit("regulator", "access.approve", {"request": story.request})
    r = story.emb.submit("hospital-a", "access.approve", {"request": story.request})
    story.grant = derive_id("grant", r.tx_id)
    g = queries.grant(story.emb.store, story.grant).grant
    expires = datetime.fromtimestamp(g.expires_at / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    story.console.print(
        _kv(
            "grant issued",
            [
                ("grant", story.grant),
                ("grantee", g.grantee),
                ("purpose", g.purpose),
                ("approvals", ", ".join(g.approvals)),
                ("expires", expires),
                ("max key releases", str(g.max_uses)),
            ],
        )
    )
    story.outcomes["approve"] = "ok"


def step_intruder(story: Story) -> None:
    _say(
        story,
        "4. hospital-b, which holds no grant, tries to use the insurer's grant",
        "it even holds a key share, yet custodians release only to the grantee the chain names",
    )
    _attempt(
        story,
        "intruder",
        lambda: sharing.fetch(story.emb, "hospital-b", story.grant, story.work / "stolen.csv"),
    )


def step_fetch(story: Story) -> None:
    _say(
        story,
        "5. the insurer fetches the data (hospital-a is offline)",
        "hospital-b and the regulator each check the grant and release their share; the "
        "insurer rebuilds the key, decrypts and checks every digest, then signs a read receipt",
    )
    out = story.work / "insurer-copy.csv"
    got = sharing.fetch(story.emb, "insurer", story.grant, out, offline=frozenset({"hospital-a"}))
    same = out.read_bytes() == (story.work / "patients-2025.csv").read_bytes()
    story.console.print(
        _kv(
            "fetched and verified",
            [
                ("shares released by", ", ".join(r.custodian for r in got.releases)),
                ("plaintext sha256", got.digests.plaintext_sha256.hex() + "  [green]matches[/]"),
                ("segment root", got.digests.segment_root.hex() + "  [green]matches[/]"),
                ("identical to the original", str(same)),
                ("read receipt", got.read_tx.hex()),
            ],
        )
    )
    story.outcomes["fetch"] = "ok" if same else "corrupt"


def step_revoke(story: Story) -> None:
    _say(
        story,
        "6. hospital-a revokes the grant",
        "the dataset moves to a new key epoch: re-sealed under a fresh key, new shares, old "
        "key and blob destroyed, so a key kept from before opens nothing",
    )
    done = sharing.revoke(story.emb, "hospital-a", story.grant, reason="study finished")
    assert done.rotated is not None  # the dataset was sealed by the data plane
    story.console.print(f"grant revoked; dataset now at key epoch {done.rotated.epoch}")
    story.outcomes["revoke"] = "ok"


def step_fetch_after_revoke(story: Story) -> None:
    _say(story, "7. the insurer tries again", "")
    _attempt(
        story,
        "fetch_after_revoke",
        lambda: sharing.fetch(story.emb, "insurer", story.grant, story.work / "again.csv"),
    )


def step_audit(story: Story) -> None:
    _say(story, "8. the audit trail", "every step of the dataset, with its inclusion proof checked")
    table = Table(title=f"dataset {story.dataset[:16]}...", title_justify="left")
    for col in ("block", "time (UTC)", "transaction", "by", "outcome", "proof"):
        table.add_column(col)
    verified = 0
    for e in queries.audit(story.emb.store, ds=story.dataset):
        assert e.proof is not None
        meta = story.emb.store.block_meta(e.height)
        verify_tx_proof(e.proof, None if meta is None else meta.hash)
        verified += 1
        when = datetime.fromtimestamp(e.timestamp / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]
        outcome = "[green]valid[/]" if e.code == "valid" else f"[red]{e.code}[/]"
        table.add_row(str(e.height), when, e.type, e.sender, outcome, "[green]ok[/]")
    story.console.print(table)
    story.outcomes["audit"] = f"{verified} entries, every proof verified"


def step_verify(story: Story) -> None:
    report = verify_chain(
        story.emb.store, story.emb.registry, genesis_hash=story.emb.datadir.genesis_hash
    )
    if report.ok:
        story.console.print(
            f"[bold green]chain verify[/]: {report.height + 1} blocks and "
            f"{report.transactions} transactions re-verified and replayed from genesis",
            highlight=False,
        )
    else:
        story.console.print(f"[bold red]chain verify failed[/] at {report.bad_height}")
    story.outcomes["verify"] = "ok" if report.ok else f"failed: {report.reason}"


def run_story(data_dir: Path, console: Console, rows: int = 5000) -> Story:
    """Create the consortium in `data_dir` and play every step; returns the outcomes."""
    init_consortium(data_dir / "consortium", ORGS, consortium="health-data-demo")
    work = data_dir / "files"
    work.mkdir(parents=True, exist_ok=True)
    with Embedded(data_dir / "consortium") as emb:
        story = Story(emb, work, console)
        step_consortium(story)
        step_publish(story, rows)
        step_request(story)
        step_approve(story)
        step_intruder(story)
        step_fetch(story)
        step_revoke(story)
        step_fetch_after_revoke(story)
        step_audit(story)
        step_verify(story)
    return story


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sharechain.demo", description=__doc__)
    parser.add_argument("--network", default="solo", choices=("solo", "etcd"))
    parser.add_argument("--data-dir", type=Path, default=None, help="keep everything here")
    parser.add_argument("--rows", type=int, default=5000, help="patient records to generate")
    args = parser.parse_args(argv)
    console = Console()
    started = time.perf_counter()
    run: Callable[[Path, Console, int], Narrated]
    if args.network == "etcd":
        from sharechain.demo_network import run_network_story  # node processes and etcd

        run = run_network_story
    else:
        run = run_story
    if args.data_dir is not None:
        story = run(args.data_dir, console, args.rows)
    else:
        with tempfile.TemporaryDirectory(prefix="sharechain-demo-") as tmp:
            story = run(Path(tmp), console, args.rows)
    expected = {
        "intruder": "refused",
        "fetch_after_revoke": "refused",
        "fetch": "ok",
        "verify": "ok",
    }
    good = all(story.outcomes.get(k, "").startswith(v) for k, v in expected.items())
    console.print(
        f"\n[bold]{'the story holds' if good else 'THE STORY DOES NOT HOLD'}[/] "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
