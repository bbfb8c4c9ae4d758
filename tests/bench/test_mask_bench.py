"""The masking benchmark runs end to end on a small table and reports its figures."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sharechain.bench import mask


def test_small_run_reports_every_figure() -> None:
    figures = mask.run(rows=8000, big=2 << 20, rounds=2)
    assert figures["mask_rows"] == 8000
    assert figures["mask_k"] >= 5 and figures["mask_l"] >= 2
    assert figures["mask_rows_out"] + figures["mask_suppressed"] == 8000
    assert figures["mask_rows_per_s"] > 0 and figures["mask_ratio_to_pyarrow"] > 0
    low, mid, high = (figures[f"mask_ratio_rounds_{x}"] for x in ("min", "median", "max"))
    assert 0 < low <= mid <= high and figures["mask_tokens_native"] in (True, False)
    assert figures["mask_peak_rss_mib"] > 0 and figures["mask_1gib_peak_rss_mib"] > 0
    assert figures["mask_1gib_input_mib"] >= 2 and figures["mask_1gib_rows"] % 8000 == 0
    assert figures["mask_1gib_rss_bound_mib"] == 500


def test_the_big_file_is_big_enough_and_its_ids_distinct(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    rows = mask.write_big_csv(path, 1 << 20, rows=3000)
    assert path.stat().st_size >= 1 << 20
    ids = pacsv.read_csv(path)["patient_id"]
    assert len(ids) == rows and pc.count_distinct(ids).as_py() == rows


def test_the_synthetic_table_is_fixed_by_its_seed() -> None:
    a, b = mask.make_table(500), mask.make_table(500)
    assert a.equals(b)
    assert a.num_columns == 10 and a.num_rows == 500
    assert not a.equals(mask.make_table(500, seed=1))
