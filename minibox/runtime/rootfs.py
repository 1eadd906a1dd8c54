"""The container's filesystem, set up by the child inside its own mount namespace.

Everything here runs in the child between clone and execve (runc: rootfs_linux.go).
Mount order follows runc: make / private, bind the rootfs onto itself (or stack an
overlay, or attach the idmapped copy), mount /proc, /dev, /sys and the rest under it,
then pivot_root into it and detach the old root.
"""

from __future__ import annotations

import os
import stat

from minibox.kernel import mounts as m

# Options of the spec's "mounts" entries that are mount(2) flags; the rest is data.
_OPTION_FLAGS = {
    "ro": m.RDONLY, "nosuid": m.NOSUID, "nodev": m.NODEV, "noexec": m.NOEXEC,
    "bind": m.BIND, "rbind": m.BIND | m.REC, "strictatime": m.STRICTATIME,
    "relatime": m.RELATIME,
}
_IGNORED = {"rw", "suid", "dev", "exec", "private", "rprivate"}

# The default device nodes (runtime-spec config-linux.md "Default Devices"): name, major, minor.
DEVICES = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0)]
DEV_LINKS = [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
             ("ptmx", "pts/ptmx"), ("core", "/proc/kcore")]


def securejoin(root: str, path: str) -> str:
    """`path` resolved inside `root` as the container will see it: symlinks followed
    relative to root, `..` stopping at root. A hostile rootfs symlink such as
    /etc -> / must not make minibox mount over the host's files (CVE-2021-30465)."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:
                raise OSError(40, f"too many levels of symbolic links in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def parse_options(options: list[str]) -> tuple[int, str]:
    flags = 0
    data: list[str] = []
    for opt in options:
        if opt in _OPTION_FLAGS:
            flags |= _OPTION_FLAGS[opt]
        elif opt not in _IGNORED:
            data.append(opt)
    return flags, ",".join(data)


def make_private() -> None:
    m.mount(None, "/", None, m.REC | m.PRIVATE,
            why="make every mount private first, so nothing the container mounts "
                "propagates back to the host")


def bind_rootfs(rootfs: str) -> None:
    m.mount(rootfs, rootfs, None, m.BIND | m.REC,
            why="pivot_root needs the new root to be a mount point: bind the rootfs onto itself")


def overlay_rootfs(rootfs: str, scratch: str) -> None:
    """A throwaway writable layer: tmpfs upper over the untouched rootfs (overlayfs docs)."""
    m.mount("tmpfs", scratch, "tmpfs", 0, "mode=755",
            why="a tmpfs to hold the overlay's upper and work dirs; it vanishes with the container")
    for d in ("upper", "work", "merged"):
        os.mkdir(os.path.join(scratch, d), 0o755)
    merged = os.path.join(scratch, "merged")
    m.mount("overlay", merged, "overlay", 0,
            f"lowerdir={rootfs},upperdir={scratch}/upper,workdir={scratch}/work",
            why="overlayfs: reads come from the rootfs, writes land in the tmpfs upper dir")
    # Hang the merged tree over the rootfs path so every later step sees one layout.
    m.mount(merged, rootfs, None, m.BIND | m.REC,
            why="put the overlay where the rootfs was, so the rest of the setup is the same")


def image_rootfs(rootfs: str, rwdir: str, data: str) -> None:
    """An image's layers stacked with overlayfs on the (empty) rootfs mount point.

    `data` names the layer dirs as lowerdir (highest first) and the container's own
    upperdir and workdir under `rwdir`, which outlive the container's run (commit and
    diff read the upper dir) and go when the container is removed (overlayfs.rst).
    """
    for d in (rwdir, os.path.join(rwdir, "upper"), os.path.join(rwdir, "work"), rootfs):
        try:
            os.mkdir(d, 0o755)
        except FileExistsError:
            pass  # a restart: the upper dir keeps the container's changes
        except FileNotFoundError:  # the store's containers/ dir, the first time
            os.makedirs(d, 0o755, exist_ok=True)
    m.mount("overlay", rootfs, "overlay", 0, data,
            why="overlayfs: the image's layers are the read-only lowerdirs (top first); "
                "every write lands in this container's upperdir")


def attach_idmapped(rootfs: str, mount_fd: int) -> None:
    m.move_mount(mount_fd, rootfs)
    os.close(mount_fd)


def _mkdir_target(path: str, is_file: bool) -> None:
    if os.path.lexists(path):
        return
    if is_file:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a"):
            pass
    else:
        os.makedirs(path, exist_ok=True)


def mount_one(rootfs: str, entry: dict, in_userns: bool) -> None:
    dest = securejoin(rootfs, entry["destination"])
    flags, data = parse_options(entry.get("options", []))
    kind = entry.get("type") or ("bind" if flags & m.BIND else "")
    if kind == "bind" or flags & m.BIND:
        source = entry["source"]
        _mkdir_target(dest, not os.path.isdir(source))
        flags |= m.BIND
        m.mount(source, dest, None, flags & (m.BIND | m.REC),
                why=f"bind the host's {source} into the container at {entry['destination']}")
        if flags & m.RDONLY:
            remount_readonly(dest, f"make {entry['destination']} read-only as asked")
        return
    _mkdir_target(dest, False)
    if kind == "cgroup":
        CgroupMounts(rootfs, entry).mount(rootfs)
        return
    why = _MOUNT_WHY.get(entry["destination"], f"a {kind} filesystem at {entry['destination']}")
    try:
        m.mount(entry.get("source") or kind, dest, kind, flags, data or None, why=why)
    except PermissionError:
        if kind != "sysfs":
            raise
        # sysfs may only be mounted by the owner of the network namespace; with a user
        # namespace and --net=host, bind the host's /sys read-only instead (as runc does).
        m.mount("/sys", dest, None, m.BIND | m.REC,
                why="sysfs cannot be mounted here (network namespace not ours): bind /sys")
        remount_readonly(dest, "keep /sys read-only")


_MOUNT_WHY = {
    "/proc": "a fresh procfs that lists only the processes of the new PID namespace",
    "/dev": "a private /dev on tmpfs: the container sees only the devices minibox puts there",
    "/dev/pts": "a new devpts instance: the container's ptys are its own",
    "/dev/shm": "POSIX shared memory, private to the container",
    "/dev/mqueue": "a mqueue filesystem showing the new IPC namespace's message queues",
    "/sys": "sysfs, read-only: the container may look at devices but not reconfigure them",
}


class CgroupMounts:
    """The container's view of /sys/fs/cgroup, as docker gives it (read-only), in two
    halves: `prepare` (the tmpfs and a mount point per hierarchy) needs nothing, so the
    child does it while the parent is still making its cgroups; `mount` (the hierarchies
    themselves) must wait until the child has entered its cgroup namespace, so that each
    hierarchy's root is the container's own group: `cat
    /sys/fs/cgroup/memory/memory.limit_in_bytes` inside shows the container's limit
    (cgroup_namespaces(7))."""

    def __init__(self, rootfs: str, entry: dict) -> None:
        self.where = entry["destination"]  # in the container
        self.flags, _ = parse_options(entry.get("options", []))
        self.points: list[tuple[str, str, str | None, str]] = []  # dest, type, data, why
        self.tmpfs = False  # v1 and hybrid: the hierarchies' mount points are on a tmpfs
        dest = securejoin(rootfs, self.where)
        _mkdir_target(dest, False)
        from minibox.cgroups.detect import detect

        lay = detect()
        if lay.kind == "v2":
            self.points.append(("", "cgroup2", None, "the unified cgroup hierarchy, rooted "
                                "at the container's own group"))
            return
        m.mount("tmpfs", dest, "tmpfs", self.flags & ~m.RDONLY, "mode=755",
                why="a tmpfs to hold one mount point per cgroup v1 hierarchy")
        self.tmpfs = True
        by_mount: dict[str, list[str]] = {}
        for ctrl, mnt in lay.v1.items():
            by_mount.setdefault(mnt, []).append(ctrl)
        for mnt, ctrls in by_mount.items():
            name = os.path.basename(mnt)
            os.mkdir(os.path.join(dest, name))
            self.points.append((name, "cgroup", ",".join(sorted(ctrls)),
                                f"the v1 {'+'.join(sorted(ctrls))} hierarchy, rooted at the "
                                "container's own group"))
        if lay.unified:
            os.mkdir(os.path.join(dest, "unified"))
            self.points.append(("unified", "cgroup2", None,
                                "the unified (v2) hierarchy of this hybrid host"))

    def mount(self, rootfs: str = "/") -> None:
        """Mount the hierarchies (after unshare(CLONE_NEWCGROUP)); `rootfs` is where the
        container's root is now: "/" once pivot_root is done."""
        dest = securejoin(rootfs, self.where)
        for name, kind, data, why in self.points:
            m.mount(kind, os.path.join(dest, name) if name else dest, kind, self.flags,
                    data, why=why)
        if self.tmpfs and self.flags & m.RDONLY:
            remount_readonly(dest, "/sys/fs/cgroup read-only: limits are set from outside")


