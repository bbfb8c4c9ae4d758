"""The demo's joint computations: a blacklist match and a joint average salary.

Two steps of the story in `sharechain.demo`, each over the organisations'
`Plane`s (embedded or their nodes): the insurer matches its fraud blacklist
against hospital-b's by private set intersection, and the two hospitals and
the insurer compute a nurse's average salary by secure aggregation while the
regulator, who joined, drops out. The sets are small so `make demo` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sharechain.contracts import computations
from sharechain.sharing.computing import Computations

if TYPE_CHECKING:
    from sharechain.demo import Story

__all__ = [
    "CLIENT_BLACKLIST",
    "HOLDER_BLACKLIST",
    "SALARIES",
    "step_blacklist_match",
    "step_joint_average",
]


# Spellings differ on purpose: normalisation matches them.
HOLDER_BLACKLIST = ("Marta Leroy", "Hugo Simon", "Ines Petit", "Karim Moreau", "Olga Durand")
CLIENT_BLACKLIST = ("marta leroy", "Paul Martin", " Hugo SIMON", "Lea Dubois")
SALARIES = {"hospital-a": "41250.00", "hospital-b": "39800.50", "insurer": "45120.25"}


def step_blacklist_match(story: Story) -> None:
    holder, client = "hospital-b", "insurer"
    story.say(
        "blacklist match (private set intersection)",
        f"{holder} offers its fraud blacklist ({len(HOLDER_BLACKLIST)} names) to {client} "
        f"({len(CLIENT_BLACKLIST)} names), at most 100 names per session; the regulator "
        "approves. The OPRF messages go node to node; the chain records the session, the "
        "set sizes and the size of the intersection, never a name.",
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
    story.console.print(
        story.kv(
            f"session {sid[:12]}",
            [
                (f"{client} learns", ", ".join(matched.matches)),
                (f"{holder} learns", f"{answered.client_set_size} names were asked"),
                (
                    "on the chain",
                    f"{record.status}; intersection size "
                    f"{record.result['intersection_size'] if record.result else '-'}",
                ),
            ],
        )
    )
    story.outcomes["blacklist_match"] = f"{len(matched.matches)} matches"


def step_joint_average(story: Story) -> None:
    orgs = ("hospital-a", "hospital-b", "insurer", "regulator")
    story.say(
        "joint average salary (secure aggregation)",
        "hospital-a, hospital-b and the insurer each add the salary they pay a nurse, masked "
        "so the masks cancel only in the sum, committed and range-proved on the chain. The "
        "regulator joins too but never submits: its masks are removed with the others' key "
        "shares (one dropout allowed). Nobody sees another's figure.",
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
    story.console.print(
        story.kv(
            f"session {sid[:12]}",
            [
                ("contributors", ", ".join(outcome.contributors)),
                ("dropped out", ", ".join(outcome.dropped)),
                ("average salary", f"{outcome.means[0]:.2f}"),
            ],
        )
    )
    story.outcomes["joint_average"] = f"{outcome.means[0]:.2f}"
