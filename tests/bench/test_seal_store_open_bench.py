"""The store-opening benchmark builds a grafted store that opens, and reports its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharechain.bench import store_open
from sharechain.errors import ChainError
from sharechain.ledger.store import Store
from sharechain.sharing.embedded import Embedded


def test_small_run_reports_every_figure() -> None:
    figures = store_open.run(state_rows=2000, index_rows=3000, transactions=5000, repeats=1)
    assert figures["open_1m_goal_s"] == 2.0
    assert figures["open_1m_rows"] == {"state": 2000, "state_idx": 3000, "txs": 5000}
    assert figures["open_1m_s"] > 0 and figures["open_1m_python_s"] > 0
    assert figures["open_1m_cpu_s"] > 0 and figures["open_1m_speedup"] > 0


def test_the_grafted_store_is_sealed_over_its_rows_and_an_edit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c"
    store_open.build(path, state_rows=500, index_rows=500, transactions=700)
    with Embedded(path) as emb:  # the open checks the seal over every grafted row
        assert emb.store.head() is not None
    store = Store(path / "ledger.db")
    with store._lock:
        store._db.execute("UPDATE state SET value=X'00' WHERE id=(SELECT max(id) FROM state)")
    store.close()
    with pytest.raises(ChainError, match="world state differs"):
        Embedded(path)
