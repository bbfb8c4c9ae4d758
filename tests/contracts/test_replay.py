"""Replay equivalence: re-executing every block rebuilds the live state exactly."""

from __future__ import annotations

from contracts_kit import Clock, Net, digest

from sharechain.contracts import default_registry, derive_id
from sharechain.ledger.chain import verify_chain


def test_state_rebuilt_from_blocks_equals_live_state(net: Net, clock: Clock) -> None:
    net.admit("lab-e")
    ds = net.register()
    gid = net.granted(ds)
    net.release(gid)
    net.ok("hospital-b", "grant.read", {"grant": gid, "digest": digest("plain")})
    child = derive_id(
        "dataset",
        net.ok(
            "hospital-b",
            "dataset.derive",
            {
                "parents": [ds],
                "transformation": "pseudonymised patient ids",
                "title": "masked",
                "plaintext_digest": digest("m"),
                "ciphertext_digest": digest("mc"),
                "size": 10,
            },
        ).tx_id,
    )
    net.rotate("clinic-c")
    net.remove("lab-e")
    net.send("clinic-c", "access.approve", {"request": "00" * 32})  # refused, still recorded
    clock.t += 7200
    net.release(gid)  # expired
    net.ok("hospital-a", "dataset.purge", {"dataset": ds})
    assert net.state(f"dataset/{child}")["parents"] == [ds]

    report = verify_chain(net.store, default_registry())
    assert report.ok, report.reason
    assert report.height == net.store.head().height  # type: ignore[union-attr]
    assert report.state_root == net.store.head().state_root  # type: ignore[union-attr]
