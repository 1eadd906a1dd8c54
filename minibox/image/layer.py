"""Layers: tar archives of filesystem changes, applied to (and made from) directories.

A layer (image-spec layer.md) is a tar of the files that changed, compressed with gzip
or zstd or not at all. A deleted file is an empty `.wh.NAME` next to where it was; a
directory whose lower contents are all hidden carries `.wh..wh..opq`. Here each layer
is unpacked alone into its own directory, the way overlayfs wants it as a lowerdir,
so the tar's whiteouts become overlayfs whiteouts (overlayfs.rst "whiteouts and opaque
directories"): a character device 0/0 named NAME, and the xattr trusted.overlay.opaque=y
on the directory. `write_layer` turns them back into tar whiteouts (for commit).

Paths are checked as PEP 706's `tar` filter checks them, by minibox itself (Python
3.11 before 3.11.4, Debian 12's among them, has no extraction filters): an entry whose
path passes through a symlink is resolved with every symlink met so far and refused if
it would land outside the layer directory. The `data` filter could not be used anyway:
a root filesystem needs device nodes, setuid bits and owners, which it strips.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from typing import IO, BinaryIO

from minibox.errors import MiniboxError

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# The store keeps each layer unpacked; its blob is what travels (save, push). zlib level
# 1 compresses a root filesystem nearly as well as 6 in a third of the time.
GZIP_LEVEL = 1
_CHUNK = 1 << 20

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _Hashing:
    """A reader that hashes and counts what passes through it (the diff_id), and may
    copy it to `tee` (import writes the blob while it unpacks, in one pass)."""

    def __init__(self, raw: IO[bytes], tee: IO[bytes] | None = None,
                 progress: object = None) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self.tee = tee
        self.progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        if self.tee is not None:
            self.tee.write(data)
        if self.progress is not None:
            self.progress(len(data))  # type: ignore[operator]
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


class _Peek:
    """Look at the first bytes of a stream (to tell the compression) without losing them."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.head = raw.read(4)

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                data, self.head = self.head + self.raw.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.raw.read(n - len(data))
            return data
        return self.raw.read(n)

    def readinto(self, buf: bytearray | memoryview) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)


