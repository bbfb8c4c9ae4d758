"""`sharechain network up/status/down` as a user runs them (real processes, loopback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sharechain.api.client import NodeClient
from sharechain.ledger.transactions import sign_transaction
from sharechain.storage.datadir import DataDir


def _cli(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from sharechain.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_network_up_status_down_keeps_the_chain(tmp_path: Path) -> None:
    base = tmp_path / "net"
    # Plain HTTP, asked for (HTTPS, the default: tests/security/test_network_https.py).
    up = _cli("network", "up", "--orgs", "3", "--dir", str(base), "--plain-http", "--json")
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        net = json.loads(up.stdout)
        assert net["tls"] is None and not (base / "tls").exists()
        assert all(n["url"].startswith("http://127.0.0.1:") for n in net["nodes"])
        assert net["state"] == "up" and [n["org"] for n in net["nodes"]] == [
            "hospital-a",
            "hospital-b",
            "regulator",
        ]
        keys = DataDir.open(Path(net["consortium_dir"])).keys("hospital-b")
        stx = sign_transaction(
            keys.signing, "notary.record", "hospital-b", {"digest": b"\x07" * 32}
        )
        with NodeClient(net["nodes"][1]["url"], "hospital-b", keys.signing) as client:
            receipt = client.submit_checked(stx.raw)
        status = _cli("network", "status", "--dir", str(base), "--json")
        assert status.returncode == 0, status.stderr
        rows = json.loads(status.stdout)["nodes"]
        assert all(r["ready"] for r in rows)
        assert {r["attestations"] for r in rows} == {"ok"}
        idle = {"fetching": 0, "failed": 0, "fetched": 0, "shredded": 0}
        assert all(r["data_plane"] == idle for r in rows)  # nothing to fetch or shred yet
        table = _cli("network", "status", "--dir", str(base))
        assert "blobs" in table.stdout and "shredded" in table.stdout
    finally:
        down = _cli("network", "down", "--dir", str(base))
    assert down.returncode == 0, down.stderr
    assert json.loads((base / "network.json").read_text())["state"] == "down"
    # Nothing lost: every node's own ledger holds the transaction after the stop.
    for org in ("hospital-a", "hospital-b", "regulator"):
        from sharechain.ledger.store import Store

        store = Store(base / "nodes" / org / "ledger.db")
        try:
            loc = store.tx_location(receipt.tx_id)
        finally:
            store.close()
        assert loc is not None and loc.height == receipt.height
