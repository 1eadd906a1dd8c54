"""The parent side of container creation (runc: process_linux.go).

The parent prepares, clones the child into its new namespaces, writes the user
namespace maps and makes the idmapped rootfs while the child waits, then releases it
and learns whether execve succeeded. Two pipes carry this: "go" from parent to child,
and a report pipe that is close-on-exec in the child, so EOF means the command is
running and a line means it failed and why. With a user namespace the go message
travels over a unix socket instead, because it carries the idmapped rootfs as a file
descriptor (SCM_RIGHTS, unix(7)); the socket module costs import time that the plain
path does not pay.
"""

from __future__ import annotations

import os

from minibox.errors import MiniboxError
from minibox.kernel import mounts, namespaces, userns
from minibox.runtime import init  # imported before clone so the child has it already
from minibox.runtime.spec import has_namespace, namespaces_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class Child:
    def __init__(self, pid: int, error: MiniboxError | None = None,
                 waiting: bool = False) -> None:
        self.pid = pid
        self.error = error
        self.waiting = waiting  # created: blocked before execve until `start`


def spawn(spec: dict, *, tty_slave: int | None = None, scratch: str | None = None,
          group: object = None, resources: dict | None = None,
          network: Callable[[int], None] | None = None,
          record: Callable[[], None] | None = None) -> Child:
    """Clone the container's init, set it up from the parent's side, and let it run.

    `record()` writes the container's record on disk; it runs right after the clone,
    while the new child is still starting up (its first moments are mostly copy-on-write
    faults), and before the child is let go or any cgroup is made.

    `group` (a cgroups Driver, from driver.open_group) is created with `resources`
    while the child does its first mounts, and gets the child before the child may go
    on; `network(pid)` then plugs the child's network namespace in
    (network/endpoint.py). Returns once the child has exec'd its command or failed
    trying.
    """
    with_userns = has_namespace(spec, "user")
    report_r, report_w = os.pipe()  # both ends close-on-exec (os.pipe's default)
    if with_userns:
        import socket

        go_parent, go_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        go = init.Go(sock=go_child)
    else:
        go_r, go_w = os.pipe()
        go = init.Go(fd=go_r)
    if group is not None:
        # Before the clone: a v1 hierarchy minibox has to mount for this container must
        # be in the mount namespace the child copies, or /sys/fs/cgroup inside lacks it.
        group.mount_missing(resources or {})  # type: ignore[attr-defined]
        # Load the controller modules now: after the clone the parent's cgroup work is
        # what the child waits for, and every page Python writes there first takes a
        # copy-on-write fault (the child shares them until it execs).
        group.preload(resources or {})  # type: ignore[attr-defined]
    # The cgroup namespace is unshared by the child after it has joined its group, so
    # that the group is its root "/" (runc does the same; cgroup_namespaces(7)).
    pid = namespaces.clone([ns for ns in namespaces_of(spec) if ns != "cgroup"])
    if pid == 0:  # the child: never returns
        os.close(report_r)
        if with_userns:
            go_parent.close()
        else:
            os.close(go_w)
        init.main(spec, go, report_w, tty_slave, scratch)
    os.close(report_w)
    mount_fd = None
    try:
        if record is not None:
            record()
        if with_userns:
            go_child.close()
            lin = spec["linux"]
            userns.write_maps(pid, lin["uidMappings"], lin["gidMappings"])
            if has_namespace(spec, "mnt"):
                mount_fd = _idmapped_rootfs(spec["root"]["path"], pid)
            socket.send_fds(go_parent, [b"G"], [mount_fd] if mount_fd is not None else [])
        else:
            os.close(go_r)
            os.write(go_w, b"G")
        # The child mounts while we make its cgroup and move it in; then it may go on.
        if group is not None:
            from minibox.cgroups import warm

            warm.tell()
            group.create(resources or {})
        if network is not None:
            network(pid)  # veth, address, route: ready before the command starts
        try:
            if group is not None:
                group.add(pid)
                warm.release()
            if with_userns:
                go_parent.send(b"J")
            else:
                os.write(go_w, b"J")
        except OSError:
            # If the child failed meanwhile (ESRCH, EPIPE), its report says why.
            reply = _read_all(report_r)
            if not reply or reply == b"R":
                raise
        else:
            reply = os.read(report_r, 4096)
        finally:
            if with_userns:
                go_parent.close()
            else:
                os.close(go_w)
        if reply and reply != b"R":
            reply += _read_all(report_r)
    except BaseException:
        _kill_and_reap(pid)
        raise
    finally:
        if mount_fd is not None:
            os.close(mount_fd)
        os.close(report_r)
    child = Child(pid, waiting=reply == b"R")
    if reply and reply != b"R":
        code, _, message = reply.decode(errors="replace").partition("\t")
        child.error = MiniboxError(message, int(code))
    return child


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


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