def remount_readonly(path: str, why: str) -> None:
    """Remount a bind mount read-only, keeping the flags it already has.

    Inside a user namespace the kernel refuses to clear nosuid/nodev/noexec/atime flags
    that a more privileged namespace set ("locked" flags, mount_namespaces(7)).
    """
    st = os.statvfs(path)
    keep = 0
    for bit, flag in ((os.ST_NOSUID, m.NOSUID), (os.ST_NODEV, m.NODEV),
                      (os.ST_NOEXEC, m.NOEXEC), (os.ST_RELATIME, m.RELATIME)):
        if st.f_flag & bit:
            keep |= flag
    m.mount(None, path, None, m.REMOUNT | m.BIND | m.RDONLY | keep, why=why)


def populate_dev(rootfs: str, in_userns: bool, console: str | None,
                 extra: list[dict] | None = None) -> None:
    """Create the default device nodes in the container's /dev.

    mknod(2) is refused inside a user namespace, so there the host's nodes are bound
    instead (runc does the same).
    """
    dev = os.path.join(rootfs, "dev")
    old = os.umask(0)
    try:
        for name, major, minor in DEVICES:
            path = os.path.join(dev, name)
            if in_userns:
                with open(path, "a"):
                    pass
                m.mount(f"/dev/{name}", path, None, m.BIND,
                        why=f"/dev/{name}: mknod is not allowed in a user namespace, bind it")
            else:
                os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        for name, target in DEV_LINKS:
            os.symlink(target, os.path.join(dev, name))
        for d in extra or []:
            path = securejoin(rootfs, d["path"])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if in_userns:
                with open(path, "a"):
                    pass
                m.mount(d["hostPath"], path, None, m.BIND,
                        why=f"--device {d['path']}: bound from the host (no mknod in a userns)")
            else:
                kind = stat.S_IFCHR if d["type"] == "c" else stat.S_IFBLK
                os.mknod(path, d.get("fileMode", 0o666) | kind,
                         os.makedev(d["major"], d["minor"]))
        if console:
            path = os.path.join(dev, "console")
            with open(path, "a"):
                pass
            m.mount(console, path, None, m.BIND,
                    why="/dev/console is the container's terminal (runtime-spec: terminal)")
    finally:
        os.umask(old)


