"""Peak memory measurement: a child's own peak, not its parent's."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
from sharechain.bench.memory import peak_rss_kib
before = peak_rss_kib()
data = bytearray(64 << 20)
for i in range(0, len(data), 4096):
    data[i] = 1
print(before, peak_rss_kib())
"""


def test_a_child_reports_its_own_peak_not_its_parents() -> None:
    ballast = bytearray(256 << 20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1  # make the parent's 256 MiB resident
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True
    ).stdout
    before, after = (int(x) // 1024 for x in out.split())
    assert before < 128, before  # a fresh interpreter, whatever the parent holds
    assert after - before >= 60, (before, after)  # the 64 MiB it touched itself
    del ballast
