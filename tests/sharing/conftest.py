"""The `side` fixture: every data-plane test runs embedded and over four nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from plane_sides import LocalSide, RemoteSide, Side


@pytest.fixture(scope="session")
def remote_side(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteSide]:
    side = RemoteSide(tmp_path_factory.mktemp("remote-plane"))
    try:
        yield side
    finally:
        side.close()


@pytest.fixture(params=["local", "remote"])
def side(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Side]:
    if request.param == "remote":
        yield request.getfixturevalue("remote_side")
        return
    local = LocalSide(tmp_path / "consortium")
    try:
        yield local
    finally:
        local.close()