def compression_of(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def decompressed(raw: IO[bytes], compression: str = "auto") -> IO[bytes]:
    """The uncompressed stream of a layer blob (gzip, zstd or plain; auto = by magic)."""
    peek = _Peek(raw)
    if compression == "auto":
        compression = compression_of(peek.head)
    if compression == "gzip":
        # ISA-L's inflate (python-isal) reads the same gzip stream, every member, about
        # 2.6 times as fast as zlib here: 172 MB of tar in 0.25 s, not 0.66 s.
        from isal import igzip

        return igzip.IGzipFile(fileobj=peek, mode="rb")  # type: ignore[arg-type]
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(peek, read_across_frames=True)
    return peek  # type: ignore[return-value]


def _open_source(src: str | IO[bytes]) -> tuple[IO[bytes], bool]:
    if isinstance(src, (str, os.PathLike)):
        return open(src, "rb"), True
    return src, False


def diff_id_of(blob: str | IO[bytes], compression: str = "auto") -> str:
    """sha256 of the uncompressed tar: the layer's diff_id (image-spec config.md)."""
    f, close = _open_source(blob)
    try:
        h = _Hashing(decompressed(f, compression))
        try:
            h.drain()
        except (EOFError, OSError) as err:
            raise MiniboxError(f"layer is not a readable archive: {err}") from None
        return h.digest()
    finally:
        if close:
            f.close()


class Applied:
    """What `apply` read: the diff_id and the uncompressed size of the tar."""

    def __init__(self, diff_id: str, size: int) -> None:
        self.diff_id = diff_id
        self.size = size


def apply(src: str | IO[bytes], dest: str, compression: str = "auto",
          what: str = "layer", tee: IO[bytes] | None = None,
          progress: object = None) -> Applied:
    """Unpack one layer into the directory `dest` (which should be empty).

    Whiteouts become overlayfs whiteouts. An entry that would land outside `dest` (an
    absolute path, `..`, or a path through a symlink) is refused, naming the entry;
    so is a damaged archive. The caller removes `dest` on failure. `tee` gets a copy
    of the uncompressed tar.
    """
    f, close = _open_source(src)
    try:
        h = _Hashing(decompressed(f, compression), tee, progress)
        try:
            _unpack(h, os.path.realpath(dest), what)
            h.drain()  # the tar's end padding, part of what the diff_id covers
        except (EOFError, tarfile.ReadError, OSError, ValueError) as err:
            if isinstance(err, OSError) and err.filename:
                real = os.path.realpath(dest)
                where = str(err.filename)
                if where.startswith(real + "/"):
                    where = where[len(real) + 1:]
                hint = (" (the archive contradicts itself, e.g. a file used as a directory)"
                        if err.errno in (17, 20) else "")  # EEXIST, ENOTDIR
                raise MiniboxError(f'{what}: cannot create "{where}": {err.strerror}{hint}'
                                   ) from None
            raise MiniboxError(f"{what}: not a valid tar archive ({_reason(err)})") from None
        return Applied(h.digest(), h.size)
    finally:
        if close:
            f.close()


def _reason(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, EOFError) or "end of" in text.lower() or "truncated" in text.lower():
        return f"truncated: {text}"
    return text


def _refuse(what: str, name: str, why: str) -> MiniboxError:
    return MiniboxError(f'{what}: refusing entry "{name}": {why}')


def _clean_name(what: str, raw: str) -> str:
    if raw.startswith("/"):
        raise _refuse(what, raw, "absolute path (layer entries are relative to the root)")
    parts = [p for p in raw.split("/") if p and p != "."]
    if ".." in parts:
        raise _refuse(what, raw, "a '..' component would leave the layer")
    return "/".join(parts)


def _unpack(stream: IO[bytes], dest: str, what: str) -> None:
    """Create each entry of the tar under `dest`, which starts empty.

    Since only this function writes to `dest`, it knows every name already there
    (`made`): a parent directory it made needs no mkdir, a name it never made needs no
    removal first, and a path can only pass through a symlink it made itself. Only
    such a path gets the full check (_outside resolves it, and it is refused if it leads
    out), which keeps a layer of thousands of files from costing a realpath each.
    """
    old_umask = os.umask(0)  # new files get the tar's mode bits as they are
    try:
        _unpack_entries(stream, dest, what)
    finally:
        os.umask(old_umask)


def _unpack_entries(stream: IO[bytes], dest: str, what: str) -> None:
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    made: dict[str, str] = {}  # relative name -> "d" (dir), "l" (symlink) or "f" (other)
    setgid_dirs: set[str] = set()  # new files in these get the dir's group, not ours
    as_root = os.geteuid() == 0 and os.getegid() == 0
    tf = tarfile.open(fileobj=stream, mode="r|", errorlevel=2)  # type: ignore[call-overload]
    for member in tf:
        name = _clean_name(what, member.name)
        if not name:
            _attrs(dest, member)
            dirs.append((dest, member))
            continue
        parts = name.split("/")
        prefixes = ["/".join(parts[:k]) for k in range(1, len(parts))]
        through_link = any(made.get(p) == "l" for p in prefixes)
        if through_link:
            where = _outside(dest, name)
            if where:
                raise _refuse(what, member.name, f"it would be written to {where} (outside "
                              "the layer), through a symlink or '..'")
        path = os.path.join(dest, name)
        parent, base = os.path.split(path)
        if through_link or (prefixes and made.get(prefixes[-1]) != "d"):
            os.makedirs(parent, exist_ok=True)
            if not through_link:
                for p in prefixes:
                    made.setdefault(p, "d")
        if base == OPAQUE:
            os.setxattr(parent, OPAQUE_XATTR, b"y", follow_symlinks=False)
            continue
        if base.startswith(WHITEOUT_PREFIX):
            if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                continue  # aufs bookkeeping (.wh..wh.plnk and the like): no meaning here
            target = os.path.join(parent, base[len(WHITEOUT_PREFIX):])
            _remove(target)
            os.mknod(target, stat.S_IFCHR, os.makedev(0, 0))
            made["/".join(prefixes[-1:] + [base[len(WHITEOUT_PREFIX):]])] = "f"
            continue
        again = through_link or name in made
        if member.isdir():
            if again and (made.get(name) != "d" or through_link):
                if not os.path.isdir(path) or os.path.islink(path):
                    _remove(path)
                    os.mkdir(path, 0o700)
            elif not again:
                os.mkdir(path, 0o700)
            made[name] = "d"
            if member.mode & stat.S_ISGID:
                setgid_dirs.add(name)
            _attrs(path, member)
            dirs.append((path, member))
            continue
        if again:
            _remove(path)
        made[name] = "l" if member.issym() else "f"
        if member.isreg():
            # Created with its final mode (umask is 0 here): when it is root's and
            # plain, neither chown(2) nor chmod(2) has anything left to do — two
            # system calls fewer for each of a root filesystem's thousands of files.
            mode = member.mode & 0o777
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                         os.O_CLOEXEC, mode)
            with os.fdopen(fd, "wb") as out:
                src = tf.extractfile(member)
                if src is not None:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
            plain = (as_root and member.uid == 0 and member.gid == 0 and not again
                     and mode == member.mode & 0o7777
                     and not any(k.startswith("SCHILY.xattr.") for k in member.pax_headers)
                     and (prefixes[-1] if prefixes else "") not in setgid_dirs)
            if plain:
                os.utime(path, ns=(int(member.mtime * 10**9),) * 2, follow_symlinks=False)
                continue
        elif member.issym():
            os.symlink(member.linkname, path)
        elif member.islnk():
            if member.linkname.startswith("/") or ".." in member.linkname.split("/"):
                raise _refuse(what, member.name,
                              f'hard link to "{member.linkname}", outside the layer')
            target = _clean_name(what, member.linkname)
            tpath = os.path.join(dest, target)
            real = os.path.realpath(tpath)
            if os.path.commonpath([real, dest]) != dest or not os.path.lexists(tpath):
                raise _refuse(what, member.name,
                              f'hard link to "{member.linkname}", which is not in the layer')
            os.link(tpath, path, follow_symlinks=False)
            continue  # a hard link shares the target's inode: its attributes are set
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        else:
            raise _refuse(what, member.name, f"unsupported entry type {member.type!r}")
        _attrs(path, member)
        os.utime(path, ns=(int(member.mtime * 10**9),) * 2, follow_symlinks=False)
    # Directories last, deepest first: adding their children changed their mtimes.
    for path, member in reversed(dirs):
        os.utime(path, ns=(int(member.mtime * 10**9),) * 2, follow_symlinks=False)


