"""The commit-at-scale benchmark commits the same blocks on a 4 KiB and a 16 KiB store."""

from __future__ import annotations

from pathlib import Path

from sharechain.bench import commit_scale
from sharechain.bench.ledger import io_written
from sharechain.ledger.store import PAGE_SIZE


def test_small_run_reports_both_stores_side_by_side() -> None:
    figures = commit_scale.run(state_keys=3000, block_size=40, blocks=3)
    assert figures["scale_page_size"] == PAGE_SIZE == 4096
    assert figures["scale_transactions"] == 120
    for suffix in ("", "_16k"):
        assert figures[f"scale_commit_tx_per_s{suffix}"] > 0
        assert figures[f"scale_commit_cpu_us_per_tx{suffix}"] > 0
        assert figures[f"scale_write_kib_per_tx{suffix}"] > 0
    ratio = figures["scale_commit_tx_per_s"] / figures["scale_commit_tx_per_s_16k"]
    assert figures["scale_speedup"] == round(ratio, 2)


def test_io_written_counts_what_this_process_writes(tmp_path: Path) -> None:
    before = io_written()
    (tmp_path / "f").write_bytes(b"x" * 100_000)
    assert io_written() - before >= 100_000
