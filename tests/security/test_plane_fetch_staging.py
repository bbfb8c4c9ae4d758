"""Attack 13: plaintext left on disk by an interrupted fetch, or handed out before its receipt.

A grantee's fetch opens the payload, checks it against the chain, commits the
read receipt and only then names the plaintext at its destination
(`sharing.fetch`, `sharing.staging`). Killed at any point, or failing at any
stage, it leaves no plaintext anywhere on disk; a refused receipt too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sharing"))

from plane_sides import ORGS

from sharechain.contracts.access import APPROVE, REQUEST
from sharechain.contracts.grants import READ
from sharechain.errors import TransactionRejectedError
from sharechain.ledger.transactions import SignedTransaction
from sharechain.ordering.solo import Receipt
from sharechain.sharing import fetch
from sharechain.sharing.local import local_ports
from sharechain.sharing.plane import Plane
from sharechain.sharing.ports import Ports
from sharechain.sharing.records import Listing, derive_id
from sharechain.storage.datadir import init_consortium

OWNER, GRANTEE = "hospital-a", "insurer"
SIZE = 6 << 20  # several segments, and more than a write buffer holds


@dataclasses.dataclass
class Published:
    path: Path
    plaintext: bytes
    grant: str


def _publish(base: Path, size: int = SIZE) -> Published:
    path = base / "consortium"
    init_consortium(path, ORGS)
    data = os.urandom(size)
    src = base / "records.bin"
    src.write_bytes(data)
    with Plane.local(path) as plane:
        ds = plane.publish(OWNER, src, Listing(title="records")).dataset
        body = {"dataset": ds, "purpose": "research", "duration": 86_400_000}
        rid = derive_id("request", plane.submit(GRANTEE, REQUEST, body).tx_id)
        plane.submit(OWNER, APPROVE, {"request": rid})
        gid = derive_id("grant", plane.submit("regulator", APPROVE, {"request": rid}).tx_id)
    src.unlink()
    return Published(path, data, gid)


def _plaintext_on_disk(root: Path, plaintext: bytes) -> list[Path]:
    """Files under `root` holding any 64 KiB of `plaintext`."""
    probe = plaintext[1 << 20 : (1 << 20) + (64 << 10)]
    found = []
    for p in root.rglob("*"):
        if p.is_file() and probe in p.read_bytes():
            found.append(p)
    return found


class _Watching:
    """The chain port, noting what the destination held when the read receipt was committed."""

    def __init__(self, inner: Any, out: Path, refuse: bool) -> None:
        self.inner = inner
        self.out = out
        self.refuse = refuse
        self.seen_at_commit: list[bool] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit(self, stxs: Sequence[SignedTransaction]) -> list[Receipt]:
        if stxs[0].tx.type == READ:
            self.seen_at_commit.append(self.out.exists())
            if self.refuse:
                raise TransactionRejectedError("denied", "refused by the test", stxs[0].id)
        result: list[Receipt] = self.inner.commit(stxs)
        return result


@contextlib.contextmanager
def _ports(pub: Published) -> Iterator[Ports]:
    with Plane.local(pub.path) as plane:
        assert plane.embedded is not None
        yield local_ports(plane.embedded)


def test_plaintext_is_named_only_after_its_read_receipt_committed(tmp_path: Path) -> None:
    pub = _publish(tmp_path)
    out = tmp_path / "out" / "records.bin"
    out.parent.mkdir()
    with _ports(pub) as ports:
        chain = _Watching(ports.chain, out, refuse=False)
        got = fetch.fetch(dataclasses.replace(ports, chain=chain), GRANTEE, pub.grant, out)
    assert chain.seen_at_commit == [False]
    assert out.read_bytes() == pub.plaintext
    assert got.read_tx


def test_a_refused_read_receipt_leaves_no_plaintext(tmp_path: Path) -> None:
    pub = _publish(tmp_path)
    out = tmp_path / "out" / "records.bin"
    out.parent.mkdir()
    with _ports(pub) as ports:
        chain = _Watching(ports.chain, out, refuse=True)
        with pytest.raises(TransactionRejectedError):
            fetch.fetch(dataclasses.replace(ports, chain=chain), GRANTEE, pub.grant, out)
    assert list(out.parent.iterdir()) == []
    assert _plaintext_on_disk(tmp_path, pub.plaintext) == []


class Injected(Exception):
    """The failure a test injects."""


def _fail(*args: Any, **kwargs: Any) -> Any:
    raise Injected


class _FailingSource:
    """A sealed payload whose reading fails half way through."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.read_so_far = 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.inner.read(n)
        self.read_so_far += len(data)
        if self.read_so_far > SIZE // 2:
            raise Injected
        return data

    def readinto(self, b: Any) -> int:
        n: int = self.inner.readinto(b)
        self.read_so_far += n
        if self.read_so_far > SIZE // 2:
            raise Injected
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


STAGES = ("release", "download", "decrypt", "check", "sign", "commit", "install")


@pytest.mark.parametrize("stage", STAGES)
def test_a_failure_at_any_stage_leaves_no_plaintext(
    tmp_path: Path, stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub = _publish(tmp_path)
    out = tmp_path / "out" / "records.bin"
    out.parent.mkdir()
    with _ports(pub) as ports:
        if stage == "release":
            monkeypatch.setattr(ports.custodian, "release", _fail)
        elif stage == "download":
            monkeypatch.setattr(ports.blobs, "source", _fail)
        elif stage == "decrypt":
            monkeypatch.setattr(fetch.sealing, "counting", lambda s, p: _FailingSource(s))
        elif stage == "check":
            monkeypatch.setattr(fetch, "check_digests", _fail)
        elif stage == "sign":
            monkeypatch.setattr(ports.chain, "sign", _fail)
        elif stage == "commit":
            monkeypatch.setattr(ports.chain, "commit", _fail)
        else:
            monkeypatch.setattr(fetch.Staged, "install", _fail)
        with pytest.raises(Injected):
            fetch.fetch(ports, GRANTEE, pub.grant, out)
    assert list(out.parent.iterdir()) == []
    assert _plaintext_on_disk(tmp_path, pub.plaintext) == []


_CHILD = """
import os, sys, time
from pathlib import Path
from sharechain.sharing.plane import Plane
path, grant, out, marker = sys.argv[1:]
seen = 0
def progress(n):
    global seen
    seen += n
    if seen > {half}:
        Path(marker).write_text("half way")
        time.sleep(60)
with Plane.local(Path(path)) as plane:
    plane.fetch("insurer", grant, Path(out), progress=progress)
"""


def test_a_fetch_killed_half_way_leaves_no_plaintext(tmp_path: Path) -> None:
    pub = _publish(tmp_path)
    out = tmp_path / "out" / "records.bin"
    out.parent.mkdir()
    marker = tmp_path / "marker"
    code = _CHILD.replace("{half}", str(SIZE // 2))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(pub.path), pub.grant, str(out), str(marker)], env=env
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the fetch ended before it was half way"
            assert time.monotonic() < deadline, "the fetch did not get half way in time"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert list(out.parent.iterdir()) == []
    assert _plaintext_on_disk(tmp_path, pub.plaintext) == []