def _outside(dest: str, name: str) -> str:
    """Where `name` would really be written, if that is outside `dest` (every symlink on
    the way resolved, as the kernel would follow them); '' if it stays inside."""
    root = os.path.realpath(dest)
    real = os.path.realpath(os.path.join(root, name))
    return "" if os.path.commonpath([real, root]) == root else real


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        import shutil

        shutil.rmtree(path)
    else:
        os.unlink(path)


def _attrs(path: str, member: tarfile.TarInfo) -> None:
    """Owner, mode and xattrs as the tar says (numeric ids: the image's own users)."""
    os.chown(path, member.uid, member.gid, follow_symlinks=False)
    if not member.issym():
        # chown(2) clears setuid/setgid, so the mode comes after it.
        os.chmod(path, member.mode & 0o7777)
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr."):]
            if name.startswith("trusted.overlay."):
                continue  # overlayfs's own bookkeeping never comes from an image
            try:
                os.setxattr(path, name, value.encode("utf-8", "surrogateescape"),
                            follow_symlinks=False)
            except OSError as err:
                if err.errno not in (95, 1):  # EOPNOTSUPP, EPERM: this filesystem refuses
                    raise


# -- writing layers ----------------------------------------------------------------------

class GzipMembers:
    """A gzip writer that compresses 1 MiB pieces on every CPU at once.

    Each piece becomes a gzip member of its own; a gzip file may be a series of members
    (RFC 1952 section 2.2, as pigz and bgzip write them), and every reader used with
    images (Go's compress/gzip, Python's gzip, gzip(1)) reads them as one stream.
    zlib releases the GIL while it deflates, so threads really run in parallel. A
    piece that does not compress (random or already compressed data, where deflate is
    at its slowest) is stored as it is (level 0) after a 64 KiB trial.
    """

    PIECE = 1 << 20

    def __init__(self, out: object, level: int = 1) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.out = out
        self.level = level
        self.buf = bytearray()
        self.pool = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1))
        self.pending: list = []

    @staticmethod
    def _member(data: bytes, level: int) -> bytes:
        import gzip
        import zlib

        trial = data[:65536]
        if len(zlib.compress(trial, 1)) > len(trial) * 0.97:
            level = 0
        return gzip.compress(data, compresslevel=level, mtime=0)

    def write(self, data: bytes) -> int:
        self.buf += data
        while len(self.buf) >= self.PIECE:
            self._submit(bytes(self.buf[:self.PIECE]))
            del self.buf[:self.PIECE]
        return len(data)

    def _submit(self, piece: bytes) -> None:
        self.pending.append(self.pool.submit(self._member, piece, self.level))
        # Keep at most two pieces per CPU in flight: memory stays bounded.
        while len(self.pending) > 2 * (os.cpu_count() or 1):
            self.out.write(self.pending.pop(0).result())  # type: ignore[attr-defined]

    def flush(self) -> None:
        pass

    def close(self) -> None:
        try:
            if self.buf or not self.pending:
                self._submit(bytes(self.buf))
                self.buf.clear()
            for fut in self.pending:
                self.out.write(fut.result())  # type: ignore[attr-defined]
            self.pending.clear()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


class HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()


def write_layer(src: str, out: BinaryIO, progress: object = None,
                mirror: str | None = None, stats: dict | None = None) -> tuple[str, str, int]:
    """Write the directory `src` as a gzip layer to `out`: (digest, diff_id, size).

    Overlayfs whiteouts (char 0/0) become `.wh.NAME`, an opaque directory gets
    `.wh..wh..opq`, so an overlay upper dir becomes a layer (image-spec layer.md
    "Whiteouts"). Entries are sorted, owners numeric: the same tree gives the same tar.
    With `mirror` (an empty directory), the layer is also unpacked there as it is
    written, as `apply` would unpack it: commit reads the files once, not three times.
    gzip runs on every CPU (GzipMembers). `stats` gets "tar_size", the uncompressed size.
    """
    compressed = HashingWriter(out)
    gz = GzipMembers(compressed, GZIP_LEVEL)
    plain = HashingWriter(gz)  # type: ignore[arg-type]
    tf = tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT)  # type: ignore
    tf.copybufsize = _CHUNK  # file data in 1 MiB reads, not tarfile's 16 KiB
    try:
        _add_tree(tf, src, progress, mirror)
        tf.close()
    finally:
        gz.close()
    if stats is not None:
        stats["tar_size"] = plain.size
    return "sha256:" + compressed.sha.hexdigest(), "sha256:" + plain.sha.hexdigest(), \
        compressed.size


class _Tee:
    """Reads from `src`, writing what it read to `copy` too."""

    def __init__(self, src: IO[bytes], copy: IO[bytes]) -> None:
        self.src = src
        self.copy = copy

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        self.copy.write(data)
        return data


def write_tar(src: str, out: BinaryIO) -> int:
    """Write the directory `src` as a plain tar (export): numeric owners, sorted names.
    Returns the number of bytes written."""
    counter = HashingWriter(out)
    tf = tarfile.open(fileobj=counter, mode="w|", format=tarfile.PAX_FORMAT)  # type: ignore
    _add_tree(tf, src, None)
    tf.close()
    return counter.size


