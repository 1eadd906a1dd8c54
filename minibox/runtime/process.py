"""The parent side of container creation (runc: process_linux.go).

The parent prepares, clones the child into its new namespaces, writes the user
namespace maps and makes the idmapped rootfs while the child waits, then releases it
over a sync socket and learns whether execve succeeded (the socket is close-on-exec in
the child: EOF means the command is running; a line means it failed and why).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from minibox.errors import MiniboxError
from minibox.kernel import mounts, namespaces, userns
from minibox.runtime import init  # imported before clone so the child has it already
from minibox.runtime.spec import has_namespace, namespaces_of


@dataclass
class Child:
    pid: int
    error: MiniboxError | None = None


def spawn(spec: dict, *, tty_slave: int | None = None, scratch: str | None = None) -> Child:
    """Clone the container's init, set it up from the parent's side, and let it run.

    Returns once the child has exec'd its command or failed trying.
    """
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = namespaces.clone(namespaces_of(spec))
    if pid == 0:  # the child: never returns
        parent_sock.close()
        init.main(spec, child_sock, tty_slave, scratch)
    child_sock.close()
    mount_fd = None
    try:
        if has_namespace(spec, "user"):
            lin = spec["linux"]
            userns.write_maps(pid, lin["uidMappings"], lin["gidMappings"])
            if has_namespace(spec, "mnt"):
                mount_fd = _idmapped_rootfs(spec["root"]["path"], pid)
        fds = [mount_fd] if mount_fd is not None else []
        socket.send_fds(parent_sock, [b"G"], fds)
        reply = parent_sock.recv(4096)
    except BaseException:
        _kill_and_reap(pid)
        raise
    finally:
        if mount_fd is not None:
            os.close(mount_fd)
        parent_sock.close()
    child = Child(pid)
    if reply:
        code, _, message = reply.decode(errors="replace").partition("\t")
        child.error = MiniboxError(message, int(code))
    return child


def _idmapped_rootfs(path: str, pid: int) -> int:
    """An idmapped copy of the rootfs: host uid 0 shows as the container's root.

    Without it container root (host uid 100000) could not write to, or even pivot into,
    a rootfs owned by host root. Nothing on disk changes (mount_setattr(2), MOUNT_ATTR_IDMAP).
    """
    fd = mounts.open_tree_clone(path)
    try:
        mounts.idmap(fd, f"/proc/{pid}/ns/user")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
