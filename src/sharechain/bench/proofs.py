"""Benchmark: proof bundles (size, offline verification time) and checkpoint cosigning's
cost on the 4-node network, measured side by side in one run.

Bundles. An embedded consortium of four organisations notarises 200 files in
100 blocks; then a bundle of one notarised file is built by reference
(`notary:<digest>`) under a quorum checkpoint, as `sharechain chain proof
file:F --bundle OUT` does, and verified as `verify-bundle` does (the proof,
the membership replay, the checkpoint's cosignatures, the strict body
decoding and the object check), best and median of 200 runs. The same again
after an admission by vote and a key rotation, whose transactions the bundle
then carries as membership evidence.

- `bundle_bytes` (goal < 4096) and `bundle_verify_ms` (goal < 5): the
  typical bundle; `bundle_with_membership_*`: the one with evidence.

Cosigning. The network benchmark (`bench/network.py`, 4 nodes ordered by
etcd) runs twice with the same smaller load, alternating: once with every
node cosigning a checkpoint every second or 100 blocks (far more often than
the default 60 s / 1000 blocks, so the cost shows), once with cosigning off.
Each run's figure is workflow transactions committed on all four peers per
second; the cost is the relative drop, and the CPU seconds per transaction of
the nodes beside it (steadier than wall time on a shared machine). The run
with cosigning goes first, on the colder machine: any warm-up falls on it.

- `cosigning_throughput_cost` (goal < 0.05): 1 - on / off of `network_tx_per_s`
  at a round a second per node;
- `cosigning_cpu_cost`: on / off - 1 of the nodes' CPU seconds per transaction,
  and `..._at_default_interval`: the same rounds once a minute (the default).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sharechain.bench import network
from sharechain.contracts.bundle_objects import check_object, resolve
from sharechain.contracts.membership import PROPOSE, ROTATE, ROTATE_DOMAIN, rotation_message
from sharechain.crypto.signing import SigningKey
from sharechain.ledger.bundles import build_bundle, load_bundle, verify_bundle
from sharechain.ledger.checkpoints import (
    block_hashes,
    checkpoint_of,
    cosign,
    origin_for,
    signed_checkpoint,
)
from sharechain.ledger.transactions import sign_transaction
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import OrgSpec, init_consortium

__all__ = ["run"]

ORGS = (
    OrgSpec("bank-a", ("member", "admin")),
    OrgSpec("bank-b", ("member",)),
    OrgSpec("insurer-c", ("member",)),
    OrgSpec("regulator", ("member", "supervisor")),
)
COSIGN_ON = (100, 1.0)
COSIGN_OFF = (10**12, 1e9)
DEFAULT_SECONDS = 60.0
"""The nodes' default cosigning interval (`api/checkpoint_routes.py`)."""
WORKFLOWS = 1_500
"""Workflows a network run (7,500 transactions): ~10 s of load after ~10 s of start-up."""


