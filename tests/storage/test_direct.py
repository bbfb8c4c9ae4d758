"""Direct-I/O files: exact bytes back at every size around the alignment and chunk edges."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest

from sharechain.storage import direct
from sharechain.storage.direct import (
    ALIGNMENT,
    DIRECT_MIN_SIZE,
    DirectReader,
    DirectWriter,
    direct_io_supported,
)

CHUNK = direct._CHUNK
SIZES = [
    0,
    1,
    ALIGNMENT - 1,
    ALIGNMENT,
    DIRECT_MIN_SIZE - 1,
    DIRECT_MIN_SIZE,
    DIRECT_MIN_SIZE + 1,
    CHUNK * 3,
    CHUNK * 3 + ALIGNMENT + 45,
]


def _payload(size: int) -> bytes:
    block = os.urandom(1 << 16)
    return (block * (size // len(block) + 1))[:size]


def _write(path: Path, data: bytes, *, piece: int, expected: int | None = None) -> DirectWriter:
    writer = DirectWriter(path, expected_size=len(data) if expected is None else expected)
    with writer:
        view = memoryview(data)
        for start in range(0, len(data), piece):
            assert writer.write(view[start : start + piece]) == len(view[start : start + piece])
        assert writer.finish() == len(data)
        os.fsync(writer.fileno())
    return writer


def _read(path: Path, piece: int) -> tuple[bytes, bool]:
    out = bytearray()
    buf = bytearray(piece)
    with DirectReader(path) as reader:
        while got := reader.readinto(buf):
            out += buf[:got]
        assert reader.readinto(buf) == 0  # stays at the end
        return bytes(out), reader.direct


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_at_every_edge(tmp_path: Path, size: int) -> None:
    data = _payload(size)
    # Odd write and read sizes: the stream pipelines write 1 MiB + 16-byte segments.
    writer = _write(tmp_path / "f", data, piece=(1 << 20) + 16)
    assert (tmp_path / "f").stat().st_size == size
    assert (tmp_path / "f").read_bytes() == data
    back, read_direct = _read(tmp_path / "f", (1 << 20) + 17)
    assert back == data
    large = size >= DIRECT_MIN_SIZE and direct_io_supported()
    assert writer.direct is large
    assert read_direct is large


def test_small_expected_size_goes_through_the_page_cache(tmp_path: Path) -> None:
    data = _payload(DIRECT_MIN_SIZE + 5)
    writer = _write(tmp_path / "f", data, piece=1 << 20, expected=1000)
    assert not writer.direct
    assert (tmp_path / "f").read_bytes() == data


def test_falls_back_where_the_file_system_refuses_direct_io(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some file systems (older tmpfs, some network file systems) refuse O_DIRECT with
    # EINVAL at open; this one takes it, so the refusal is played at the open call.
    real_open = os.open

    def refusing_open(path: object, flags: int, mode: int = 0o777) -> int:
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(direct.os, "open", refusing_open)
    data = _payload(DIRECT_MIN_SIZE + ALIGNMENT + 3)
    writer = _write(tmp_path / "f", data, piece=1 << 20)
    assert not writer.direct
    back, read_direct = _read(tmp_path / "f", 1 << 20)
    assert back == data
    assert not read_direct


def test_writer_refuses_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        DirectWriter(tmp_path / "f", expected_size=DIRECT_MIN_SIZE)
    assert (tmp_path / "f").read_bytes() == b"keep me"


def test_reader_closed_early_stops_its_read_ahead(tmp_path: Path) -> None:
    data = _payload(CHUNK * 6)
    _write(tmp_path / "f", data, piece=1 << 20)
    reader = DirectReader(tmp_path / "f")
    buf = bytearray(1000)
    assert reader.readinto(buf) == 1000
    assert bytes(buf) == data[:1000]
    reader.close()
    assert reader.closed
    if reader._thread is not None:
        assert not reader._thread.is_alive()


def _smaps_flags(address: int) -> list[str]:
    """The VmFlags of the mapping of this process that holds `address`."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start <= address < end
        elif inside and line.startswith("VmFlags:"):
            return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's /proc")
def test_io_buffers_are_huge_page_aligned_and_advised() -> None:
    buf = direct._IOBuffer(CHUNK)
    try:
        address = ctypes.addressof(ctypes.c_char.from_buffer(buf.view))
        assert len(buf.view) == CHUNK
        assert address % direct._HUGE_PAGE == 0
        flags = _smaps_flags(address)
        if Path("/sys/kernel/mm/transparent_hugepage").exists():
            assert "hg" in flags  # MADV_HUGEPAGE took on the whole buffer
        assert "sh" not in flags  # private: huge pages do not back shared anonymous memory
        buf.view[:] = b"\x5a" * CHUNK
        assert buf.view[CHUNK - 1] == 0x5A
    finally:
        buf.close()


def test_io_buffer_closes_while_a_slice_is_alive() -> None:
    buf = direct._IOBuffer(CHUNK)
    piece = buf.view[:10]
    buf.close()  # no BufferError: the memory is freed with the last slice instead
    piece[0] = 1
    assert piece[0] == 1
    assert not buf._map.closed
    del piece
    buf._map.close()  # nothing holds it any more
    assert buf._map.closed
