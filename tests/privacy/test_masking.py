"""Masking whole files: k and l agree with pycanon, every bad input is refused cleanly."""

from __future__ import annotations

import datetime as dt
import random
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycanon import anonymity as pycanon

from sharechain.privacy import tables
from sharechain.privacy.masking import apply, check
from sharechain.privacy.profiles import Profile, ProfileError, parse_profile
from sharechain.privacy.tables import TableError

KEY = bytes(range(32))
PROFILE = """\
k: 4
l: 2
quasi_identifiers: [birth_date, sex, postcode]
sensitive: [diagnosis]
columns:
  id: tokenize
  name: drop
  birth_date: {rule: generalise, date: year}
  sex: keep
  postcode: {rule: generalise, truncate: 3}
  city: {rule: generalise, hierarchy: {Leeds: North, York: North}, other: "*"}
  diagnosis: keep
  salary: {rule: noise, mechanism: laplace, epsilon: 0.5, sensitivity: 1000}
  visits: {rule: noise, mechanism: gaussian, epsilon: 1}
  age: {rule: generalise, width: 10}
"""
QIS = ["birth_date", "sex", "postcode"]


def profile_with(**columns: object) -> Profile:
    """PROFILE with some columns' rules replaced."""
    doc = yaml.safe_load(PROFILE)
    doc["columns"].update(columns)
    return parse_profile(yaml.safe_dump(doc))


