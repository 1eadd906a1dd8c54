"""Run a container in the foreground: create it, forward signals, wait, clean up."""

from __future__ import annotations

# The signal module is _signal plus enum wrappers for the numbers; enum alone costs
# several milliseconds of import on the run path, and plain ints are all we need.
import _signal as signal
import os

from minibox.errors import MiniboxError
from minibox.runtime import process

STATE_ROOT = "/run/minibox"
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
              signal.SIGUSR1, signal.SIGUSR2)


def exit_code(status: int) -> int:
    """docker's convention: the command's code, or 128+N when signal N killed it."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def run(spec: dict, *, overlay: bool = False, tty: bool = False, store: object = None,
        name: str = "") -> int:
    """Run the container described by `spec` to its end; return its exit code.

    With a state `store`, the container is listed by `ps` and reachable by `exec` while
    it runs, and removed when it ends (a foreground run is always `--rm`).
    """
    target = {"pid": 0}
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        # Only the parent forwards; a child still between clone and execve ignores it.
        if target["pid"] and os.getpid() == parent_pid:
            try:
                os.kill(target["pid"], signum)
            except ProcessLookupError:
                pass
        elif os.getpid() == parent_pid:
            pending.append(signum)

    parent_pid = os.getpid()
    from minibox.cgroups.driver import open_group

    cid = spec["annotations"]["minibox.id"]
    group = open_group(cid)
    res = spec["linux"].get("resources") or {}
    group.check(res)  # refuse what the host cannot do before anything exists
    record = None
    attach = None
    scratch = None
    if store is not None:
        from minibox.runtime.container import new_state

        state = new_state(spec, name, {"autoremove": True})
        networked = "minibox.network" in spec["annotations"]
        if networked:
            from minibox.network import endpoint

            attach = endpoint.attacher(store.path(cid), cid, spec)
        if overlay:
            scratch = store.path(cid, "overlay")

        def record() -> None:
            # The container's directory: state, the overlay's scratch space, the network
            # plan. spawn makes it while the new child starts up, before the child may
            # mount anything and before any cgroup exists, so a minibox killed at any
            # point leaves nothing that `ps` cannot show or `rm` cannot remove.
            store.create(cid, name, state, spec)
            if scratch:
                os.mkdir(scratch)
            if networked:
                endpoint.prepare(store.path(cid), cid, name, spec)
    elif overlay:
        scratch = _scratch_dir()
    old = {s: signal.signal(s, forward) for s in _FORWARDED}
    pty = None
    try:
        if tty:
            from minibox.runtime.tty import Pty

            pty = Pty()
            spec["process"]["terminal"] = True
        child = process.spawn(spec, tty_slave=pty.slave if pty else None, scratch=scratch,
                              group=group, resources=res, network=attach, record=record)
        target["pid"] = child.pid
        if pty:
            pty.start()
        if child.error:
            os.waitpid(child.pid, 0)
            raise child.error
        if store is not None:
            from minibox.runtime.state import now, proc_start_time

            state.update(status="running", pid=child.pid, startedAt=now(),
                         pidStart=proc_start_time(child.pid), monitorPid=parent_pid,
                         monitorStart=proc_start_time(parent_pid))
            with store.replace(cid, state):
                pass
        for signum in pending:
            os.kill(child.pid, signum)
        if pty:
            try:
                pty.relay()
            finally:
                pty.restore()
        _, status = os.waitpid(child.pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL \
                and group.oom_killed():
            import sys

            sys.stderr.write("minibox: killed by the kernel's OOM killer "
                             f"(memory limit {_mib(group.memory_limit())})\n")
        return exit_code(status)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if pty:
            pty.restore()
        group.remove()
        from minibox.cgroups import warm

        warm.reap()
        if store is not None:
            store.remove(cid, state)
        elif scratch:
            os.rmdir(scratch)  # the tmpfs on it vanished with the container's mounts


def _scratch_dir() -> str:
    import tempfile

    os.makedirs(STATE_ROOT, exist_ok=True)
    return tempfile.mkdtemp(prefix="overlay-", dir=STATE_ROOT)


def _mib(n: int) -> str:
    if n < 0:
        return "none"
    return f"{n / (1 << 20):g}MiB"


def check_rootfs(path: str) -> str:
    if not os.path.exists(path):
        raise MiniboxError(f"rootfs {path} does not exist (build one with: minibox mkrootfs DIR)")
    if not os.path.isdir(path):
        raise MiniboxError(f"rootfs {path} is not a directory (give an extracted root filesystem)")
    return os.path.realpath(path)
