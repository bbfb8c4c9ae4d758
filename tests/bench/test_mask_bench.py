"""The masking benchmark runs end to end on a small table and reports its figures."""

from __future__ import annotations

from sharechain.bench import mask


def test_small_run_reports_every_figure() -> None:
    figures = mask.run(rows=8000)
    assert figures["mask_rows"] == 8000
    assert figures["mask_k"] >= 5 and figures["mask_l"] >= 2
    assert figures["mask_rows_out"] + figures["mask_suppressed"] == 8000
    assert figures["mask_rows_per_s"] > 0 and figures["mask_ratio_to_pyarrow"] > 0
    assert figures["mask_peak_rss_mib"] > 0 and figures["mask_peak_rss_mib_rows_2k"] > 0


def test_the_synthetic_table_is_fixed_by_its_seed() -> None:
    a, b = mask.make_table(500), mask.make_table(500)
    assert a.equals(b)
    assert a.num_columns == 10 and a.num_rows == 500
    assert not a.equals(mask.make_table(500, seed=1))
