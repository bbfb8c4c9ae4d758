"""`node start`'s etcd upkeep options: in its help; bad values refused before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharechain.cli.main import app


@pytest.mark.parametrize(
    ("option", "value"),
    [("--compaction-interval", "-1"), ("--compaction-keep", "-1"), ("--defrag-interval", "-0.5")],
)
def test_a_negative_upkeep_setting_is_refused_naming_it(
    tmp_path: Path, option: str, value: str
) -> None:
    result = CliRunner().invoke(
        app,
        ["node", "start", "--org", "hospital-a", "--data-dir", str(tmp_path), option, value],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 2
    said = " ".join(result.output.replace("│", " ").split())
    assert option in said and "greater than or equal to 0" in said
    assert not any(tmp_path.iterdir())  # nothing started, nothing written


def test_the_upkeep_options_are_in_the_help() -> None:
    shown = CliRunner().invoke(app, ["node", "start", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    for option in ("--compaction-interval", "--compaction-keep", "--defrag-interval"):
        assert option in shown.output
