"""minibox's compiled modules in one file, so that starting `minibox` imports them cheaply.

Importing a module the usual way costs Python a path search and about ten system calls
(stat the directory and the source, open the .pyc, fstat, ioctl, lseek, read, close...);
`minibox run` imports some thirty modules, and that came to about a millisecond of its
start here, where a whole container run takes twenty. `.ci/setup` runs
`python -m minibox.bundle`, which writes the code of every minibox module into
minibox/_bundle.bin, each with the size and mtime of its source. The launcher installs
the finder below first; it serves a module from that file, one stat(2) and one
pread(2), while its source is unchanged. A module edited, added or removed since is
imported the usual way, so the file can be stale but never wrong. (CPython freezes
its own start-up modules for the same reason.)
"""

# No `from __future__ import annotations` here: this module is imported before its
# finder exists, and __future__ itself is served from the bundle.
import marshal
import os
import sys

# Both are loaded while Python starts, so taking them from there costs no import.
from _frozen_importlib import ModuleSpec
from _frozen_importlib_external import MAGIC_NUMBER

PATH = os.path.join(os.path.dirname(__file__), "_bundle.bin")
# Code objects are specific to the interpreter version: its magic number is part of ours.
_HEADER = b"minibox bundle 1 " + MAGIC_NUMBER
_INDEX_MAX = 1 << 16


class _Finder:
    """A meta path finder and loader (importlib's protocol, PEP 451) over the bundle."""

    def __init__(self, fd: int, index: dict[str, tuple]) -> None:
        self.fd = fd
        self.index = index

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        entry = self.index.get(name)
        if entry is None:
            return None
        origin, is_pkg, mtime_ns, size = entry[2:]
        try:
            st = os.stat(origin)
        except OSError:
            return None  # removed: let the usual finders say so
        if st.st_mtime_ns != mtime_ns or st.st_size != size:
            return None  # edited since the bundle was made: import the source
        spec = ModuleSpec(name, self, origin=origin, is_package=is_pkg)
        if is_pkg:
            spec.submodule_search_locations = [os.path.dirname(origin)]
        spec.has_location = True  # __file__ is the source, as for a usual import
        return spec

    def create_module(self, spec: ModuleSpec) -> None:
        return None  # the default module object

    def exec_module(self, module: object) -> None:
        offset, length = self.index[module.__name__][:2]  # type: ignore[attr-defined]
        code = marshal.loads(os.pread(self.fd, length, offset))
        exec(code, module.__dict__)  # noqa: S102 - minibox's own compiled code


def install(path: str = PATH) -> None:
    """Put the bundle's finder first in sys.meta_path; without a usable bundle, nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    head = os.read(fd, _INDEX_MAX)
    if not head.startswith(_HEADER):
        os.close(fd)  # made by another Python, or not a bundle
        return
    start = len(_HEADER) + 4
    length = int.from_bytes(head[len(_HEADER):start], "little")
    sys.meta_path.insert(0, _Finder(fd, marshal.loads(head[start:start + length])))


def build(path: str = PATH) -> int:
    """Write the bundle of every module under minibox/; returns how many it holds."""
    top = os.path.dirname(os.path.abspath(__file__))
    blobs: list[bytes] = []
    entries: dict[str, list] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        package = os.path.relpath(dirpath, os.path.dirname(top)).replace(os.sep, ".")
        for filename in sorted(f for f in filenames if f.endswith(".py")):
            stem = filename[:-3]
            name = package if stem == "__init__" else f"{package}.{stem}"
            _add(entries, blobs, name, os.path.join(dirpath, filename), stem == "__init__")
    # The one standard module every minibox module imports (for its annotations).
    import __future__

    _add(entries, blobs, "__future__", __future__.__file__, False)
    # Offsets are known once the index's own length is: it comes first.
    index_len = len(marshal.dumps(_with_offsets(entries, blobs, 0)))
    index = marshal.dumps(_with_offsets(entries, blobs, len(_HEADER) + 4 + index_len))
    if len(_HEADER) + 4 + len(index) > _INDEX_MAX:
        raise SystemExit(f"minibox bundle: the index outgrew {_INDEX_MAX} bytes")
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(_HEADER + len(index).to_bytes(4, "little") + index + b"".join(blobs))
    os.replace(tmp, path)
    return len(entries)


def _add(entries: dict[str, list], blobs: list[bytes], name: str, source: str,
         is_pkg: bool) -> None:
    with open(source, "rb") as f:
        code = compile(f.read(), source, "exec", dont_inherit=True)
    st = os.stat(source)
    entries[name] = [len(blobs), source, is_pkg, st.st_mtime_ns, st.st_size]
    blobs.append(marshal.dumps(code))


def _with_offsets(entries: dict[str, list], blobs: list[bytes], base: int) -> dict[str, tuple]:
    out = {}
    offset = base
    for name, (number, *rest) in entries.items():
        out[name] = (offset, len(blobs[number]), *rest)
        offset += len(blobs[number])
    return out


if __name__ == "__main__":
    print(f"minibox bundle: {build()} modules in {PATH}")
