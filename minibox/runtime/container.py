"""The container engine: create, start, the monitor hand-off, and what happens at the end.

Daemonless, like podman with conmon: `create` (and `run -d`) double-forks a process that
clones the container's init, records the state, then execs minibox-monitor (C) in place,
so the init's parent is small and outlives the CLI. When the init ends, the monitor
execs `minibox _finish`, which records the exit code, removes the cgroup, and carries
out --rm and --restart.
"""

from __future__ import annotations

import os
import sys

from minibox import explain
from minibox.errors import MiniboxError
from minibox.runtime import process
from minibox.runtime.state import Store, hold_creation, now, proc_start_time

_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MONITOR = os.path.join(_PKG, "minibox-monitor")  # csrc/monitor.c
INIT = os.path.join(_PKG, "minibox-init")  # csrc/init.c


def new_state(spec: dict, name: str, options: dict) -> dict:
    cid = spec["annotations"]["minibox.id"]
    return {
        "ociVersion": spec["ociVersion"], "id": cid, "status": "creating", "pid": 0,
        "bundle": spec["root"]["path"], "rootfs": spec["root"]["path"], "created": now(),
        "owner": "root", "annotations": spec.get("annotations", {}), "name": name,
        "command": spec["process"]["args"], "exitCode": None, "startedAt": None,
        "finishedAt": None, "oomKilled": False, "restartCount": 0,
        "restartPolicy": options.get("restart", {"name": "no", "max": 0}),
        "autoRemove": bool(options.get("autoremove")),
        "tty": bool(spec["process"].get("terminal")), "overlay": bool(options.get("overlay")),
        "limits": spec["linux"].get("resources", {}),
        # Who is making it: if that process dies before a monitor exists, `ps` can tell.
        "creatorPid": os.getpid(), "creatorStart": proc_start_time(os.getpid()),
    }


def create(store: Store, spec: dict, name: str, options: dict, *, start: bool) -> str:
    """Make a container; with start=True it runs at once (run -d), else it waits (create)."""
    from minibox.cgroups.driver import open_group

    cid = spec["annotations"]["minibox.id"]
    res = spec["linux"].get("resources") or {}
    open_group(cid).check(res)
    state = new_state(spec, name, options)
    state["creatorLock"] = store.path(cid, "creator")
    lock = store.create(cid, name, state, spec)
    try:
        try:
            if "minibox.network" in spec["annotations"]:
                from minibox.network import endpoint

                endpoint.prepare(store.path(cid), cid, name, spec)
            _launch(store, cid, start=start)
        finally:
            os.close(lock)
    except BaseException:
        _undo(store, cid)
        raise
    return cid


def _undo(store: Store, cid: str) -> None:
    from minibox.cgroups.driver import open_group

    try:
        open_group(cid).remove()
    finally:
        store.remove(cid)


def _launch(store: Store, cid: str, *, start: bool) -> None:
    """Double-fork the monitor-to-be and learn from it whether the container came up."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setsid()  # no controlling terminal: the monitor outlives this session
            if os.fork():
                os._exit(0)
            _monitor_side(store, cid, w, start=start, restarting=False)
        except BaseException as err:  # noqa: BLE001 - must never return into the CLI
            _send(w, f"125\t{_text(err)}")
        os._exit(125)
    os.close(w)
    os.waitpid(pid, 0)
    chunks = []
    while chunk := os.read(r, 4096):
        chunks.append(chunk)
    os.close(r)
    reply = b"".join(chunks).decode(errors="replace")
    if reply != "ok":
        code, _, message = reply.partition("\t")
        raise MiniboxError(message or "the container's monitor failed to start",
                           int(code) if code.isdigit() else 125)


def _text(err: BaseException) -> str:
    return err.message if isinstance(err, MiniboxError) else f"{err}"


def _send(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode())
        os.close(fd)
    except OSError:
        pass


def _monitor_side(store: Store, cid: str, report: int | None, *, start: bool,
                  restarting: bool) -> None:
    """In the monitor-to-be: clone the init with its output on pipes, record, exec the
    C monitor. `report` (the CLI's pipe) gets "ok" or "CODE\\tmessage"."""
    from minibox.cgroups.driver import open_group

    spec = store.spec(cid)
    res = spec["linux"].get("resources") or {}
    group = open_group(cid)
    with store.locked(cid) as st:
        # From here on this process makes the container, whatever happens to the CLI.
        st.update(creatorPid=os.getpid(), creatorStart=proc_start_time(os.getpid()))
    scratch = None
    if st.get("overlay"):
        scratch = store.path(cid, "overlay")
        os.makedirs(scratch, exist_ok=True)
    if not start:
        fifo = store.path(cid, "exec.fifo")
        if not os.path.exists(fifo):
            os.mkfifo(fifo, 0o600)
        spec["annotations"]["minibox.execFifo"] = fifo
    if explain.enabled():
        explain.enable(os.dup(2))  # keep narrating to the CLI's stderr, not to the log
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    tty = None
    if st.get("tty"):
        from minibox.runtime.tty import Pty

        tty = Pty()
        out_r, err_r = tty.master, os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.close(out_w)
        os.close(err_w)
    os.close(null)
    attach = None
    if "minibox.network" in spec["annotations"]:
        from minibox.network import endpoint

        attach = endpoint.attacher(store.path(cid), cid, spec)
    try:
        child = process.spawn(spec, tty_slave=tty.slave if tty else None, scratch=scratch,
                              group=group, resources=res, network=attach)
    except BaseException:
        group.remove()
        raise
    if tty:
        os.close(tty.slave)
    if child.error:
        os.waitpid(child.pid, 0)
        group.remove()
        raise child.error
    try:
        _record_started(store, cid, child, restarting)
    except BaseException:
        # Removed (rm -f) while we were making it: leave nothing behind.
        os.kill(child.pid, 9)
        os.waitpid(child.pid, 0)
        group.remove()
        raise
    if report is not None:
        _send(report, "ok")
    _exec_monitor(store, cid, child, out_r, err_r)


def _record_started(store: Store, cid: str, child: process.Child, restarting: bool) -> None:
    with store.locked(cid) as cur:
        cur.update(pid=child.pid, pidStart=proc_start_time(child.pid), detached=True,
                   monitorPid=os.getpid(), monitorStart=proc_start_time(os.getpid()),
                   status="created" if child.waiting else "running",
                   exitCode=None, finishedAt=None, oomKilled=False)
        if not child.waiting:
            cur["startedAt"] = now()
        if restarting:
            cur["restartCount"] = cur.get("restartCount", 0) + 1


def _exec_monitor(store: Store, cid: str, child: process.Child, out_r: int,
                  err_r: int) -> None:
    # The C monitor: log copier and reaper. Our copies of the pipes' write ends (on 1
    # and 2) must go, or the monitor would never see end-of-file; the rest is CLOEXEC.
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    # Nothing the CLI was given may stay open for the container's lifetime (a caller
    # waiting for a pipe to close would wait that long): keep only the two streams.
    low = 3
    for fd in sorted((out_r, err_r)):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)
    os.set_inheritable(out_r, True)
    os.set_inheritable(err_r, True)
    os.execv(MONITOR, [MONITOR, store.path(cid, "ctr.log"), str(child.pid), str(out_r),
                       str(err_r), sys.executable, "-m", "minibox", "--root", store.root,
                       "_finish", cid])


