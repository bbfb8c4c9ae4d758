"""Several blocks in one SQLite transaction (`Store.group`): atomic at block boundaries."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from test_store import _commit

from sharechain.errors import ChainError
from sharechain.ledger.store import Store


def test_a_group_commits_its_blocks_together(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db")
    _commit(store, 0)
    with store.group():
        _commit(store, 1)
        _commit(store, 2, writes={"k/1": None, "k/2": b"v2"})
        # The group's own thread reads its blocks before they are durable...
        assert store.head().height == 2  # type: ignore[union-attr]
        assert store.get("k/1") is None
    assert store.head().height == 2  # type: ignore[union-attr]
    assert store.get("k/2") == b"v2" and store.get("k/1") is None
    reopened = Store(tmp_path / "l.db")
    assert reopened.head().height == 2  # type: ignore[union-attr]


def test_other_threads_read_the_last_commit_while_a_group_is_open(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db")
    _commit(store, 0)
    seen: list[object] = []

    def read() -> None:
        head = store.head()
        seen.append((head.height if head else None, store.get("k/1"), store.scan("k/")))

    with store.group():
        _commit(store, 1)
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(5)  # does not wait for the group
        assert not reader.is_alive()
        _commit(store, 2)
    read()
    assert seen == [
        (0, None, [("k/0", b"v0")]),
        (2, b"v1", [("k/0", b"v0"), ("k/1", b"v1"), ("k/2", b"v2")]),
    ]


def test_a_write_from_another_thread_waits_for_the_group(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db")
    _commit(store, 0)
    writer = threading.Thread(target=lambda: store.set_meta("m", b"1"))
    with store.group():
        _commit(store, 1)
        writer.start()
        writer.join(0.2)
        assert writer.is_alive()
    writer.join(5)
    assert store.meta("m") == b"1" and store.head().height == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(("exit_inside", "height"), [(True, 0), (False, 2)])
def test_a_crash_leaves_the_store_at_a_group_boundary(
    tmp_path: Path, exit_inside: bool, height: int
) -> None:
    # A process killed inside a group (after two blocks were written, before
    # the COMMIT) leaves none of them; one killed after it keeps both.
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_store import _commit
        from sharechain.ledger.store import Store
        store = Store({str(tmp_path / "l.db")!r})
        _commit(store, 0)
        with store.group():
            _commit(store, 1)
            _commit(store, 2)
            if {exit_inside!r}:
                os._exit(0)
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    store = Store(tmp_path / "l.db")
    assert store.head().height == height  # type: ignore[union-attr]
    assert [h for h, _ in store.iter_blocks()] == list(range(height + 1))
    assert (store.get("k/2") is not None) == (height == 2)
    assert store.integrity_check() == "ok"


def test_a_refused_height_keeps_the_blocks_before_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db")
    _commit(store, 0)
    with store.group():
        _commit(store, 1)
        with pytest.raises(ChainError):
            _commit(store, 3, writes={"other": b"x"})
    assert store.head().height == 1  # type: ignore[union-attr]
    assert store.get("other") is None


def test_a_block_failing_half_written_rolls_the_group_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db")
    _commit(store, 0)
    with pytest.raises(sqlite3.Error), store.group():
        _commit(store, 1)
        # Fails after its block row and first state row went in (SQLite refuses a
        # value past the connection's length limit); caught here, the group still
        # refuses to commit.
        store._db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100)
        with pytest.raises(sqlite3.Error):
            _commit(store, 2, writes={"a-first": b"1", "z-late": b"x" * 500})
        store._db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000_000)
    assert store.head().height == 0  # type: ignore[union-attr]
    assert store.block_bytes(1) is None and store.get("a-first") is None
    _commit(store, 1)  # and the store is usable again, outside a group
    assert store.head().height == 1  # type: ignore[union-attr]


def test_an_exception_in_a_group_keeps_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db")
    _commit(store, 0)
    with pytest.raises(KeyError), store.group():
        _commit(store, 1)
        raise KeyError("boom")
    assert store.head().height == 0  # type: ignore[union-attr]


def test_groups_do_not_nest(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db")
    with store.group(), pytest.raises(RuntimeError, match="nest"), store.group():
        pass
    _commit(store, 0)
    assert store.head().height == 0  # type: ignore[union-attr]
