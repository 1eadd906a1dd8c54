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


def run(spec: dict, *, overlay: bool = False, tty: bool = False) -> int:
    """Run the container described by `spec` to its end; return its exit code."""
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
    from minibox.cgroups.driver import Group

    group = Group(spec["annotations"]["minibox.id"])
    res = spec["linux"].get("resources") or {}
    group.check(res)  # refuse what the host cannot do before anything exists
    old = {s: signal.signal(s, forward) for s in _FORWARDED}
    scratch = None
    pty = None
    try:
        group.create(res)
        if overlay:
            import tempfile

            os.makedirs(STATE_ROOT, exist_ok=True)
            scratch = tempfile.mkdtemp(prefix="overlay-", dir=STATE_ROOT)
        if tty:
            from minibox.runtime.tty import Pty

            pty = Pty()
            spec["process"]["terminal"] = True
        child = process.spawn(spec, tty_slave=pty.slave if pty else None, scratch=scratch,
                              group=group)
        target["pid"] = child.pid
        if pty:
            pty.start()
        if child.error:
            _, status = os.waitpid(child.pid, 0)
            raise child.error
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
            limit = group.memory_limit()
            import sys

            sys.stderr.write("minibox: killed by the kernel's OOM killer "
                             f"(memory limit {_mib(limit)})\n")
        return exit_code(status)
    finally:
        group.remove()
        for s, handler in old.items():
            signal.signal(s, handler)
        if pty:
            pty.restore()
        if scratch:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)


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
