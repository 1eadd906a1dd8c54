"""Where an archive is read from: a tar file (maybe compressed, maybe on stdin) or a directory.

Both archive layouts are read out of order (docker's `manifest.json` may come after the
layers it names, an OCI index names blobs anywhere in the tar), so a tar must be seekable.
A compressed archive, or one arriving on a pipe, is first copied (decompressed) into a
staging file under the store's tmp/ directory, which is removed when the source closes.
"""

from __future__ import annotations

import io
import os
import tarfile
from typing import IO, BinaryIO

from minibox import explain
from minibox.errors import MiniboxError

CHUNK = 1 << 20

# Magic numbers of the whole-archive compressions `docker load` accepts (gzip, bzip2,
# xz, zstd): RFC 1952 section 2.3.1, bzip2's "BZh", the xz file format section 2.1.1,
# RFC 8878 section 3.1.1.
MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}


def compression_of(head: bytes) -> str | None:
    for magic, name in MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def decompressor(name: str):  # noqa: ANN201 - an object with .decompress(bytes) -> bytes
    """A streaming decompressor for `name`; its `.eof` says whether the stream was whole."""
    if name == "gzip":
        return _Gzip()
    if name == "bzip2":
        import bz2

        return bz2.BZ2Decompressor()
    if name == "xz":
        import lzma

        return lzma.LZMADecompressor()
    if name == "zstd":
        try:
            import zstandard
        except ImportError:
            raise MiniboxError("a zstd-compressed archive or layer needs the python "
                               "package zstandard (pip install zstandard), "
                               "or decompress it first with zstd -d") from None
        return _Zstd(zstandard.ZstdDecompressor().decompressobj())
    raise MiniboxError(f"unknown compression {name}")


class _Gzip:
    """gzip that goes on across members: a gzip file may be several members one after
    another (RFC 1952 section 2.2), as parallel compressors (pigz, minibox's own layer
    writer) make them; zlib's decompressobj stops at the end of the first one."""

    def __init__(self) -> None:
        self._new()
        self.eof = False

    def _new(self) -> None:
        import zlib

        # 16 + MAX_WBITS: expect the gzip header and trailer (zlib manual, inflateInit2).
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            out.append(self._d.decompress(data))
            if self._d.eof:
                # A member ended: whatever follows must be the next member.
                data = self._d.unused_data
                self._new()
                self.eof = True
            else:
                self.eof = False
                data = b""
        return b"".join(out)


class _Zstd:
    """zstandard's decompressobj with the `.eof` attribute the stdlib ones have."""

    def __init__(self, obj) -> None:  # noqa: ANN001
        self._obj = obj
        self.eof = False

    def decompress(self, data: bytes) -> bytes:
        out = self._obj.decompress(data)
        self.eof = bool(getattr(self._obj, "eof", False)) or self.eof
        return out

    def flush(self) -> bytes:
        self.eof = True
        return self._obj.flush()


class Source:
    """The files of one archive, by their path inside it."""

    description: str

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def size(self, name: str) -> int:
        raise NotImplementedError

    def open(self, name: str) -> IO[bytes]:
        raise NotImplementedError

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        """A small file (JSON) whole; a huge "manifest" is an error, not a memory hog."""
        if not self.exists(name):
            raise MiniboxError(f"{self.description}: {name} is missing from the archive "
                               "(is it a complete docker save / OCI archive?)")
        if self.size(name) > limit:
            raise MiniboxError(f"{self.description}: {name} is {self.size(name)} bytes, "
                               "too big for a JSON document")
        with self.open(name) as f:
            return f.read()

    def close(self) -> None:
        pass

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _clean(name: str) -> str:
    """Archive paths compared as written by any tool: no leading ./ or /."""
    name = os.path.normpath(name.lstrip("/"))
    return "" if name == "." else name


