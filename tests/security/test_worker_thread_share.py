"""Attack 52: a member holds every worker thread of a node with requests that wait.

A node answers most routes on a pool of 40 worker threads. Several of them
may wait: a key release under a session this node did not issue waits up to
5 s for the chain to show it (the further shares of a threshold fetch come
right after the first custodian's release commits), a release waits for its
transaction to commit, a long-poll for blocks. A member asking for releases
under sessions nobody issued, from 64 threads, held every worker thread, and
every other member's requests waited behind those waits (about 5 s each; 10 s
from 96 threads).
Caps route by route (threats 47 and 51) cannot name every route that may
wait; now each organisation other than the node's own has at most
`Limits.requests_per_member` requests under way on a node at once (429
beyond), so one member holds at most that share of the threads whatever it
asks. The node runs as its own process; another member times its status
requests meanwhile: each answers in well under a second.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio.to_thread
import pytest
from api_helpers import Consortium, Process, publish_and_grant, serve, spawn, timed_during_flood

from sharechain.api.client import NodeClient
from sharechain.api.quotas import WORKER_THREADS, Limits
from sharechain.errors import SharechainError


@pytest.fixture
def granted(tmp_path: Path) -> Iterator[tuple[Process, str]]:
    for process in spawn(Consortium.make(tmp_path), "hospital-a"):
        _, gid = publish_and_grant(process, tmp_path)
        yield process, gid


def test_one_member_waiting_on_many_threads_leaves_worker_threads_for_the_others(
    granted: tuple[Process, str],
) -> None:
    process, gid = granted

    def flood(c: NodeClient) -> int:
        session = os.urandom(16).hex()  # issued by nobody: the node waits for the chain
        return c.http.post(f"/v1/grants/{gid}/key-release", json={"session": session}).status_code

    def status(c: NodeClient) -> float:
        t = time.perf_counter()
        reply = c.http.get("/v1/status")
        assert reply.status_code == 200, reply.text
        return time.perf_counter() - t

    timings, codes = timed_during_flood(flood, status, process)
    median, worst = statistics.median(timings), max(timings)
    shown = f"median {median * 1000:.0f} ms, slowest {worst * 1000:.0f} ms; flood {dict(codes)}"
    # Without the share every status request waited seconds for a worker thread (about
    # 5 s each). With it, milliseconds alone; a few hundred beside the rest of the suite.
    assert median < 1.0, shown
    # The flood was refused past its share (429), and what it was let wait for was
    # refused in the end (403: a session nobody issued).
    assert codes[429] > 0 and codes[403] > 0, shown
    assert set(codes) <= {403, 429}, shown


def test_past_its_share_a_member_is_refused_at_once_and_nobody_else_is(tmp_path: Path) -> None:
    consortium = Consortium.make(tmp_path)
    with serve(consortium, "hospital-a", limits=Limits(requests_per_member=2)) as running:
        _, gid = publish_and_grant(running, tmp_path)
        results: list[int] = []

        def wait_for_the_chain() -> None:  # each holds one of bank-b's two for 5 s
            with running.client("bank-b") as c:
                session = os.urandom(16).hex()
                reply = c.http.post(f"/v1/grants/{gid}/key-release", json={"session": session})
                results.append(reply.status_code)

        held = [threading.Thread(target=wait_for_the_chain) for _ in range(2)]
        for t in held:
            t.start()
        time.sleep(1.0)
        with running.client("bank-b") as c:
            t0 = time.perf_counter()
            reply = c.http.get("/v1/status")
            refused_in = time.perf_counter() - t0
        assert reply.status_code == 429 and reply.headers["Retry-After"] == "1"
        assert "bank-b has 2 requests under way on this node" in reply.json()["detail"]
        assert refused_in < 1.0  # refused at once, not after the waits
        refusals = running.node.metrics.registry.get_sample_value(
            "sharechain_member_refusals_total", {"org": "bank-b"}
        )
        assert refusals == 1.0  # counted against bank-b, for the operator's alert
        for org in ("regulator", "hospital-a"):  # another member, the node's own organisation
            with running.client(org) as c:
                assert c.http.get("/v1/status").status_code == 200
        for t in held:
            t.join(15)
        assert results == [403, 403]
        # The share is given back when a request ends, refused or not.
        with running.client("bank-b") as c:
            assert c.http.get("/v1/status").status_code == 200


def test_a_user_s_client_waits_out_a_refusal_over_the_share(tmp_path: Path) -> None:
    # The member's own tools share its share with its node: a user's client (the data
    # plane, the command line) sends a request refused as busy again after Retry-After,
    # signed afresh, instead of failing the user's command.
    consortium = Consortium.make(tmp_path)
    with serve(consortium, "hospital-a", limits=Limits(requests_per_member=2)) as running:
        _, gid = publish_and_grant(running, tmp_path)

        def wait_for_the_chain() -> None:  # each holds one of bank-b's two for 5 s
            with running.client("bank-b") as c:
                c.http.post(f"/v1/grants/{gid}/key-release", json={"session": os.urandom(16).hex()})

        held = [threading.Thread(target=wait_for_the_chain) for _ in range(2)]
        for t in held:
            t.start()
        time.sleep(1.0)
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)

        impatient = running.client("bank-b")  # as a node's client of its peers is
        with impatient, pytest.raises(SharechainError, match="HTTP 429"):
            impatient.status()
        with running.client("bank-b", busy_retries=8, sleep=sleep) as patient:
            assert patient.status()["height"] >= 1  # answered once the holds ended
        for t in held:
            t.join(15)
        assert 2 <= len(waits) <= 8 and set(waits) == {1.0}
        refusals = running.node.metrics.registry.get_sample_value(
            "sharechain_member_refusals_total", {"org": "bank-b"}
        )
        assert refusals == len(waits) + 1


def test_the_share_is_at_most_half_the_worker_threads() -> None:
    # One member's share leaves the others at least half of the node's worker threads
    # (anyio's default pool, which FastAPI runs every non-coroutine route on).
    async def threads() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    assert anyio.run(threads) == WORKER_THREADS
    assert Limits().requests_per_member <= WORKER_THREADS // 2