def run(*, rounds: int = 200, network_runs: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sharechain-bench-proofs-") as tmp:
        out = _bundles(Path(tmp) / "chain", rounds)
    return out | _cosigning(network_runs)


def _note(emb: Embedded, signers: tuple[str, ...]) -> str:
    hashes = block_hashes(emb.store)
    cp = checkpoint_of(hashes, origin_for(hashes[0]))
    return signed_checkpoint(cp, [cosign(cp, o, emb.keys(o).signing) for o in signers])


def _measure(
    emb: Embedded, ref: str, rounds: int, signers: tuple[str, ...]
) -> tuple[int, float, float]:
    found = resolve(emb.store, ref)
    note = _note(emb, signers)
    doc = build_bundle(emb.store, found.tx_id, note, lineage=found.lineage, about=found.about)
    data = json.dumps(doc, separators=(",", ":")).encode()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        parsed = load_bundle(data)
        check_object(verify_bundle(parsed), parsed.get("object"))
        times.append(time.perf_counter() - t)
    return len(data), min(times) * 1000, statistics.median(times) * 1000


def _bundles(path: Path, rounds: int) -> dict[str, Any]:
    init_consortium(path, ORGS, consortium="bench-proofs")
    emb = Embedded(path)
    try:
        digests = []
        for i in range(100):
            for org in ("bank-a", "bank-b"):
                d = emb.rng(32)
                digests.append(d)
                emb.submit(org, "notary.record", {"digest": d, "note": f"file {i}"})
        ref = f"notary:{digests[57].hex()}"
        size, best, median = _measure(emb, ref, rounds, ("bank-a", "bank-b", "regulator"))
        _membership(emb)
        # Five members now (bank-d admitted), bank-b's key rotated: three others cosign.
        size2, best2, median2 = _measure(emb, ref, rounds, ("bank-a", "insurer-c", "regulator"))
    finally:
        emb.close()
    return {
        "bundle_bytes": size,
        "bundle_verify_ms": round(best, 3),
        "bundle_verify_median_ms": round(median, 3),
        "bundle_bytes_goal": 4096,
        "bundle_verify_ms_goal": 5.0,
        "bundle_with_membership_bytes": size2,
        "bundle_with_membership_verify_ms": round(best2, 3),
        "bundle_with_membership_verify_median_ms": round(median2, 3),
    }


def _membership(emb: Embedded) -> None:
    """An admission by vote (bank-a is the only admin: its proposal passes) and a rotation."""
    newcomer = SigningKey.from_seed(bytes([11]) * 32)
    emb.submit(
        "bank-a",
        PROPOSE,
        {
            "action": "admit",
            "org": "bank-d",
            "roles": ["member"],
            "sign_key": newcomer.public_key,
            "enc_key": bytes(32),
        },
    )
    new = SigningKey.from_seed(bytes([12]) * 32)
    proof = new.sign(ROTATE_DOMAIN, rotation_message("bank-b", new.public_key, bytes(32)))
    stx = sign_transaction(
        emb.keys("bank-b").signing,
        ROTATE,
        "bank-b",
        {"sign_key": new.public_key, "enc_key": bytes(32), "proof": proof},
        now=emb.now,
        rng=emb.rng,
    )
    (receipt,) = emb.submit_raw([stx.raw], orderer="bank-a")
    assert receipt.ok, receipt.reason


def _cosigning(runs: int) -> dict[str, Any]:
    on: list[dict[str, Any]] = []
    off: list[dict[str, Any]] = []
    for i in range(2 * runs):  # alternate, so drift in the machine's load falls on both
        first_on = i % 2 == 0
        result = network.run(
            workflows=WORKFLOWS,
            datasets_per_owner=20,
            checkpoints=COSIGN_ON if first_on else COSIGN_OFF,
            bounded=None,
        )
        (on if first_on else off).append(result)
    rate_on = statistics.median(r["network_tx_per_s"] for r in on)
    rate_off = statistics.median(r["network_tx_per_s"] for r in off)
    cpu_on = statistics.median(_node_cpu_per_tx(r) for r in on)
    cpu_off = statistics.median(_node_cpu_per_tx(r) for r in off)
    return {
        "cosigning_on_tx_per_s": rate_on,
        "cosigning_off_tx_per_s": rate_off,
        "cosigning_throughput_cost": round(1 - rate_on / rate_off, 4),
        "cosigning_throughput_cost_goal": 0.05,
        "cosigning_on_node_cpu_ms_per_tx": round(cpu_on * 1000, 3),
        "cosigning_off_node_cpu_ms_per_tx": round(cpu_off * 1000, 3),
        "cosigning_cpu_cost": round(cpu_on / cpu_off - 1, 4),
        # The same rounds at the default interval (60 s) cost a sixtieth as often.
        "cosigning_cpu_cost_at_default_interval": round(
            (cpu_on / cpu_off - 1) * COSIGN_ON[1] / DEFAULT_SECONDS, 5
        ),
        "cosigning_interval": {"blocks": COSIGN_ON[0], "seconds": COSIGN_ON[1]},
        "cosigning_transactions_per_run": WORKFLOWS * network.STAGES,
    }


def _node_cpu_per_tx(result: dict[str, Any]) -> float:
    orgs = result["appends_won"].keys()
    cpu = sum(float(result["cpu_seconds"][o]) for o in orgs)
    return cpu / max(1, int(result["transactions"]))


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