def patients(rows: int, seed: int = 1) -> pa.Table:
    r = random.Random(seed)
    return pa.table(
        {
            "id": [f"P{i:06d}" for i in range(rows)],
            "name": [r.choice(["Ada", "Ben", "Cleo"]) for _ in range(rows)],
            "birth_date": [
                dt.date(r.randint(1940, 1990), r.randint(1, 12), r.randint(1, 28))
                for _ in range(rows)
            ],
            "sex": [r.choice("FM") for _ in range(rows)],
            "postcode": [
                f"{r.choice(['LS2', 'LS6', 'YO1', 'M1 '])} {r.randint(1, 9)}AB" for _ in range(rows)
            ],
            "city": [r.choice(["Leeds", "York", "Bath"]) for _ in range(rows)],
            "diagnosis": [r.choice(["flu", "asthma", "diabetes"]) for _ in range(rows)],
            "salary": [r.randint(20000, 90000) for _ in range(rows)],
            "visits": [r.randint(0, 30) for _ in range(rows)],
            "age": [r.randint(18, 90) for _ in range(rows)],
        }
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "patients.csv"
    pacsv.write_csv(patients(3000), path)
    return path


def oracle(path: Path, sensitive: list[str]) -> tuple[int, int]:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return (
        int(pycanon.k_anonymity(frame, QIS)),
        int(pycanon.l_diversity(frame, QIS, sensitive)),
    )


def test_apply_meets_targets_and_pycanon_agrees(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "release.csv"
    report = apply(parse_profile(PROFILE), source, out, token_key=KEY, rng=np.random.default_rng(1))
    assert report.targets_met and report.k >= 4 and report.l is not None and report.l >= 2
    assert (report.k, report.l) == oracle(out, ["diagnosis"])
    released = pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    assert released.num_rows == report.rows_out == 3000 - report.suppressed
    assert report.suppressed > 0 and report.k_before < 4
    assert "name" not in released.column_names
    assert set(released["city"].to_pylist()) <= {"North", "*"}
    assert all(len(t) == 32 for t in released["id"].to_pylist())
    assert report.columns_dropped == ("name",)
    assert set(report.columns_changed) == set(released.column_names) - {"sex", "diagnosis"} | {
        "name"
    }
    assert dict(report.epsilon) == {"salary": 0.5, "visits": 1}
    assert report.epsilon_total == 1.5
    assert 0 < report.smallest_group_share <= 1


def test_check_reports_what_apply_achieves_and_writes_nothing(source: Path, tmp_path: Path) -> None:
    profile = parse_profile(PROFILE)
    before = set(tmp_path.iterdir())
    checked = check(profile, source)
    assert set(tmp_path.iterdir()) == before
    applied = apply(profile, source, tmp_path / "out.csv", token_key=KEY)
    assert checked == applied


def test_parquet_in_and_out_agree_with_csv(source: Path, tmp_path: Path) -> None:
    parquet = tmp_path / "patients.parquet"
    pq.write_table(patients(3000), parquet)
    profile = parse_profile(PROFILE)
    via_csv = apply(profile, source, tmp_path / "a.csv", token_key=KEY)
    via_parquet = apply(profile, parquet, tmp_path / "b.parquet", token_key=KEY)
    assert via_csv == via_parquet
    a = pacsv.read_csv(tmp_path / "a.csv")
    b = pq.read_table(tmp_path / "b.parquet")
    assert a["id"].to_pylist() == b["id"].to_pylist()
    assert a["postcode"].to_pylist() == b["postcode"].to_pylist()


def test_many_small_batches_give_the_same_release(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without noise, the release is a function of the source alone.
    profile = profile_with(salary="keep", visits="keep")
    whole = apply(profile, source, tmp_path / "whole.csv", token_key=KEY)
    monkeypatch.setattr(tables, "_BLOCK", 4096)
    seen: list[tuple[int, int]] = []
    pieces = apply(
        profile,
        source,
        tmp_path / "pieces.csv",
        token_key=KEY,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert whole == pieces
    assert (tmp_path / "whole.csv").read_bytes() == (tmp_path / "pieces.csv").read_bytes()
    assert len(seen) > 20
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1][0] == seen[-1][1] == 2 * source.stat().st_size


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    k=st.integers(1, 12),
    rows=st.integers(1, 300),
    seed=st.integers(0, 10_000),
    width=st.sampled_from([1, 5, 20]),
)
def test_every_group_has_at_least_k_rows(
    tmp_path: Path, k: int, rows: int, seed: int, width: int
) -> None:
    r = random.Random(seed)
    here = Path(tempfile.mkdtemp(dir=tmp_path))  # one directory per example
    src = here / "in.csv"
    pacsv.write_csv(
        pa.table(
            {
                "age": [r.randint(0, 60) for _ in range(rows)],
                "zip": [r.choice(["A1", "A2", "B1", "B2", "C"]) for _ in range(rows)],
                "dx": [r.choice(["x", "y", "z"]) for _ in range(rows)],
            }
        ),
        src,
    )
    profile = parse_profile(
        f"k: {k}\nquasi_identifiers: [age, zip]\nsensitive: [dx]\n"
        f"columns: {{age: {{rule: generalise, width: {width}}}, zip: keep, dx: keep}}"
    )
    out = here / "out.csv"
    try:
        report = apply(profile, src, out)
    except ProfileError as exc:
        assert "cannot be met" in str(exc)
        assert not out.exists()
        return
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    sizes = frame.groupby(["age", "zip"]).size()
    assert sizes.min() >= k == report.k or sizes.min() == report.k >= k
    assert len(frame) == report.rows_out
    assert int(pycanon.k_anonymity(frame, ["age", "zip"])) == report.k


def test_without_suppression_targets_can_be_missed(source: Path, tmp_path: Path) -> None:
    profile = parse_profile(PROFILE.replace("k: 4", "k: 4\nsuppress: false"))
    report = check(profile, source)
    assert not report.targets_met and report.suppressed == 0 and report.k == report.k_before < 4
    with pytest.raises(ProfileError, match="misses the profile's targets"):
        apply(profile, source, tmp_path / "out.csv", token_key=KEY)
    assert list(tmp_path.glob("out*")) == [] and list(tmp_path.glob(".out*")) == []


def assert_nothing_written(tmp_path: Path) -> None:
    assert [p.name for p in tmp_path.iterdir() if "out" in p.name] == []


def test_unknown_column(source: Path, tmp_path: Path) -> None:
    profile = profile_with(weight="keep")
    with pytest.raises(ProfileError, match=r"'weight', which patients\.csv does") as caught:
        apply(profile, source, tmp_path / "out.csv", token_key=KEY)
    assert caught.value.column == "weight"
    assert_nothing_written(tmp_path)


def test_column_type_that_does_not_fit(source: Path, tmp_path: Path) -> None:
    profile = profile_with(city={"rule": "noise", "epsilon": 1})
    with pytest.raises(
        ProfileError, match="column 'city' holds string; rule noise needs an integer"
    ) as caught:
        apply(profile, source, tmp_path / "out.csv", token_key=KEY)
    assert caught.value.column == "city"
    assert_nothing_written(tmp_path)


def test_k_that_cannot_be_met(source: Path, tmp_path: Path) -> None:
    profile = parse_profile(PROFILE.replace("k: 4", "k: 5000"))
    with pytest.raises(ProfileError, match="every one of the 3000 rows would be suppressed"):
        apply(profile, source, tmp_path / "out.csv", token_key=KEY)
    with pytest.raises(ProfileError, match="k = 5000, l = 2 cannot be met"):
        check(profile, source)
    assert_nothing_written(tmp_path)


def test_malformed_csv_line_is_named(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    lines = ["id,name,birth_date,sex,postcode,city,diagnosis,salary,visits,age"]
    lines += [f"P{i},Ada,1980-01-0{1 + i % 9},F,LS2 1AB,Leeds,flu,30000,3,40" for i in range(50)]
    lines.insert(31, "P99,Ada,1980-01-01,F,LS2 1AB,Leeds,flu,30000,3,40,extra")
    src.write_text("\n".join(lines) + "\n")
    with pytest.raises(TableError, match="line 32: 11 fields where the header has 10") as caught:
        apply(
            parse_profile(PROFILE.replace("k: 4", "k: 1").replace("l: 2\n", "")),
            src,
            tmp_path / "out.csv",
            token_key=KEY,
        )
    assert caught.value.line == 32
    assert_nothing_written(tmp_path)


def test_value_of_the_wrong_type_later_in_the_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables, "_BLOCK", 1024)
    src = tmp_path / "late.csv"
    rows = [f"{i % 3},{30000 + i}" for i in range(400)]
    rows[350] = "1,abc"
    src.write_text("g,salary\n" + "\n".join(rows) + "\n")
    profile = parse_profile(
        "k: 1\nquasi_identifiers: [g]\ncolumns: {g: keep, salary: {rule: noise, epsilon: 1}}"
    )
    with pytest.raises(TableError, match="line 352, column 'salary': 'abc' is not int64") as caught:
        apply(profile, src, tmp_path / "out.csv")
    assert (caught.value.line, caught.value.column) == (352, "salary")
    assert_nothing_written(tmp_path)


def test_duplicate_column_names(tmp_path: Path) -> None:
    src = tmp_path / "dup.csv"
    src.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(TableError, match="'a' appears twice") as caught:
        check(parse_profile("k: 1\ncolumns: {b: keep}"), src)
    assert caught.value.column == "a"
    parquet = tmp_path / "dup.parquet"
    pq.write_table(pa.table([pa.array([1]), pa.array([2])], names=["x", "x"]), parquet)
    with pytest.raises(TableError, match="'x' appears twice"):
        apply(parse_profile("k: 1\ncolumns: {x: keep}"), parquet, tmp_path / "out.parquet")
    assert_nothing_written(tmp_path)


def test_epsilon_not_positive() -> None:
    with pytest.raises(ProfileError, match="column 'salary': epsilon must be > 0"):
        parse_profile(PROFILE.replace("epsilon: 0.5", "epsilon: 0"))


def test_missing_token_key_empty_and_missing_files(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="tokenizes id: give a tokenisation key"):
        apply(parse_profile(PROFILE), source, tmp_path / "out.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TableError, match="is empty"):
        check(parse_profile("k: 1\ncolumns: {a: keep}"), empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b\n")
    with pytest.raises(TableError, match="no rows"):
        check(parse_profile("k: 1\ncolumns: {a: keep}"), header_only)
    with pytest.raises(TableError, match="does not exist"):
        check(parse_profile("k: 1\ncolumns: {a: keep}"), tmp_path / "nope.csv")
    with pytest.raises(TableError, match=r"directory .* does not exist"):
        apply(parse_profile(PROFILE), source, tmp_path / "no" / "out.csv", token_key=KEY)
    with pytest.raises(ProfileError, match="drops every column"):
        apply(parse_profile("k: 1\ncolumns: {a: drop}"), _one_row(tmp_path), tmp_path / "out.csv")
    assert_nothing_written(tmp_path)


def _one_row(tmp_path: Path) -> Path:
    path = tmp_path / "one.csv"
    path.write_text("a\n1\n")
    return path


def test_an_error_midway_leaves_no_partial_output(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables, "_BLOCK", 8192)
    target = tmp_path / "out.csv"
    target.write_text("the previous release\n")
    calls = 0

    def fail_late(done: int, total: int) -> None:
        nonlocal calls
        calls += 1
        if done > total * 3 // 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        apply(parse_profile(PROFILE), source, target, token_key=KEY, progress=fail_late)
    assert calls > 2
    assert target.read_text() == "the previous release\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "patients.csv"]
