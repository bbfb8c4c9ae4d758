"""docs/privacy.md: the worked example's output is what masking produces today."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sharechain.privacy.masking import apply
from sharechain.privacy.profiles import parse_profile
from sharechain.privacy.tokens import derive_token_key

DOC = Path(__file__).parents[2] / "docs" / "privacy.md"


def block(name: str) -> str:
    """The fenced block right after `<!-- worked-example:NAME -->`."""
    found = re.search(
        rf"<!-- worked-example:{name} -->\n```[a-z]*\n(.*?)```", DOC.read_text(), re.DOTALL
    )
    assert found is not None, f"no worked-example:{name} block in {DOC}"
    return found[1]


def test_worked_example_regenerates(tmp_path: Path) -> None:
    source = tmp_path / "input.csv"
    source.write_text(block("input"))
    out = tmp_path / "release.csv"
    key = derive_token_key(bytes(32), "example", "insurer", 1)
    report = apply(
        parse_profile(block("profile")),
        source,
        out,
        token_key=key.key,
        rng=np.random.default_rng(2026),
    )
    assert out.read_text() == block("output")
    summary = (
        f"rows_in {report.rows_in}, rows_out {report.rows_out}, suppressed {report.suppressed}, "
        f"k_before {report.k_before}, k {report.k}, l {report.l}, groups {report.groups}, "
        f"epsilon_total {report.epsilon_total}\n"
    )
    assert summary == block("report")
