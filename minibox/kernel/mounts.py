"""Mount steps: mount(2), umount2(2), pivot_root(2) and the idmapped-mount calls."""

from __future__ import annotations

import os

from minibox._native import ffi, lib
from minibox.kernel.syscall import native

RDONLY = lib.MS_RDONLY
NOSUID = lib.MS_NOSUID
NODEV = lib.MS_NODEV
NOEXEC = lib.MS_NOEXEC
REMOUNT = lib.MS_REMOUNT
BIND = lib.MS_BIND
REC = lib.MS_REC
PRIVATE = lib.MS_PRIVATE
SLAVE = lib.MS_SLAVE
STRICTATIME = lib.MS_STRICTATIME
RELATIME = lib.MS_RELATIME
DETACH = lib.MNT_DETACH

_FLAG_NAMES = [
    (RDONLY, "MS_RDONLY"),
    (NOSUID, "MS_NOSUID"),
    (NODEV, "MS_NODEV"),
    (NOEXEC, "MS_NOEXEC"),
    (REMOUNT, "MS_REMOUNT"),
    (BIND, "MS_BIND"),
    (REC, "MS_REC"),
    (PRIVATE, "MS_PRIVATE"),
    (SLAVE, "MS_SLAVE"),
    (STRICTATIME, "MS_STRICTATIME"),
    (RELATIME, "MS_RELATIME"),
]


def flag_text(flags: int) -> str:
    return "|".join(name for bit, name in _FLAG_NAMES if flags & bit) or "0"


def _c(s: str | None):
    return ffi.NULL if s is None else s.encode()


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    data: str | None = None,
    *,
    why: str,
) -> None:
    call = (
        f'mount("{source or "none"}", "{target}", "{fstype or ""}", '
        f'{flag_text(flags)}, "{data or ""}")'
    )
    native(lib.mb_mount, (_c(source), _c(target), _c(fstype), flags, _c(data)), call, why,
           "mount(2)")


def umount(target: str, flags: int = 0, *, why: str) -> None:
    text = "MNT_DETACH" if flags & DETACH else "0"
    native(lib.mb_umount2, (target.encode(), flags), f'umount2("{target}", {text})', why,
           "umount2(2)")


def pivot_root(new_root: str, put_old: str, *, why: str) -> None:
    native(
        lib.mb_pivot_root,
        (new_root.encode(), put_old.encode()),
        f'pivot_root("{new_root}", "{put_old}")',
        why,
        "pivot_root(2)",
    )


def open_tree_clone(path: str) -> int:
    """A detached copy of the mount tree at `path`, as a file descriptor."""
    flags = lib.OPEN_TREE_CLONE | lib.OPEN_TREE_CLOEXEC | lib.AT_RECURSIVE
    return native(
        lib.mb_open_tree,
        (lib.AT_FDCWD, path.encode(), flags),
        f'open_tree("{path}", OPEN_TREE_CLONE|OPEN_TREE_CLOEXEC|AT_RECURSIVE)',
        "take a detached copy of the rootfs mount to give it the container's id mapping",
        "open_tree(2)",
    )


def idmap(mount_fd: int, userns_path: str) -> None:
    fd = os.open(userns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        native(
            lib.mb_mount_setattr_idmap,
            (mount_fd, fd, 1),
            f"mount_setattr(fd {mount_fd}, MOUNT_ATTR_IDMAP, userns={userns_path})",
            "files owned by host root appear owned by container root, nothing on disk changes",
            "mount_setattr(2)",
        )
    finally:
        os.close(fd)


def move_mount(mount_fd: int, target: str) -> None:
    native(
        lib.mb_move_mount,
        (mount_fd, target.encode()),
        f'move_mount(fd {mount_fd}, "{target}", MOVE_MOUNT_F_EMPTY_PATH)',
        "attach the idmapped rootfs copy inside the container's mount namespace",
        "move_mount(2)",
    )
