"""The masking pipeline's housekeeping: the spill goes, the switch interval comes back,
noise is drawn for the released rows only, and the release matches a single-threaded one."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from sharechain.privacy import tables
from sharechain.privacy.masking import apply
from sharechain.privacy.profiles import Noise, ProfileError, parse_profile
from sharechain.privacy.rules import NoiseStream
from sharechain.privacy.tables import Spill

PROFILE = parse_profile(
    """\
k: 3
quasi_identifiers: [age]
columns:
  id: tokenize
  age: {rule: generalise, width: 10}
  salary: {rule: noise, mechanism: laplace, epsilon: 1, sensitivity: 100}
"""
)
KEY = bytes(32)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    # Ages 20-69 in groups of ten rows each, plus two lone 95-year-olds to suppress.
    ages = [20 + i % 50 for i in range(500)] + [95, 96]
    table = pa.table(
        {
            "id": [f"P{i}" for i in range(len(ages))],
            "age": ages,
            "salary": [30_000 + 7 * i for i in range(len(ages))],
        }
    )
    path = tmp_path / "in.csv"
    pacsv.write_csv(table, path)
    return path


def test_the_spill_is_gone_and_the_switch_interval_back(source: Path, tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    report = apply(PROFILE, source, tmp_path / "out.csv", token_key=KEY)
    assert report.suppressed == 2 and report.rows_out == 500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]
    assert sys.getswitchinterval() == before
    strict = parse_profile("k: 1000\nquasi_identifiers: [age]\ncolumns: {age: keep}\n")
    with pytest.raises(ProfileError, match="cannot be met"):
        apply(strict, source, tmp_path / "never.csv", token_key=KEY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]
    assert sys.getswitchinterval() == before


def test_noise_is_drawn_for_the_released_rows_in_order(source: Path, tmp_path: Path) -> None:
    apply(PROFILE, source, tmp_path / "out.csv", token_key=KEY, rng=np.random.default_rng(9))
    released = pacsv.read_csv(tmp_path / "out.csv")
    rule = PROFILE.rule("salary")
    assert isinstance(rule, Noise)
    # The 500 surviving rows take the first 500 draws; the two suppressed take none.
    expected = NoiseStream("salary", rule, np.random.default_rng(9)).take(500)
    raw = np.array([30_000 + 7 * i for i in range(500)])
    assert (released["salary"].to_numpy() - raw == expected).all()


def test_small_blocks_and_one_encoder_give_the_same_bytes(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply(PROFILE, source, tmp_path / "a.csv", token_key=KEY, rng=np.random.default_rng(1))
    monkeypatch.setattr(tables, "_BLOCK", 512)
    monkeypatch.setattr(tables, "_ENCODERS", 1)
    apply(PROFILE, source, tmp_path / "b.csv", token_key=KEY, rng=np.random.default_rng(1))
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_text().count("\n") == 501  # header and 500 rows


def test_a_spill_reads_back_what_was_parked_and_removes_itself(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    with Spill(target) as spill:
        for i in range(3):
            spill.write(pa.record_batch({"a": [i, i + 1]}))
        assert spill.path.exists()
        first = [b.data["a"].to_pylist() for b in spill.batches()]
        again = [(b.done, b.total) for b in spill.batches()]
    assert first == [[0, 1], [1, 2], [2, 3]] and again == [(2, 6), (4, 6), (6, 6)]
    assert not spill.path.exists() and list(tmp_path.iterdir()) == []
    with Spill(target) as empty:
        assert list(empty.batches()) == []
