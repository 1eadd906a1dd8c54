"""The child side of container creation: what runs between clone(2) and execve(2).

Order follows runc's standard_init_linux.go (OCI-NOTES.md): wait for the parent,
become root of the user namespace, network, mounts and /dev, pivot_root, console,
read-only root, hostname, masked and read-only paths, user, close stray fds, execve.
Nothing else runs here. Errors go back to the parent over the sync socket as one
line, and the child exits with docker's code.
"""

from __future__ import annotations

import os

from minibox.errors import MiniboxError
from minibox.kernel import namespaces, netdev, process
from minibox.runtime import rootfs as rfs
from minibox.runtime.spec import has_namespace

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time on the hot path
    from typing import NoReturn


class Go:
    """How the parent releases the child: a pipe, or a unix socket that also carries an fd.

    Two messages: "G" once the id maps are written (the child may start its mounts), "J"
    once the child is in its cgroup. Moving a process between cgroups waits for an RCU
    grace period in the kernel (about 10 ms here, for runc and crun too), so the child
    does its mounts meanwhile instead of waiting for it.
    """

    def __init__(self, fd: int | None = None, sock: object = None) -> None:
        self.fd = fd
        self.sock = sock

    def wait(self) -> int | None:
        """Block until the parent has done its part; returns the idmapped rootfs fd if sent."""
        if self.sock is not None:
            import socket

            msg, fds, _flags, _addr = socket.recv_fds(self.sock, 1, 1)
        else:
            msg, fds = os.read(self.fd, 1), []
        if msg != b"G":
            os._exit(125)  # the parent went away before releasing us
        return fds[0] if fds else None

    def wait_joined(self) -> None:
        msg = self.sock.recv(1) if self.sock is not None else os.read(self.fd, 1)
        if self.sock is not None:
            self.sock.close()
        else:
            os.close(self.fd)
        if msg != b"J":
            os._exit(125)


def _find_command(argv0: str, env: list[str]) -> str:
    if "/" in argv0:
        return argv0
    path = next((e[5:] for e in env if e.startswith("PATH=")), "")
    for d in path.split(":"):
        candidate = os.path.join(d or ".", argv0)
        if os.path.isfile(candidate):
            return candidate
    raise MiniboxError(f'exec: "{argv0}": executable file not found in $PATH', 127)


def _exec(proc: dict, path: str) -> NoReturn:
    args = proc["args"]
    try:
        process.execve(path, args, proc["env"])
    except FileNotFoundError:
        raise MiniboxError(f'exec: "{args[0]}": no such file or directory', 127) from None
    except (PermissionError, IsADirectoryError):
        raise MiniboxError(f'exec: "{args[0]}": permission denied', 126) from None
    except OSError as err:
        raise MiniboxError(f'exec: "{args[0]}": {err.strerror}', 126) from None
    raise AssertionError("unreachable")