class TarSource(Source):
    def __init__(self, fileobj: BinaryIO, description: str, staged: str | None = None) -> None:
        self.description = description
        self._staged = staged
        self._file = fileobj
        try:
            self._tar = tarfile.open(fileobj=fileobj, mode="r:")
            members = self._tar.getmembers()
        except (tarfile.TarError, EOFError) as err:
            self.close()
            raise MiniboxError(f"{description} is not a tar archive ({err}): expected what "
                               "docker save or podman save writes") from None
        self._members = {_clean(m.name): m for m in members}

    def _member(self, name: str) -> tarfile.TarInfo:
        member = self._members.get(_clean(name))
        if member is None:
            raise MiniboxError(f"{self.description}: {name} is missing from the archive "
                               "(is it a complete docker save / OCI archive?)")
        # Docker's and podman's docker-archive repeat a shared layer as a symlink to the
        # first copy (`<id>/layer.tar -> ../<hex>.tar`): follow it inside the archive.
        for _ in range(16):
            if member.issym():
                target = _clean(os.path.join(os.path.dirname(_clean(member.name)),
                                             member.linkname))
            elif member.islnk():  # a hard link names its target from the archive's root
                target = _clean(member.linkname)
            else:
                break
            if target not in self._members:
                raise MiniboxError(f"{self.description}: {member.name} links to "
                                   f"{member.linkname}, which is not in the archive")
            member = self._members[target]
        if not member.isfile():
            raise MiniboxError(f"{self.description}: {name} is not a regular file in the "
                               "archive")
        return member

    def exists(self, name: str) -> bool:
        return _clean(name) in self._members

    def size(self, name: str) -> int:
        return self._member(name).size

    def open(self, name: str) -> IO[bytes]:
        f = self._tar.extractfile(self._member(name))
        assert f is not None  # a regular file always has data
        return f

    def close(self) -> None:
        if getattr(self, "_tar", None) is not None:
            self._tar.close()
        self._file.close()
        if self._staged:
            try:
                os.unlink(self._staged)
                explain.step(f"unlink({self._staged!r})", 0, "the staging copy of the "
                             "archive is no longer needed", "unlink(2)")
            except FileNotFoundError:
                pass
            self._staged = None


class DirSource(Source):
    """An OCI image layout directory on disk (what `umoci` and `skopeo copy oci:DIR` use)."""

    def __init__(self, path: str) -> None:
        self.description = path
        self._root = os.path.realpath(path)

    def _path(self, name: str) -> str:
        path = os.path.realpath(os.path.join(self._root, _clean(name)))
        # A blob name comes from the archive's own JSON: never read outside the layout.
        if os.path.commonpath([path, self._root]) != self._root:
            raise MiniboxError(f"{self.description}: {name} points outside the layout")
        return path

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def size(self, name: str) -> int:
        return os.path.getsize(self._path(name))

    def open(self, name: str) -> IO[bytes]:
        if not self.exists(name):
            raise MiniboxError(f"{self.description}: {name} is missing from the layout")
        return open(self._path(name), "rb")


def open_source(path: str | None, stage: str) -> Source:
    """Open `path` (a tar file, a compressed tar, an OCI layout directory) or stdin if None.

    A staging copy, when one is needed, is made at `stage` (a fresh name in the store's
    tmp/) and removed when the source is closed, whatever happens.
    """
    if path is not None and os.path.isdir(path):
        return DirSource(path)
    if path is None:
        raw: BinaryIO = os.fdopen(os.dup(0), "rb", buffering=0)
        description = "stdin"
    else:
        try:
            raw = open(path, "rb", buffering=0)
        except OSError as err:
            raise MiniboxError(f"open {path}: {err.strerror} (load -i needs an archive "
                               "written by save)") from None
        description = path
    try:
        head = _peek(raw)
        kind = compression_of(head)
        if kind is None and _seekable(raw):
            raw.seek(0)
            return TarSource(io.BufferedReader(raw, CHUNK), description)
        staged = _stage(raw, head, kind, description, stage)
    except BaseException:
        raw.close()
        raise
    raw.close()
    try:
        return TarSource(open(staged, "rb"), description, staged)
    except BaseException:
        _unlink(staged)
        raise


def _seekable(f: BinaryIO) -> bool:
    try:
        return f.seekable() and os.path.isfile(f"/proc/self/fd/{f.fileno()}")
    except (OSError, ValueError):
        return False


def _peek(raw: BinaryIO) -> bytes:
    head = b""
    while len(head) < 8:
        chunk = raw.read(8 - len(head))
        if not chunk:
            break
        head += chunk
    return head


def _stage(raw: BinaryIO, head: bytes, kind: str | None, description: str, staged: str) -> str:
    fd = os.open(staged, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    explain.step(f"open({staged!r}, O_RDWR|O_CREAT|O_EXCL)", fd,
                 f"{description} is {kind or 'a pipe'}: a seekable, uncompressed copy is "
                 "read in any order; it lives in the store's tmp/ and goes when the load "
                 "ends", "open(2)")
    try:
        with os.fdopen(fd, "wb") as out:
            dec = decompressor(kind) if kind else None
            data = head
            while True:
                if dec is not None and data:
                    try:
                        data = dec.decompress(data)
                    except Exception as err:  # noqa: BLE001 - zlib/lzma/bz2 each raise their own
                        raise MiniboxError(f"{description}: the {kind} stream is corrupt "
                                           f"({err})") from None
                out.write(data)
                data = raw.read(CHUNK)
                if not data:
                    break
            if dec is not None and not dec.eof:
                raise MiniboxError(f"{description}: the {kind} stream ends early (truncated "
                                   "archive?)")
    except BaseException:
        _unlink(staged)
        raise
    return staged


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
