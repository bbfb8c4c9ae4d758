"""Secure aggregation as the command line runs it: 10 organisations, 1,000 values each.

Every figure comes from real sessions on an embedded consortium, through the
code the command line and the demo use (`Plane.computations()`, the sides of
`sharing.aggregates`): each party accepts on the chain, announces its X25519
mask key with one Shamir share per other party, commits to each of its 1,000
values (Pedersen) and proves each in ``[0, 2^32)`` (a 32-bit range proof),
masks them (ChaCha20 streams from the pairwise X25519 secrets), commits the
commitments' digest on the chain and posts its submission to the aggregator's
mailbox; the aggregator checks all 10,000 proofs, unmasks, checks the sums
against the commitments, records the result and sends the sums back.

- ``aggregation_participant_cpu_s``: CPU seconds of one party's side (mean
  over the 10; ``_max`` the slowest), all of it: keys, shares, proofs, masks,
  signing, chain and mailbox. The sides run interleaved in one thread
  (`drive_all`), and each step of each side is timed with
  ``time.process_time`` around it, so each party's CPU is its own.
- ``aggregation_aggregator_cpu_s``: the aggregator's result side (checking every
  proof, spread over the cores; unmasking; checking the sums).
- ``aggregation_total_wall_s``: the whole session, proposal to the last receipt,
  the parties taking turns on one machine (separate organisations would prove
  side by side, so their wall time would be about one party's plus the
  aggregator's). ``_total_cpu_s`` is this process's CPU over the same span:
  on an idle machine the wall is about the parties' CPU plus the aggregator's
  divided by the cores (its checks use them all); on a shared machine the
  rest is the wait for a core.
- ``aggregation_dropouts_*``: the same session with 2 dropouts tolerated and 2
  parties leaving after their announcement: the survivors release their shares
  of the leavers' mask keys and the sums are still exact.
- ``rangeproof_verify_32bit_ms``: the best of 200 verifications of one 32-bit
  proof (wall; `verify` splits its multiplications over two threads), its CPU
  time, and the CPU per proof of `verify_batch` on 200 proofs, against the
  goal of 5 ms.

Every run checks its sums against the plain sums and raises if they differ.
Run ``python -m sharechain.bench.aggregation`` to print the figures as JSON.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sharechain.crypto import rangeproof
from sharechain.sharing.computing import Computations
from sharechain.sharing.plane import Plane
from sharechain.sharing.sessions import Side, Steps
from sharechain.storage.datadir import OrgSpec, init_consortium

__all__ = ["GOAL_VERIFY_MS", "rangeproof_figures", "run", "session_figures"]

PARTICIPANTS = 10
LENGTH = 1_000
BITS = 32
GOAL_VERIFY_MS = 5.0


def _timed(steps: Steps[Any], spent: list[float]) -> Steps[Any]:
    """``steps``, adding the CPU seconds each of its steps takes to ``spent[0]``."""
    while True:
        start = time.process_time()
        try:
            waiting = next(steps)
        except StopIteration as done:
            spent[0] += time.process_time() - start
            return done.value
        spent[0] += time.process_time() - start
        yield waiting


def _leave_after_announcing(side: Side) -> None:
    """A dropout: the party accepts and announces its mask key, then never submits."""
    waiting = next(side.steps)
    if not waiting.startswith("the announcements"):
        raise RuntimeError(f"a leaving party stopped at {waiting!r}, not at the announcements")
    side.steps.close()


def session_figures(
    base: Path,
    participants: int = PARTICIPANTS,
    length: int = LENGTH,
    dropouts: int = 0,
    seed: int = 7,
) -> dict[str, Any]:
    """One session in a new consortium in ``base``; ``dropouts`` parties leave (as allowed)."""
    names = tuple(f"org-{i:02d}" for i in range(participants))
    init_consortium(
        base,
        [OrgSpec(n, ("member", "admin") if n == names[0] else ("member",)) for n in names]
        + [OrgSpec("supervisor", ("member", "supervisor"))],
        consortium="bench-aggregation",
    )
    rng = random.Random(seed)
    values = {n: [rng.randrange(1 << BITS) for _ in range(length)] for n in names}
    leaving = names[len(names) - dropouts :]
    survivors = [n for n in names if n not in leaving]
    plane = Plane.local(base)
    try:
        with plane.computations() as made:
            comps = Computations(replace(made.cx, poll=0.02))
            wall, process = time.perf_counter(), time.process_time()
            aggregator = names[0]
            sid = comps.aggregate_propose(
                aggregator, names, length=length, bits=BITS, scale=0, max_dropouts=dropouts,
                purpose="benchmark", supervisor_approval=False,
            )  # fmt: skip
            for name in names[1:]:
                comps.join(name, sid)
            for name in leaving:
                _leave_after_announcing(comps.side_aggregate_submit(name, sid, values[name]))
            cpu = {n: [0.0] for n in [*survivors, "aggregator"]}
            sides = []
            for name in survivors:
                side = comps.side_aggregate_submit(name, sid, values[name])
                sides.append(replace(side, steps=_timed(side.steps, cpu[name])))
            grace = 600.0 if not dropouts else 1.0  # the survivors submit before it is checked
            result = comps.side_aggregate_result(aggregator, sid, grace=grace)
            sides.append(replace(result, steps=_timed(result.steps, cpu["aggregator"])))
            *_, outcome = Computations.together(sides, timeout=1800)
            wall, process = time.perf_counter() - wall, time.process_time() - process
            record = comps.session(sid)
    finally:
        plane.close()
    plain = [sum(values[n][i] for n in survivors) for i in range(length)]
    if [int(s) for s in outcome.sums] != plain or list(outcome.contributors) != survivors:
        raise RuntimeError("the secure sums differ from the plain sums")
    if record.status != "done":
        raise RuntimeError(f"the session ended {record.status}")
    party_cpu = [cpu[n][0] for n in survivors]
    key = "aggregation_dropouts" if dropouts else "aggregation"
    return {
        f"{key}_participants": participants,
        f"{key}_dropped": len(outcome.dropped),
        f"{key}_values": length,
        f"{key}_participant_cpu_s": round(sum(party_cpu) / len(party_cpu), 2),
        f"{key}_participant_cpu_max_s": round(max(party_cpu), 2),
        f"{key}_aggregator_cpu_s": round(cpu["aggregator"][0], 2),
        f"{key}_total_wall_s": round(wall, 2),
        f"{key}_total_cpu_s": round(process, 2),
        f"{key}_sums_exact": True,
    }


def rangeproof_figures(rounds: int = 200) -> dict[str, Any]:
    """One 32-bit proof verified ``rounds`` times (best wall, mean CPU), and a batch of them."""
    commitment, _, proof = rangeproof.prove_value(123_456_789, BITS, b"bench")
    best = float("inf")
    cpu = time.process_time()
    for _ in range(rounds):
        start = time.perf_counter()
        rangeproof.verify(commitment, proof, b"bench", BITS)
        best = min(best, time.perf_counter() - start)
    cpu = (time.process_time() - cpu) / rounds
    items: list[tuple[bytes, bytes, bytes]] = []
    prove_cpu = time.process_time()
    for i in range(rounds):
        context = b"bench-%d" % i
        c, _, p = rangeproof.prove_value(i * 21_000_017 % (1 << BITS), BITS, context)
        items.append((c, p, context))
    prove_cpu = (time.process_time() - prove_cpu) / rounds
    batch_wall, batch_cpu = time.perf_counter(), time.process_time()
    rangeproof.verify_batch(items, BITS)
    batch_wall = (time.perf_counter() - batch_wall) / rounds
    batch_cpu = (time.process_time() - batch_cpu) / rounds
    return {
        "rangeproof_verify_32bit_ms": round(best * 1000, 2),
        "rangeproof_verify_32bit_cpu_ms": round(cpu * 1000, 2),
        "rangeproof_verify_batch_32bit_wall_ms": round(batch_wall * 1000, 2),
        "rangeproof_verify_batch_32bit_cpu_ms": round(batch_cpu * 1000, 2),
        "rangeproof_verify_32bit_goal_ms": GOAL_VERIFY_MS,
        "rangeproof_verify_32bit_goal_ratio": round(best * 1000 / GOAL_VERIFY_MS, 2),
        "rangeproof_prove_32bit_cpu_ms": round(prove_cpu * 1000, 2),
        "rangeproof_32bit_bytes": len(proof),
    }


def run() -> dict[str, Any]:
    """Every figure above (about four minutes on two cores)."""
    out: dict[str, Any] = rangeproof_figures()
    with tempfile.TemporaryDirectory(prefix="sharechain-bench-agg-") as tmp:
        out.update(session_figures(Path(tmp) / "all"))
        out.update(session_figures(Path(tmp) / "dropouts", dropouts=2))
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