def finish(store: Store, cid: str, status: int) -> None:
    """Run by the monitor when the init has ended (`minibox _finish ID STATUS`)."""
    from minibox.cgroups.driver import open_group
    from minibox.runtime.run import exit_code

    group = open_group(cid)
    try:
        oom = os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9 and group.oom_killed()
    except OSError:
        oom = False
    try:
        group.remove()
    except OSError:
        pass
    if os.path.exists(store.path(cid, "network.json")):
        from minibox.network import endpoint

        try:
            endpoint.detach(store.path(cid), cid)  # published ports end with the init
        except (MiniboxError, OSError):
            pass
    try:
        with store.locked(cid) as st:
            if st.get("status") == "removing":
                return
            code = exit_code(status)
            st.update(status="stopped", pid=0, exitCode=code, finishedAt=now(), oomKilled=oom)
            restart = _should_restart(st, code)
            if restart:
                st["status"] = "restarting"
    except (MiniboxError, OSError):
        return  # removed (rm -f) while we were finishing
    if restart:
        # docker's back-off: 100 ms, doubling with each restart, at most a minute.
        import time

        time.sleep(min(0.1 * 2 ** st.get("restartCount", 0), 60.0))
        try:
            with store.locked(cid) as cur:
                if cur.get("status") == "removing":  # `rm -f` during the back-off
                    return
                if cur.get("stopRequested"):  # `stop` or `kill` during the back-off
                    cur["status"] = "stopped"
                    return
        except (MiniboxError, OSError):
            return  # removed meanwhile
        try:
            _monitor_side(store, cid, None, start=True, restarting=True)
        except BaseException as err:  # noqa: BLE001 - record, never crash silently
            with store.locked(cid) as st:
                st.update(status="stopped", error=_text(err))
        return
    if st.get("autoRemove"):
        store.record_exit(cid, st["exitCode"])
        store.remove(cid)


def _should_restart(st: dict, code: int) -> bool:
    policy = st.get("restartPolicy") or {}
    if st.get("stopRequested"):
        return False  # `stop` and `kill` by the user end a restart policy's loop (docker)
    name = policy.get("name", "no")
    if name == "always" or name == "unless-stopped":
        return True
    if name == "on-failure" and code != 0:
        limit = policy.get("max", 0)
        return not limit or st.get("restartCount", 0) < limit
    return False


def start(store: Store, cid: str) -> None:
    """Release a created container (open its exec FIFO), or start a stopped one again."""
    st = store.load(cid)
    from minibox.runtime.state import refresh

    st = refresh(st)
    status = st.get("status")
    if status == "created":
        _open_fifo(store, cid)
        with store.locked(cid) as cur:
            cur.update(status="running", startedAt=now())
        return
    if status in ("running", "paused", "restarting"):
        return  # docker: starting a running container is not an error
    lock = hold_creation(store.path(cid, "creator"))
    try:
        with store.locked(cid) as cur:
            cur.update(status="creating", stopRequested=False,
                       creatorLock=store.path(cid, "creator"))
        _launch(store, cid, start=True)
    finally:
        os.close(lock)


def _open_fifo(store: Store, cid: str) -> None:
    import select

    fifo = store.path(cid, "exec.fifo")
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise MiniboxError(f"container {cid[:12]} cannot be started: it has no exec fifo "
                           "(already started?)", 1) from None
    try:
        ready, _, _ = select.select([fd], [], [], 10)
        if not ready or not os.read(fd, 1):
            raise MiniboxError(f"container {cid[:12]} did not start: its init is gone "
                               f"(see: minibox logs {cid[:12]})", 1)
    finally:
        os.close(fd)
        try:
            os.unlink(fifo)
        except FileNotFoundError:
            pass
