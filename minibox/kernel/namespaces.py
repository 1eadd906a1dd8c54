"""Namespaces: clone(2) into new ones, unshare(2), setns(2), and sethostname(2) for UTS."""

from __future__ import annotations

from minibox._native import lib
from minibox.kernel.syscall import native

# The namespaces minibox knows, by the name docker and /proc/PID/ns use.
FLAGS: dict[str, int] = {
    "mnt": lib.CLONE_NEWNS,
    "uts": lib.CLONE_NEWUTS,
    "ipc": lib.CLONE_NEWIPC,
    "pid": lib.CLONE_NEWPID,
    "net": lib.CLONE_NEWNET,
    "user": lib.CLONE_NEWUSER,
    "cgroup": lib.CLONE_NEWCGROUP,
}

_NAMES = {
    lib.CLONE_NEWUSER: "CLONE_NEWUSER",
    lib.CLONE_NEWNS: "CLONE_NEWNS",
    lib.CLONE_NEWUTS: "CLONE_NEWUTS",
    lib.CLONE_NEWIPC: "CLONE_NEWIPC",
    lib.CLONE_NEWPID: "CLONE_NEWPID",
    lib.CLONE_NEWNET: "CLONE_NEWNET",
    lib.CLONE_NEWCGROUP: "CLONE_NEWCGROUP",
}

# One line per namespace for --explain: what the new namespace isolates.
WHY = {
    "user": "a user namespace maps container root to an unprivileged host uid range",
    "mnt": "a mount namespace gives the container its own mount table",
    "uts": "a UTS namespace gives the container its own hostname",
    "ipc": "an IPC namespace hides the host's SysV IPC objects and POSIX message queues",
    "pid": "a PID namespace makes the command PID 1 and hides the host's processes",
    "net": "a network namespace gives the container its own interfaces (only lo here)",
    "cgroup": "a cgroup namespace makes the container see its own cgroup as /",
}


def flag_names(flags: int) -> str:
    names = [name for bit, name in _NAMES.items() if flags & bit]
    return "|".join(names + ["SIGCHLD"])


def clone(namespaces: list[str]) -> int:
    """Create a child in new namespaces; returns the child's pid in the parent, 0 in the child.

    The child carries on in Python like after os.fork() (see csrc/native.c).
    """
    flags = 0
    for ns in namespaces:
        flags |= FLAGS[ns]
    why = "; ".join(WHY[ns] for ns in namespaces) or "a plain child process"
    return native(lib.mb_clone, (flags,), f"clone({flag_names(flags)})", why, "clone(2)",
                  silent_zero=True)


def setns(fd: int, ns: str, path: str, why: str | None = None) -> None:
    native(
        lib.mb_setns,
        (fd, FLAGS[ns]),
        f"setns({path}, {_NAMES[FLAGS[ns]]})",
        why or f"join the container's {ns} namespace",
        "setns(2)",
    )


def unshare(namespaces: list[str]) -> None:
    flags = 0
    for ns in namespaces:
        flags |= FLAGS[ns]
    native(
        lib.mb_unshare,
        (flags,),
        f"unshare({flag_names(flags).replace('|SIGCHLD', '')})",
        "; ".join(WHY[ns] for ns in namespaces),
        "unshare(2)",
    )


def sethostname(name: str) -> None:
    raw = name.encode()
    native(
        lib.mb_sethostname,
        (raw, len(raw)),
        f'sethostname("{name}")',
        "set the hostname inside the new UTS namespace; the host's stays as it is",
        "sethostname(2)",
    )
