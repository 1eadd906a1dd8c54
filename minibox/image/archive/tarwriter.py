"""A small tar writer for archives: fixed owners, modes and times, so a save is reproducible.

Saving the same image twice gives the same bytes (as `podman save` does, entries are
root-owned with mtime 0). A layer stored gzip-compressed goes into a docker-archive
uncompressed, and its uncompressed size is only known at the end: the entry's header is
written first and patched afterwards (POSIX ustar: the size is an octal field of the
512-byte header, pax(1) "ustar Interchange Format"), which needs a seekable output.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

BLOCK = 512
CHUNK = 1 << 20


class TarWriter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._dirs: set[str] = set()

    def _header(self, name: str, size: int, kind: bytes = tarfile.REGTYPE,
                mode: int = 0o444) -> bytes:
        info = tarfile.TarInfo(name)
        info.size, info.type, info.mode, info.mtime = size, kind, mode, 0
        info.uname = info.gname = "root"
        return info.tobuf(tarfile.PAX_FORMAT)

    def _parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self._dirs:
                self._dirs.add(d)
                self._out.write(self._header(d + "/", 0, tarfile.DIRTYPE, 0o755))

    def add_bytes(self, name: str, data: bytes) -> None:
        self._parents(name)
        self._out.write(self._header(name, len(data)))
        self._out.write(data)
        self._pad(len(data))

    def add_stream(self, name: str, chunks: Iterator[bytes], size: int | None,
                   progress: Callable[[int], None] | None = None) -> int:
        """Copy `chunks` as file `name`; `size` None means learn it and patch the header."""
        self._parents(name)
        start = self._out.tell() if size is None else 0
        header = self._header(name, size or 0)
        self._out.write(header)
        written = 0
        for chunk in chunks:
            self._out.write(chunk)
            written += len(chunk)
            if progress:
                progress(written)
        if size is not None and written != size:
            raise OSError(f"{name}: expected {size} bytes, copied {written}")
        self._pad(written)
        if size is None:
            end = self._out.tell()
            patched = self._header(name, written)
            if len(patched) != len(header):
                # Past ustar's 8 GiB the size moves into a pax record and the header
                # grows: it cannot be patched in place.
                raise OSError(f"{name}: {written} bytes is too big to patch in place")
            self._out.seek(start)
            self._out.write(patched)
            self._out.seek(end)
        return written

    def _pad(self, size: int) -> None:
        if size % BLOCK:
            self._out.write(b"\0" * (BLOCK - size % BLOCK))

    def close(self) -> None:
        # The end of a tar: two zero blocks (pax(1)); GNU tar also rounds to 10 KiB.
        self._out.write(b"\0" * (2 * BLOCK))


def file_chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


def seekable(f: BinaryIO) -> bool:
    """A regular file we can seek back in to patch a header (O_APPEND forbids that:
    every write(2) then goes to the end, open(2))."""
    try:
        import fcntl

        if fcntl.fcntl(f.fileno(), fcntl.F_GETFL) & os.O_APPEND:
            return False
        return f.seekable() and os.path.isfile(f"/proc/self/fd/{f.fileno()}")
    except (OSError, ValueError):
        return False
