"""`exec`: run another process inside a running container (runc: setns_init_linux.go).

The new process joins the container's cgroup, then each of its namespaces with
setns(2), then forks once more: joining a PID namespace only applies to children
(pid_namespaces(7)). Joining the mount namespace also puts the process at the
container's root (setns(2), CLONE_NEWNS).
"""

from __future__ import annotations

import _signal
import os

from minibox.errors import MiniboxError
from minibox.kernel import namespaces, process

# Imported now, not later: after setns(CLONE_NEWNS) every path, Python's own modules
# included, resolves inside the container.
from minibox.runtime.init import _exec, _find_command
from minibox.runtime.run import exit_code
from minibox.runtime.state import Store, refresh

# Join order: the user namespace last, so host root keeps its privilege for the others.
ORDER = ("cgroup", "ipc", "uts", "net", "pid", "mnt", "user")
_OCI = {"cgroup": "cgroup", "ipc": "ipc", "uts": "uts", "net": "net", "pid": "pid",
        "mnt": "mnt", "user": "user"}


def exec_in(store: Store, cid: str, proc: dict, *, tty: bool) -> int:
    st = refresh(store.load(cid))
    if st["status"] == "paused":
        raise MiniboxError(f"Error response from daemon: Container {cid} is paused, "
                           "unpause the container before exec", 1)
    if st["status"] != "running":
        raise MiniboxError(f"Error response from daemon: Container {cid} is not running", 1)
    pid = st["pid"]
    fds = []
    for ns in ORDER:
        path = f"/proc/{pid}/ns/{ns}"
        try:
            if os.readlink(path) == os.readlink(f"/proc/self/ns/{ns}"):
                continue  # shared with the host (--net=host...): nothing to join
            fds.append((ns, path, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
        except FileNotFoundError:
            raise MiniboxError(f"Error response from daemon: Container {cid} is not running",
                               1) from None
    from minibox.cgroups.driver import open_group

    group = open_group(cid)
    pty = None
    sock = peer = None
    if tty:
        import socket

        from minibox.runtime.tty import Pty

        sock, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    child = os.fork()
    if child == 0:
        try:
            if sock is not None:
                sock.close()
            _join_and_exec(group, fds, proc, peer)
        except MiniboxError as err:
            os.write(2, f"minibox: {err.message}\n".encode())
            os._exit(err.code)
        except BaseException as err:  # noqa: BLE001 - never unwind into the CLI
            os.write(2, f"minibox: exec failed: {err}\n".encode())
            os._exit(126)
    for _ns, _path, fd in fds:
        os.close(fd)
    if sock is not None:
        peer.close()
        try:
            _msg, got, _flags, _addr = socket.recv_fds(sock, 1, 1)
        finally:
            sock.close()
        if got:
            pty = Pty(master=got[0])
    if pty:
        pty.start()
        try:
            pty.relay()
        finally:
            pty.restore()
    _, status = os.waitpid(child, 0)
    return exit_code(status)


def _join_and_exec(group: object, fds: list, proc: dict, tty_sock: object) -> None:
    group.add(os.getpid(), "the exec'd process joins the container's group first, so its "
                           "limits and accounting apply")
    for ns, path, fd in fds:
        namespaces.setns(fd, _OCI[ns], path)
        os.close(fd)
    tty_slave = None
    if tty_sock is not None:
        # Open the pty now, inside the container's mount namespace: it comes from the
        # container's own devpts, so `tty` in there can name it (/dev/pts/N). The master
        # side goes to the CLI over the socket, which relays it (runc's console socket).
        import socket

        master, tty_slave = os.openpty()
        socket.send_fds(tty_sock, [b"T"], [master])
        os.close(master)
        tty_sock.close()
    grandchild = os.fork()
    if grandchild:
        _, status = os.waitpid(grandchild, 0)
        os._exit(exit_code(status))

    if tty_slave is not None:
        process.take_terminal(tty_slave)
    user = proc["user"]
    try:
        os.setgroups([])
    except PermissionError:
        pass  # inside a user namespace with setgroups denied
    os.setresgid(user["gid"], user["gid"], user["gid"])
    os.setresuid(user["uid"], user["uid"], user["uid"])
    try:
        os.chdir(proc.get("cwd") or "/")
    except OSError as err:
        raise MiniboxError(f"cannot change to working directory {proc.get('cwd')}: "
                           f"{err.strerror}", 126) from None
    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)
    _exec(proc, _find_command(proc["args"][0], proc["env"]))
