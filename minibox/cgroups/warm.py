"""Start the kernel's cgroup-migration wait early, while Python is still loading.

Moving a process into a cgroup (a write to cgroup.procs) takes the global
cgroup_threadgroup_rwsem for writing. When that lock has been idle, taking it waits
for a full RCU grace period (rcu_sync_enter() calls synchronize_rcu(); kernel/rcu/
sync.c): about 10 ms on this kind of machine, the biggest single cost of starting a
container, for runc and crun as much as for minibox. For a grace period after a
writer leaves, the next writer does not wait.

So `minibox run` first has a forked helper re-join its own cgroup (a move to where it
already is, which changes nothing), at once; the wait then overlaps with minibox's
imports, checks and the container's first mounts, and the container's real move,
moments later, is quick. A process, not a thread: no thread may exist at clone(2).
"""

from __future__ import annotations

import os

_pid = 0
_path = ""
_told = False
_keep_fd = -1  # the launcher's helper keeps the lock warm until this pipe closes


def _own_procs_file() -> str:
    """cgroup.procs of our own group in one hierarchy (any: the lock is global)."""
    with open("/proc/self/cgroup") as f:
        for line in f.read().splitlines():
            _id, ctrls, path = line.split(":", 2)
            for name in ctrls.split(",") if ctrls else ["unified", ""]:
                base = f"/sys/fs/cgroup/{name}" if name else "/sys/fs/cgroup"
                candidate = f"{base}{path.rstrip('/')}/cgroup.procs"
                if os.path.exists(candidate):
                    return candidate
    return ""


def start() -> None:
    global _pid, _path, _keep_fd
    given = os.environ.pop("MINIBOX_WARM", "")
    if given:
        # The C launcher (csrc/launcher.c) forked the helper before Python started.
        pid, fd, _path = given.split(":", 2)
        _pid, _keep_fd = int(pid), int(fd)
        os.set_inheritable(_keep_fd, False)
        _narrate_fork()
        return
    _path = _own_procs_file()
    if not _path:
        return
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(_path, os.O_WRONLY | os.O_CLOEXEC)
            os.write(fd, str(os.getpid()).encode())
        except OSError:
            pass  # only an optimisation: the real move works without it
        os._exit(0)
    _pid = pid
    _narrate_fork()


def _narrate_fork() -> None:
    from minibox import explain

    explain.step("clone(SIGCHLD)", _pid, "fork a helper that re-joins minibox's own cgroup, "
                 "to start the kernel's wait before any cgroup move", "fork(2)")


def tell() -> None:
    """Narrate the helper's step, once, where the cgroup steps begin."""
    global _told
    if not _pid or _told:
        return
    _told = True
    from minibox import explain

    explain.step(f'write {_path} "{_pid}" (by a helper forked at start)', "ok",
                 "re-join our own cgroup early: the kernel's wait for an RCU grace period "
                 "before a cgroup move then overlaps with loading minibox", "cgroups(7)")


def release() -> None:
    """The container has been moved: the launcher's helper may stop and exit."""
    global _keep_fd
    if _keep_fd >= 0:
        os.close(_keep_fd)
        _keep_fd = -1


def reap() -> None:
    global _pid
    release()
    if _pid:
        try:
            os.waitpid(_pid, 0)
        except ChildProcessError:
            pass
        _pid = 0