def _add_tree(tf: tarfile.TarFile, top: str, progress: object,
              mirror: str | None = None) -> None:
    inodes: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, tarfile.TarInfo]] = []

    def walk(rel: str) -> None:
        full = os.path.join(top, rel) if rel else top
        for name in sorted(os.listdir(full)):
            relpath = f"{rel}/{name}" if rel else name
            path = os.path.join(full, name)
            st = os.lstat(path)
            copy = os.path.join(mirror, relpath) if mirror else None
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                wh = tarfile.TarInfo((f"{rel}/" if rel else "") + WHITEOUT_PREFIX + name)
                wh.mtime = int(st.st_mtime)
                tf.addfile(wh)
                if copy:
                    os.mknod(copy, stat.S_IFCHR, os.makedev(0, 0))
                continue
            ti = _tarinfo(path, relpath, st, inodes)
            if ti is None:
                continue
            if ti.isreg():
                with open(path, "rb") as f:
                    if copy:
                        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                                     os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                        with os.fdopen(fd, "wb") as c:
                            tf.addfile(ti, _Tee(f, c))  # type: ignore[arg-type]
                    else:
                        tf.addfile(ti, f)
            else:
                tf.addfile(ti)
            if copy:
                _mirror(copy, ti, mirror)  # type: ignore[arg-type]
                if ti.isdir():
                    dirs.append((copy, ti))
            if progress is not None:
                progress(ti.size)  # type: ignore[operator]
            if stat.S_ISDIR(st.st_mode):
                if _is_opaque(path):
                    opq = tarfile.TarInfo(f"{relpath}/{OPAQUE}")
                    opq.mtime = int(st.st_mtime)
                    tf.addfile(opq)
                    if copy:
                        os.setxattr(copy, OPAQUE_XATTR, b"y", follow_symlinks=False)
                walk(relpath)

    walk("")
    for path, ti in reversed(dirs):
        os.utime(path, ns=(ti.mtime * 10**9,) * 2, follow_symlinks=False)


def _mirror(path: str, ti: tarfile.TarInfo, root: str) -> None:
    """Make `path` as `apply` would from the entry `ti` (a regular file is written)."""
    if ti.islnk():
        os.link(os.path.join(root, ti.linkname), path, follow_symlinks=False)
        return
    if ti.isdir():
        os.mkdir(path, 0o700)
    elif ti.issym():
        os.symlink(ti.linkname, path)
    elif ti.ischr() or ti.isblk():
        kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
        os.mknod(path, kind | 0o600, os.makedev(ti.devmajor, ti.devminor))
    elif ti.isfifo():
        os.mkfifo(path, 0o600)
    _attrs(path, ti)
    if not ti.isdir():
        os.utime(path, ns=(ti.mtime * 10**9,) * 2, follow_symlinks=False)


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _tarinfo(path: str, rel: str, st: os.stat_result,
             inodes: dict[tuple[int, int], str]) -> tarfile.TarInfo | None:
    ti = tarfile.TarInfo(rel)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""
    ti.mtime = int(st.st_mtime)
    mode = st.st_mode
    key = (st.st_dev, st.st_ino)
    if not stat.S_ISDIR(mode) and st.st_nlink > 1 and key in inodes:
        ti.type = tarfile.LNKTYPE
        ti.linkname = inodes[key]
        return ti
    if not stat.S_ISDIR(mode) and st.st_nlink > 1:
        inodes[key] = rel
    if stat.S_ISREG(mode):
        ti.type = tarfile.REGTYPE
        ti.size = st.st_size
    elif stat.S_ISDIR(mode):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(path)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        ti.type = tarfile.FIFOTYPE
    else:
        return None  # a socket: meaningless in an image (tar(1) skips them too)
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        names = []
    for name in sorted(names):
        if name.startswith("trusted.overlay."):
            continue  # overlayfs bookkeeping (opaque, origin, impure): not image content
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        ti.pax_headers["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return ti
