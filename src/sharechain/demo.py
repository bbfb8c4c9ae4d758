"""`make demo`: the whole data-sharing story, narrated, in under a minute.

Six organisations (two hospitals, an insurer, two banks, a regulator). hospital-a
publishes a CSV of synthetic patient records under threshold custody (the key
split 2-of-2 between hospital-b and the regulator); the insurer asks for
access for actuarial research; the regulator and hospital-a approve;
hospital-b, a share holder without a grant, tries the insurer's grant and is
refused, the refusal on the chain; hospital-a goes offline and the insurer
still fetches and verifies; hospital-a revokes, which moves the dataset to a
new key epoch; a fetch after revocation is refused; bank-b checks its
customers against bank-a's fraud blacklist (private set intersection, approved
by the regulator: each learns nothing else of the other's list); the two
hospitals and the insurer, three employers, compute the average salary of a
nurse without anyone seeing another's figures (secure aggregation, the
regulator joining but never answering); a community clinic is admitted by
the admins' votes and its node joins the running network (`node start
--join`), catches up and asks for the data like any member; the audit trail with
verified proofs and a re-verification of every ledger from genesis close the
story.

Every step talks to a `Plane` (`sharechain.sharing.plane`), so one story runs
both ways: ``--network solo`` on the embedded default (one data directory,
blocks ordered in this process), ``--network etcd`` over HTTP on a local
network of six node processes and three etcd members, each organisation
acting through its own node (hospital-a's node is really stopped for the
fetch). Run ``python -m sharechain.demo --network solo|etcd [--data-dir DIR]
[--rows N]``.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from sharechain.contracts import default_registry
from sharechain.contracts.access import APPROVE, REQUEST
from sharechain.demo_computing import step_blacklist_match, step_joint_average
from sharechain.demo_consortium import Consortium, demo_network
from sharechain.demo_join import step_new_member
from sharechain.errors import IntegrityError, SharechainError
from sharechain.ledger.blocks import VALID
from sharechain.ledger.chain import verify_chain
from sharechain.ledger.store import Store
from sharechain.node.launcher import LocalNetwork
from sharechain.sharing.plane import Plane
from sharechain.sharing.records import Listing, ReleaseRefusedError, derive_id
from sharechain.storage.datadir import DataDir, OrgSpec, init_consortium

__all__ = [
    "ORGS",
    "POLICY",
    "Story",
    "main",
    "run_network_story",
    "run_story",
    "synthetic_patients",
]

ORGS = (
    OrgSpec("hospital-a", ("member", "admin"), "Hospital A"),
    OrgSpec("hospital-b", ("member", "admin"), "Hospital B"),
    OrgSpec("insurer", ("member",), "Mutual Insurance"),
    OrgSpec("bank-a", ("member",), "Bank A"),
    OrgSpec("bank-b", ("member",), "Bank B"),
    OrgSpec("regulator", ("member", "supervisor", "admin"), "Health Data Regulator"),
)
POLICY = {
    "approval": "owner+supervisor",
    "purposes": ["treatment", "public-health", "actuarial-research"],
    "max_duration": "90d",
    "max_uses": 5,
}
# fmt: off
_FIRST = ("Ada", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas",
    "Karim", "Lea", "Marta", "Noah", "Olga", "Paul",)
_LAST = ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
    "Leroy", "Moreau", "Simon", "Laurent",)
# fmt: on
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


OWNER = "hospital-a"


@dataclass
class Story:
    """What the story has done so far (mutable on purpose: each step adds to it)."""

    consortium: Consortium
    """The organisations and how each acts."""
    work: Path
    """Where files are written."""
    console: Console
    """Where the narration goes."""
    dataset: str = ""
    grant: str = ""
    request: str = ""
    outcomes: dict[str, str] = field(default_factory=dict)
    """Step name to outcome (`ok`, `refused: ...`), for tests and the summary."""
    released_by: tuple[str, ...] = ()
    """Custodians that released a share for the fetch."""
    refusal_codes: dict[str, str] = field(default_factory=dict)
    """Step name to the chain's code of the refusal."""
    state_roots: dict[str, str] = field(default_factory=dict)
    """Each ledger's state root at the end."""

    @property
    def net(self) -> LocalNetwork | None:
        return self.consortium.net

    def plane(self, org: str) -> Plane:
        return self.consortium.plane(org)

    def say(self, title: str, body: str) -> None:
        """Narrate a step."""
        self.console.print(Panel(body, title=f"[bold]{title}[/]", title_align="left", expand=True))

    @staticmethod
    def kv(title: str, rows: list[tuple[str, str]]) -> Table:
        """A step's figures as a two-column table."""
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold cyan")
        table.add_column(overflow="fold")
        for k, v in rows:
            table.add_row(k, v)
        return table


