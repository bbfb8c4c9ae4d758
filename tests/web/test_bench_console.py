"""The console benchmark runs on a small chain and reports every page."""

from __future__ import annotations

from sharechain.bench.console import run


def test_bench_reports_every_page_on_a_small_chain() -> None:
    out = run(blocks=60, datasets=20, repeat=1)
    assert 60 <= out["console_chain_blocks"] < 64 and out["console_chain_datasets"] == 20
    pages = {k for k in out if k.startswith("console_page_") and not k.endswith("max_ms")}
    assert len(pages) == 13  # twelve pages and the slowest
    assert all(out[p] > 0 for p in pages)
