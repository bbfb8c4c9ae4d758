"""A committing process killed with SIGKILL leaves a chain at height h or h+1 that verifies.

The child commits one block after another on the embedded default and prints
each committed height; the parent kills it at a random moment, reopens the
data directory and checks the chain. Six kills, each into a running commit
loop, on the same chain.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sharechain.ledger.chain import verify_chain
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import OrgSpec, init_consortium

CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from sharechain.contracts.notary import RECORD
    from sharechain.sharing.embedded import Embedded

    emb = Embedded(Path(sys.argv[1]))
    orgs = ["hospital-a", "hospital-b", "regulator"]
    i = 0
    print("ready", flush=True)
    while True:
        # Several transactions per block so a kill can land mid-commit.
        raws = [emb.sign(orgs[i % 3], RECORD, {"digest": os.urandom(32)}).raw for _ in range(20)]
        receipts = emb.submit_raw(raws, orderer=orgs[i % 3])
        print(receipts[0].height, flush=True)
        i += 1
    """
)


def test_sigkill_leaves_h_or_h_plus_one(tmp_path: Path) -> None:
    d = tmp_path / "data"
    init_consortium(
        d,
        [
            OrgSpec("hospital-a", ("member", "admin")),
            OrgSpec("hospital-b", ("member",)),
            OrgSpec("regulator", ("supervisor",)),
        ],
    )
    Embedded(d).close()
    rng = random.Random(2)
    committed = 0
    for _ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(d)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        reported = int(child.stdout.readline())  # at least one block in this run
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        for line in child.stdout:
            reported = int(line)
        child.stdout.close()
        assert reported >= committed + 1
        with Embedded(d) as emb:
            height = emb.ledger.height
            assert height in (reported, reported + 1)
            report = verify_chain(emb.store, emb.registry, genesis_hash=emb.datadir.genesis_hash)
            assert report.ok, report.reason
            assert report.height == height
        committed = height
    assert committed >= 6
