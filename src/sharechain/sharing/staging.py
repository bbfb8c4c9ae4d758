"""A plaintext being fetched: a file without a name until its read receipt commits.

A fetch opens a sealed payload into plaintext, checks it against the chain,
has its read receipt committed, and only then hands the plaintext out. Until
that last step no plaintext may be found on disk, even if the process is
killed (no `finally` runs then), so the plaintext is written into a file
that has no name at all: `O_TMPFILE` on Linux, an inode the kernel frees
when its descriptor closes, the process's death included. Installing gives
it a name in the destination's directory (`linkat` through `/proc/self/fd`)
and renames that over the destination.

Where the file system cannot make unnamed files, a hidden, private
(`0600`) temporary file beside the destination is used instead and removed
on every way out but a kill; `unnamed` says which one a fetch got.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = ["Staged"]

_BUFFER = 1 << 20
"""Bytes buffered before each write to the staged file."""
_NO_TMPFILE = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT)
"""What `open(O_TMPFILE)` answers where unnamed files are not supported."""


def _link_name(out: Path) -> Path:
    return out.with_name(f".{out.name}.{os.urandom(8).hex()}.part")


class Staged:
    """The plaintext of one fetch, nameless until `install` (a context manager).

    Leaving the block without `install` discards it; nothing then remains on disk.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        """The destination."""
        self.unnamed = False
        """True when the staged file has no name (the plaintext dies with the process)."""
        self._tmp: Path | None = None
        self._file: BinaryIO | None = None

    def __enter__(self) -> Staged:
        directory = self.out.parent
        if not directory.is_dir():
            raise FileNotFoundError(
                errno.ENOENT, f"the directory {directory} of the output does not exist"
            )
        flag = getattr(os, "O_TMPFILE", 0)
        fd = -1
        if flag:
            try:
                fd = os.open(directory, flag | os.O_WRONLY, 0o600)
                self.unnamed = True
            except OSError as exc:
                if exc.errno not in _NO_TMPFILE:
                    raise
        if fd < 0:
            self._tmp = _link_name(self.out)
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb", buffering=_BUFFER)
        return self

    @property
    def file(self) -> BinaryIO:
        """Where the plaintext is written."""
        if self._file is None:
            raise ValueError("the staged file is not open")
        return self._file

    def sync(self) -> None:
        """Make the written plaintext durable (before the receipt says it was obtained)."""
        self.file.flush()
        os.fsync(self.file.fileno())

    def install(self) -> None:
        """Give the plaintext its name at the destination (replacing what was there)."""
        self.sync()
        if self.unnamed:
            self._tmp = _link_name(self.out)
            # linkat(AT_SYMLINK_FOLLOW) resolves the magic link to the unnamed inode; CPython
            # calls linkat (not link) only when a directory descriptor is given.
            directory = os.open(self.out.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                src = f"/proc/self/fd/{self.file.fileno()}"
                os.link(src, self._tmp.name, dst_dir_fd=directory, follow_symlinks=True)
            finally:
                os.close(directory)
        assert self._tmp is not None
        os.replace(self._tmp, self.out)
        self._tmp = None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._file is not None:
                self._file.close()
        finally:
            self._file = None
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)
                self._tmp = None