def pivot(rootfs: str) -> None:
    os.chdir(rootfs)
    # pivot_root(".", ".") stacks the old root on top of the new one at the same place;
    # unmounting "." then detaches the old root, and no put_old directory is needed
    # (pivot_root(2), NOTES) — so it works with a read-only rootfs too.
    m.pivot_root(".", ".", why="make the rootfs the container's /; the host's / becomes the "
                               "old root, stacked on top")
    m.umount(".", m.DETACH, why="detach the old root: the host's files are gone from the "
                                "container's view")
    os.chdir("/")


def mask_paths(masked: list[str], readonly: list[str]) -> None:
    """Docker's default masks: hide kernel interfaces a container has no business reading."""
    for path in masked:
        if not os.path.exists(path):
            continue
        if os.path.isdir(path):
            m.mount("tmpfs", path, "tmpfs", m.RDONLY, None,
                    why=f"mask {path}: an empty read-only tmpfs hides it")
        else:
            m.mount("/dev/null", path, None, m.BIND,
                    why=f"mask {path}: /dev/null bound over it reads as empty")
    for path in readonly:
        if not os.path.exists(path):
            continue
        m.mount(path, path, None, m.BIND | m.REC,
                why=f"{path}: bind onto itself to make it read-only next")
        remount_readonly(path, f"{path} read-only: the container may read but not change it")
