"""The demo's joint computations: a blacklist match between two banks, a joint average salary.

Two steps of the story in `sharechain.demo`, each over the organisations'
`Plane`s (embedded or their nodes): bank-b matches its customers' names
against bank-a's fraud blacklist by private set intersection (the regulator
approves), and three employers (the two hospitals and the insurer) compute the
average salary they pay a nurse by secure aggregation while the regulator,
who joined, drops out. The sets are small so `make demo` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sharechain.contracts import computations
from sharechain.sharing.computing import Computations

if TYPE_CHECKING:
    from sharechain.demo import Story

__all__ = [
    "CLIENT_BANK",
    "CLIENT_BLACKLIST",
    "HOLDER_BANK",
    "HOLDER_BLACKLIST",
    "SALARIES",
    "step_blacklist_match",
    "step_joint_average",
]


# Spellings differ on purpose: normalisation matches them.
HOLDER_BLACKLIST = ("Marta Leroy", "Hugo Simon", "Ines Petit", "Karim Moreau", "Olga Durand")
CLIENT_BLACKLIST = ("marta leroy", "Paul Martin", " Hugo SIMON", "Lea Dubois")
SALARIES = {"hospital-a": "41250.00", "hospital-b": "39800.50", "insurer": "45120.25"}
"""What each of the three employers pays a nurse; none sees another's."""
HOLDER_BANK, CLIENT_BANK = "bank-a", "bank-b"


def step_blacklist_match(story: Story) -> None:
    holder, client = HOLDER_BANK, CLIENT_BANK
    story.say(
        "blacklist match between two banks (private set intersection)",
        f"{holder} offers its fraud blacklist ({len(HOLDER_BLACKLIST)} names) to {client}, "
        f"which checks {len(CLIENT_BLACKLIST)} of its customers against it, at most 100 names "
        "per session; the regulator approves. The OPRF messages go node to node; the chain "
        "records the session, the set sizes and the size of the intersection, never a name.",
    )
    with story.plane(holder).computations() as h, story.plane(client).computations() as c:
        sid = h.psi_offer(holder, client, max_set_size=100, purpose="fraud prevention")
        story.plane("regulator").submit("regulator", computations.APPROVE, {"session": sid})
        answered, matched = Computations.together(
            [
                h.side_psi_answer(holder, sid, HOLDER_BLACKLIST),
                c.side_psi_match(client, sid, CLIENT_BLACKLIST),
            ],
            timeout=60,
        )
        record = c.session(sid)
    size = record.result["intersection_size"] if record.result else "-"
    story.console.print(
        story.kv(
            f"session {sid[:12]}",
            [
                (
                    f"{client} learns",
                    f"{len(matched.matches)} of its {answered.client_set_size} customers are on "
                    f"{holder}'s blacklist: {', '.join(n.strip() for n in matched.matches)}",
                ),
                (
                    f"{holder} learns",
                    f"{client} asked about {answered.client_set_size} names; not which, "
                    "nor which matched",
                ),
                ("on the chain", f"{record.status}; intersection size {size}, no names"),
            ],
        )
    )
    story.outcomes["blacklist_match"] = f"{len(matched.matches)} matches"
    story.outcomes["blacklist_matches"] = "; ".join(matched.matches)


def step_joint_average(story: Story) -> None:
    employers = tuple(SALARIES)
    orgs = (*employers, "regulator")
    story.say(
        "joint average salary across three employers (secure aggregation)",
        "hospital-a, hospital-b and the insurer each pay nurses; each adds the salary it pays, "
        "masked so the masks cancel only in the sum, committed and range-proved. The "
        "regulator joins too but never submits: its masks are removed with the others' key "
        "shares (one dropout allowed). Nobody, hospital-a who adds up included, sees another "
        "employer's figure; the chain holds only commitments and the sum's digest.",
    )
    comps = {o: story.plane(o).computations() for o in orgs}
    try:
        agg = comps["hospital-a"]
        sid = agg.aggregate_propose(
            "hospital-a", orgs, length=1, bits=24, scale=2, max_dropouts=1,
            purpose="nurse salary benchmark", supervisor_approval=False,
        )  # fmt: skip
        for o in orgs[1:]:
            comps[o].join(o, sid)
        leaving = comps["regulator"].side_aggregate_submit("regulator", sid, ["0"]).steps
        next(leaving)  # announces its mask key, then drops out
        leaving.close()
        sides = [comps[o].side_aggregate_submit(o, sid, [v]) for o, v in SALARIES.items()]
        sides.append(agg.side_aggregate_result("hospital-a", sid, grace=1.0))
        *_, outcome = Computations.together(sides, timeout=120)
    finally:
        for c in comps.values():
            c.close()
    average = f"{outcome.means[0]:.2f}"
    story.console.print(
        story.kv(
            f"session {sid[:12]}",
            [
                ("contributors", ", ".join(outcome.contributors)),
                ("dropped out", ", ".join(outcome.dropped)),
                (
                    "average salary",
                    f"{average}: the average nurse salary across the "
                    f"{len(outcome.contributors)} employers, learned by each of them and by "
                    "no one else; no single employer's salary was revealed",
                ),
            ],
        )
    )
    story.outcomes["joint_average"] = average
    story.outcomes["joint_average_employers"] = ", ".join(outcome.contributors)
