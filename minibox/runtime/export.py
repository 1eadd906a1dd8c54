"""`export`: a container's whole filesystem as a tar, read through a private overlay.

The container's layers and its upper dir are stacked read-only (the upper as the top
lowerdir: its whiteouts and opaque dirs then hide what it deleted, overlayfs.rst
"Multiple lower layers"), mounted in a child process's own mount namespace, so the
mount is never seen on the host and vanishes with the child, whatever happens.
"""

from __future__ import annotations

import os

from minibox.errors import MiniboxError
from minibox.kernel import mounts as m
from minibox.kernel import namespaces


def export_tar(mountpoint: str, rwdir: str, lowers: list[str], out_fd: int) -> None:
    """Write the merged tree of `lowers` (highest first) under `rwdir`/upper to out_fd."""
    upper = os.path.join(rwdir, "upper")
    layers = ([upper] if os.path.isdir(upper) else []) + lowers
    os.mkdir(mountpoint, 0o700)
    r, w = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            os.close(r)
            code = 0
            try:
                _child(mountpoint, layers, out_fd)
            except BaseException as err:  # noqa: BLE001 - report, never unwind
                text = err.message if isinstance(err, MiniboxError) else str(err)
                os.write(w, text.encode(errors="replace"))
                code = 125
            os._exit(code)
        os.close(w)
        w = -1
        message = b""
        while chunk := os.read(r, 4096):
            message += chunk
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise MiniboxError(f"export failed: {message.decode(errors='replace') or status}")
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
        os.rmdir(mountpoint)


def _child(mountpoint: str, layers: list[str], out_fd: int) -> None:
    from minibox.image import layer

    namespaces.unshare(["mnt"])
    m.mount(None, "/", None, m.REC | m.PRIVATE,
            why="a private mount namespace: the export's overlay is never seen on the host")
    if len(layers) == 1:
        m.mount(layers[0], mountpoint, None, m.BIND,
                why="one layer and no changes: the layer itself is the whole filesystem")
    else:
        m.mount("overlay", mountpoint, "overlay", m.RDONLY, "lowerdir=" + ":".join(layers),
                why="a read-only overlay of the container's changes over its image's layers: "
                    "the filesystem the container sees")
    with os.fdopen(out_fd, "wb", closefd=False) as out:
        layer.write_tar(mountpoint, out)
