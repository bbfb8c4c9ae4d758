"""Joint computation figures: PSI against OpenMined's PSI, secure aggregation, range proofs.

- ``psi_<n>_*``: a private set intersection of two sets of ``n`` e-mail-like
  strings (half of them shared), 10k x 10k and 100k x 100k. ``wall_s`` is the
  whole protocol on this machine (client blinds, holder evaluates and tags its
  set, client finalises), messages passing through their byte encoding;
  ``bytes`` is everything exchanged. ``openmined_*`` is OpenMined's
  ``openmined-psi`` (C++, ECDH over P-256) on the same sets, one run, with its
  exact ``RAW`` setup message and, for 10k, its compact ``GCS`` filter
  (false-positive rate 1e-9). Our OPRF evaluations run on a thread pool of one
  thread per core (libsodium releases the GIL).
- ``aggregation_*``: 10 participants, 1,000 values each (32-bit range proofs on
  every value, 2 dropouts tolerated): CPU seconds of one participant (key
  split, masks, commitments and proofs; the participants run side by side, one
  thread each, and each thread's CPU time is its own), the aggregator's CPU
  (checking 10,000 range proofs, summing, checking the sum against the
  commitments) and the wall time of the whole session run in one process.
- ``rangeproof_verify_32bit_ms``: the best of 200 verifications of a 32-bit proof
  (wall; the verifier spreads its scalar multiplications over two threads),
  with its CPU time alongside.

Run ``python -m sharechain.bench.psi`` to print the figures as JSON.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from sharechain.crypto import oprf, rangeproof
from sharechain.privacy import aggregation as ag
from sharechain.privacy import psi

__all__ = ["aggregation_figures", "openmined_psi", "our_psi", "rangeproof_figures", "run", "sets"]

PSI_SIZES = (10_000, 100_000)
AGG_PARTICIPANTS = 10
AGG_LENGTH = 1_000


def sets(n: int, seed: int = 1) -> tuple[list[str], list[str]]:
    """Two sets of ``n`` distinct addresses sharing ``n // 2`` of them."""
    rng = random.Random(seed)
    shared = [f"customer-{rng.getrandbits(48):012x}@bank.example" for _ in range(n // 2)]
    client = shared + [f"client-{i}@bank-a.example" for i in range(n - len(shared))]
    holder = shared + [f"holder-{i}@bank-b.example" for i in range(n - len(shared))]
    rng.shuffle(client)
    rng.shuffle(holder)
    return client, holder


def our_psi(client: list[str], holder: list[str]) -> tuple[float, int, int]:
    """``(wall seconds, bytes exchanged, intersection size)`` of our protocol."""
    start = time.perf_counter()
    key = oprf.generate_key()
    state, request = psi.client_request(client, case="exact")
    sent = request.encode()
    response = psi.holder_respond(key, psi.PsiRequest.decode(sent), holder, case="exact")
    answer = response.encode()
    result = psi.client_finish(state, psi.PsiResponse.decode(answer))
    return time.perf_counter() - start, len(sent) + len(answer), len(result.intersection)


def openmined_psi(client: list[str], holder: list[str], compact: bool) -> tuple[float, int, int]:
    """The same figures for ``openmined-psi``; raises ImportError when it is not installed."""
    import private_set_intersection.python as om

    structure = om.DataStructure.GCS if compact else om.DataStructure.RAW
    start = time.perf_counter()
    om_client = om.client.CreateWithNewKey(True)
    om_server = om.server.CreateWithNewKey(True)
    setup = om_server.CreateSetupMessage(1e-9, len(client), holder, structure)
    request = om_client.CreateRequest(client)
    response = om_server.ProcessRequest(request)
    found = om_client.GetIntersection(setup, response)
    wall = time.perf_counter() - start
    size = sum(len(m.SerializeToString()) for m in (setup, request, response))
    return wall, size, len(found)


def _psi_figures(n: int) -> dict[str, Any]:
    client, holder = sets(n)
    wall, size, found = our_psi(client, holder)
    if found != n // 2:
        raise RuntimeError(f"our PSI found {found} of {n // 2} shared elements")
    out: dict[str, Any] = {f"psi_{n}_wall_s": round(wall, 2), f"psi_{n}_bytes": size}
    runs = [("raw", False)] + ([("gcs", True)] if n <= 10_000 else [])
    for name, compact in runs:
        try:
            om_wall, om_size, om_found = openmined_psi(client, holder, compact)
        except ImportError:
            out["openmined_psi"] = "not installed (pip install openmined-psi)"
            break
        out[f"openmined_psi_{n}_{name}_wall_s"] = round(om_wall, 2)
        out[f"openmined_psi_{n}_{name}_bytes"] = om_size
        out[f"openmined_psi_{n}_{name}_found"] = om_found
    return out


def _cpu(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and the CPU seconds the calling thread spent in it."""
    start = time.thread_time()
    value = fn()
    return value, time.thread_time() - start


def aggregation_figures(
    participants: int = AGG_PARTICIPANTS, length: int = AGG_LENGTH
) -> dict[str, Any]:
    """Run one session with two dropouts tolerated (and none happening); check the sums."""
    names = tuple(f"org-{i}" for i in range(participants))
    dropouts = min(2, participants - ag.MIN_PARTICIPANTS)
    session = ag.Session(b"bench", names, length=length, max_dropouts=dropouts, bits=32)
    rng = random.Random(5)
    values = {p: [rng.randrange(1 << 32) for _ in range(length)] for p in names}
    wall = time.perf_counter()
    states, announcements, cpu = {}, [], []
    for name in names:
        (state, announcement), seconds = _cpu(partial(ag.start, session, name))
        states[name] = state
        announcements.append(announcement)
        cpu.append(seconds)
    # The participants are separate organisations: they prove side by side, one
    # thread each (libsodium runs without the GIL), and each thread's CPU is its own.
    with ThreadPoolExecutor(max_workers=oprf.default_workers()) as pool:
        done = list(
            pool.map(
                lambda name: _cpu(partial(ag.submit, states[name], announcements, values[name])),
                names,
            )
        )
    submissions = [sub for sub, _ in done]
    cpu = [c + seconds for c, (_, seconds) in zip(cpu, done, strict=True)]
    # The aggregator's range-proof checks use a second thread: count the process's CPU.
    aggregator = time.process_time()
    result = ag.aggregate(session, announcements, submissions)
    aggregator = time.process_time() - aggregator
    wall = time.perf_counter() - wall
    if list(result.sums) != [sum(values[p][i] for p in names) for i in range(length)]:
        raise RuntimeError("the secure sum differs from the plain sum")
    return {
        "aggregation_participants": participants,
        "aggregation_values": length,
        "aggregation_participant_cpu_s": round(sum(cpu) / len(cpu), 2),
        "aggregation_aggregator_cpu_s": round(aggregator, 2),
        "aggregation_total_wall_s": round(wall, 2),
        "aggregation_submission_bytes": sum(
            8 + 32 + 32 + len(proof) for proof in submissions[0].proofs
        ),
    }


def rangeproof_figures(rounds: int = 200) -> dict[str, float]:
    """Best wall time and mean CPU time of verifying one 32-bit range proof."""
    commitment, _, proof = rangeproof.prove_value(123_456_789, 32, b"bench")
    best = float("inf")
    cpu = time.process_time()
    for _ in range(rounds):
        start = time.perf_counter()
        rangeproof.verify(commitment, proof, b"bench", 32)
        best = min(best, time.perf_counter() - start)
    cpu = (time.process_time() - cpu) / rounds
    return {
        "rangeproof_verify_32bit_ms": round(best * 1000, 2),
        "rangeproof_verify_32bit_cpu_ms": round(cpu * 1000, 2),
        "rangeproof_32bit_bytes": len(proof),
    }


def run() -> dict[str, Any]:
    """Every figure above (about three minutes on two cores)."""
    out: dict[str, Any] = {"psi_threads": oprf.default_workers()}
    for n in PSI_SIZES:
        out.update(_psi_figures(n))
    out.update(rangeproof_figures())
    out.update(aggregation_figures())
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