def step_consortium(story: Story) -> None:
    net = story.net
    where = "one node per organisation, 3 etcd members" if net else "embedded, one data directory"
    table = Table(title=f"the consortium ({where})", title_justify="left")
    for col in ("organisation", "name", "roles", "node"):
        table.add_column(col)
    urls = {n.org: n.url for n in net.nodes} if net else {}
    for o in story.plane("regulator").organisations():
        table.add_row(o.id, o.name, ", ".join(o.roles), urls.get(o.id, "-"))
    story.console.print(table)
    story.outcomes["consortium"] = "ok"


def step_publish(story: Story, rows: int) -> None:
    src = story.work / "patients-2025.csv"
    synthetic_patients(src, rows)
    story.say(
        "1. hospital-a publishes patient records",
        f"{rows:,} synthetic patient records ({src.stat().st_size:,} bytes) are sealed under a "
        "fresh AES-256-GCM data key. The key is split 2-of-2 between hospital-b and the "
        "regulator (threshold custody): neither can read the data alone.",
    )
    listing = Listing(
        title="Patient records 2025",
        description="Diagnoses and lab results, synthetic",
        tags=("patients", "lab"),
        classification="confidential",
        schema=tuple((c, "string") for c in src.read_text().split("\n", 1)[0].split(",")),
        policy=POLICY,
        custody="threshold",
        holders=("hospital-b", "regulator"),
        threshold=2,
    )
    pub = story.plane(OWNER).publish(OWNER, src, listing, inline_limit=0)
    story.dataset = pub.dataset
    story.console.print(
        Story.kv(
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


def step_request_and_approve(story: Story) -> None:
    story.say("2. the insurer asks for access", "purpose: actuarial-research, for 30 days")
    body = {
        "dataset": story.dataset,
        "purpose": "actuarial-research",
        "duration": 30 * 86_400_000,
        "justification": "pricing of chronic-disease cover",
    }
    story.request = derive_id(
        "request", story.plane("insurer").submit("insurer", REQUEST, body).tx_id
    )
    story.console.print(f"request [bold]{story.request[:16]}[/] is open, awaiting approvals")
    story.outcomes["request"] = "ok"
    story.say("3. the regulator and hospital-a approve", "joint approval, as the policy requires")
    story.plane("regulator").submit("regulator", APPROVE, {"request": story.request})
    r = story.plane(OWNER).submit(OWNER, APPROVE, {"request": story.request})
    story.grant = derive_id("grant", r.tx_id)
    story.consortium.settled()
    g = story.plane("insurer").grant(story.grant).grant
    expires = datetime.fromtimestamp(g.expires_at / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    story.console.print(
        Story.kv(
            "grant issued (read by the insurer)",
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


def _attempt(story: Story, name: str, org: str, out: Path) -> None:
    try:
        story.plane(org).fetch(org, story.grant, out, dataset=story.dataset)
    except SharechainError as exc:
        story.outcomes[name] = f"refused: {exc}"
        if isinstance(exc, ReleaseRefusedError):
            story.refusal_codes[name] = exc.code
        story.console.print(f"[bold red]refused[/]: {exc}", highlight=False)
        return
    story.outcomes[name] = "ok"


def step_intruder(story: Story) -> None:
    story.say(
        "4. hospital-b, which holds no grant, tries to use the insurer's grant",
        "it even holds a key share, yet custodians release only to the grantee the chain names",
    )
    _attempt(story, "intruder", "hospital-b", story.work / "stolen.csv")


def step_fetch(story: Story) -> None:
    story.say(
        "5. the insurer fetches the data (hospital-a is offline)",
        "hospital-b and the regulator each check the grant and release their share; the "
        "insurer rebuilds the key, decrypts and checks every digest, then signs a read receipt",
    )
    story.consortium.stop(OWNER)
    out = story.work / "insurer-copy.csv"
    started = time.perf_counter()
    got = story.plane("insurer").fetch("insurer", story.grant, out, offline=frozenset({OWNER}))
    took = time.perf_counter() - started
    same = out.read_bytes() == (story.work / "patients-2025.csv").read_bytes()
    story.released_by = tuple(r.custodian for r in got.releases)
    story.console.print(
        Story.kv(
            "fetched and verified",
            [
                ("shares released by", ", ".join(story.released_by)),
                ("plaintext sha256", got.digests.plaintext_sha256.hex() + "  [green]matches[/]"),
                ("segment root", got.digests.segment_root.hex() + "  [green]matches[/]"),
                ("identical to the original", str(same)),
                ("read receipt", got.read_tx.hex()),
                ("took", f"{took:.2f} s"),
            ],
        )
    )
    story.outcomes["fetch"] = "ok" if same else "corrupt"
    story.consortium.start(OWNER)


def step_revoke(story: Story) -> None:
    story.say(
        "6. hospital-a is back and revokes the grant",
        "the dataset moves to a new key epoch: re-sealed under a fresh key, new shares, old "
        "key and blob destroyed everywhere, so a key kept from before opens nothing",
    )
    done = story.plane(OWNER).revoke(OWNER, story.grant, reason="study finished")
    assert done.rotated is not None  # the dataset was sealed by the data plane
    story.console.print(
        f"grant revoked; dataset now at key epoch {done.rotated.epoch}; "
        f"{done.rotated.destroyed} old key entries destroyed",
        highlight=False,
    )
    story.outcomes["revoke"] = "ok"


def step_fetch_after_revoke(story: Story) -> None:
    story.say("7. the insurer tries again", "")
    story.consortium.settled()
    _attempt(story, "fetch_after_revoke", "insurer", story.work / "again.csv")


def step_audit(story: Story) -> None:
    story.say(
        "8. the audit trail, read by the regulator",
        "every step of the dataset; each inclusion proof is checked against the block hash, "
        "and the block hashes against hospital-b's copy of the chain",
    )
    table = Table(title=f"dataset {story.dataset[:16]}...", title_justify="left")
    for col in ("block", "time (UTC)", "transaction", "by", "outcome", "proof"):
        table.add_column(col)
    other = story.plane("hospital-b")
    verified = 0
    for e in story.plane("regulator").audit(ds=story.dataset):  # every proof verified
        assert e.proof is not None
        if other.proof(e.tx_id).header_hash != e.proof.header_hash:
            raise IntegrityError(f"block {e.height} differs between the copies of the chain")
        verified += 1
        when = datetime.fromtimestamp(e.timestamp / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]
        outcome = "[green]valid[/]" if e.code == VALID.code else f"[red]{e.code}[/]"
        table.add_row(str(e.height), when, e.type, e.sender, outcome, "[green]ok[/]")
    story.console.print(table)
    story.outcomes["audit"] = f"{verified} entries, every proof verified"


def step_verify(story: Story) -> None:
    story.state_roots = story.consortium.settled()
    story.consortium.close()  # a network is taken down: each ledger is read from its disk
    table = Table(title="every ledger, re-verified from genesis", title_justify="left")
    for col in ("ledger", "blocks", "transactions", "state root", "verify"):
        table.add_column(col)
    good = len(set(story.state_roots.values())) == 1
    for org, path in story.consortium.ledgers().items():
        dd = DataDir.open(path)
        store = Store(dd.db_path)
        try:
            report = verify_chain(store, default_registry(), genesis_hash=dd.genesis_hash)
        finally:
            store.close()
        good = good and report.ok
        table.add_row(
            org,
            str(report.height + 1),
            str(report.transactions),
            story.state_roots.get(org, "")[:16] + "...",
            "[green]ok[/]" if report.ok else f"[red]{report.reason}[/]",
        )
    story.console.print(table)
    story.outcomes["verify"] = "ok" if good else "failed: ledgers or state roots differ"


def run_story(data_dir: Path, console: Console, rows: int = 5000, network: str = "solo") -> Story:
    """Lay out the consortium in `data_dir` (`solo` or `etcd`) and play every step."""
    work = data_dir / "files"
    work.mkdir(parents=True, exist_ok=True)
    net = None
    if network == "etcd":
        net = demo_network(data_dir / "net", ORGS)
        console.print(f"starting 3 etcd members and {len(ORGS)} node processes on 127.0.0.1 ...")
        net.up(timeout=60)
        base = net.base / "consortium"
    else:
        base = data_dir / "consortium"
        init_consortium(base, ORGS, consortium="health-data-demo")
    story = Story(Consortium(base, net), work, console)
    try:
        step_consortium(story)
        step_publish(story, rows)
        step_request_and_approve(story)
        step_intruder(story)
        step_fetch(story)
        step_revoke(story)
        step_fetch_after_revoke(story)
        step_blacklist_match(story)
        step_joint_average(story)
        step_new_member(story)
        step_audit(story)
        step_verify(story)
    finally:
        story.consortium.close()
    return story


def run_network_story(base: Path, console: Console, rows: int = 5000) -> Story:
    """`run_story` on six node processes and three etcd members (brought up, then down)."""
    return run_story(base, console, rows, network="etcd")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sharechain.demo", description=__doc__)
    parser.add_argument("--network", default="solo", choices=("solo", "etcd"))
    parser.add_argument("--data-dir", type=Path, default=None, help="keep everything here")
    parser.add_argument("--rows", type=int, default=5000, help="patient records to generate")
    args = parser.parse_args(argv)
    console = Console()
    started = time.perf_counter()
    if args.data_dir is not None:
        story = run_story(args.data_dir, console, args.rows, args.network)
    else:
        with tempfile.TemporaryDirectory(prefix="sharechain-demo-") as tmp:
            story = run_story(Path(tmp), console, args.rows, args.network)
    expected = {
        "intruder": "refused",
        "fetch_after_revoke": "refused",
        "fetch": "ok",
        "blacklist_match": "2 matches",
        "joint_average": "42056.92",
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