def _setup(spec: dict, go: Go, report: int, tty_fd: int | None,
           scratch: str | None) -> NoReturn:
    idmapped_fd = go.wait()
    in_userns = has_namespace(spec, "user")
    if in_userns:
        # After the parent wrote the maps we are still the overflow uid; become
        # root of the new user namespace (user_namespaces(7)).
        process.setresgid(0, "become root of the user namespace (group)")
        process.setresuid(0, "become root of the user namespace")

    for ns in spec["linux"]["namespaces"]:
        if ns.get("path"):  # --network container:ID: join the other's (setns(2))
            from minibox.runtime.spec import NS_TYPES

            fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
            namespaces.setns(fd, NS_TYPES[ns["type"]], ns["path"])
            os.close(fd)

    if has_namespace(spec, "net"):
        netdev.link_up("lo")

    root = spec["root"]["path"]
    fifo = spec["annotations"].get("minibox.execFifo")
    fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC) if fifo else None
    if has_namespace(spec, "mnt"):
        rfs.make_private()
        image = spec["annotations"].get("minibox.overlay")
        if image:
            rfs.image_rootfs(root, spec["annotations"]["minibox.rwdir"], image)
        elif idmapped_fd is not None:
            rfs.attach_idmapped(root, idmapped_fd)
        else:
            rfs.bind_rootfs(root)
        if scratch:
            rfs.overlay_rootfs(root, scratch)
        later = []
        for entry in spec["mounts"]:
            if entry.get("type") == "cgroup":
                later.append(entry)  # last: on top of /sys, whatever the list's order
            else:
                rfs.mount_one(root, entry, in_userns)
        if any(e["destination"] == "/dev" for e in spec["mounts"]):
            rfs.populate_dev(root, in_userns,
                             os.ttyname(tty_fd) if tty_fd is not None else None,
                             spec["linux"].get("devices"))
        # The mount points now; the hierarchies once in the cgroup namespace.
        cgroup_mounts = [rfs.CgroupMounts(root, entry) for entry in later]
        # Everything that does not need the cgroup is done before waiting for it: the
        # parent is making the container's groups meanwhile, and that is the longer part.
        rfs.pivot(root)
        cwd = spec["process"].get("cwd") or "/"
        if cwd != "/" and spec["annotations"].get("minibox.overlay"):
            # An image's WorkingDir may not exist in its layers: docker creates it.
            os.makedirs(cwd, 0o755, exist_ok=True)
        if spec["root"].get("readonly"):
            rfs.remount_readonly("/", "--read-only: the container's root filesystem is read-only")

    if has_namespace(spec, "uts") and spec.get("hostname"):
        namespaces.sethostname(spec["hostname"])

    if has_namespace(spec, "mnt"):
        rfs.mask_paths(spec["linux"].get("maskedPaths", []),
                       spec["linux"].get("readonlyPaths", []))

    go.wait_joined()
    if has_namespace(spec, "cgroup"):
        # Only now: the namespace's root is the cgroup the process is in at unshare time.
        namespaces.unshare(["cgroup"])
    if has_namespace(spec, "mnt"):
        for mounts in cgroup_mounts:
            mounts.mount("/")

    if tty_fd is not None:
        process.take_terminal(tty_fd)

    proc = spec["process"]
    user = proc["user"]
    if not in_userns:
        process.setgroups(list(user.get("additionalGids", [])))
    if user["gid"] != 0 or in_userns:
        process.setresgid(user["gid"], "run the command with the requested group")
    if user["uid"] != 0 or in_userns:
        process.setresuid(user["uid"], "run the command as the requested user")
    cwd = proc.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as err:
        raise MiniboxError(f"cannot change to working directory {cwd}: {err.strerror}",
                           125) from None

    # Close every descriptor the command should not inherit (CVE-2024-21626: a leaked
    # host directory fd lets the container walk out of its root). The report pipe is
    # close-on-exec: its closing tells the parent that execve succeeded.
    keep = sorted(fd for fd in (report, fifo_fd) if fd is not None)
    low = 3
    for fd in keep:
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)
    path = _find_command(proc["args"][0], proc["env"])
    # Python ignores SIGPIPE and SIGXFSZ for itself; an ignored signal stays ignored
    # across execve(2), so give the command the defaults it expects (signal(7)).
    import _signal

    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)
    if fifo_fd is not None:
        _wait_for_start(report, fifo_fd)
    _exec(proc, path)


def _wait_for_start(report: int, fifo_fd: int) -> None:
    """`create` stops here: tell the parent we are ready, then block until `start`.

    Opening a FIFO for writing blocks until someone opens it for reading (fifo(7)):
    `minibox start` does, which lets the command run (runc's exec fifo). The FIFO lives
    outside the new root, so it is reopened through /proc/self/fd.
    """
    os.write(report, b"R")
    fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fd)
    os.close(fifo_fd)


def main(spec: dict, go: Go, report: int, tty_fd: int | None, scratch: str | None) -> NoReturn:
    """Entry point of the cloned child; never returns."""
    try:
        _setup(spec, go, report, tty_fd, scratch)
    except MiniboxError as err:
        _report(report, err.code, err.message)
    except OSError as err:
        where = f": {err.filename}" if err.filename else ""
        text = f"{err.strerror}{where}" if err.strerror else str(err)
        _report(report, 125, f"container setup failed: {text}")
    except BaseException as err:  # noqa: BLE001 - the child must never unwind into the CLI
        _report(report, 125, f"container setup failed: {err!r}")
    os._exit(125)


def _report(fd: int, code: int, message: str) -> NoReturn:
    try:
        os.write(fd, f"{code}\t{message}".encode())
    except OSError:
        pass
    os._exit(code)
