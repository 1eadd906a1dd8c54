"""Acting on a container that exists: kill, stop, pause, unpause, wait, remove, prune.

Messages and exit codes follow the docker CLI (daemon errors exit 1).
"""

from __future__ import annotations

import os
import time

from minibox.errors import MiniboxError
from minibox.runtime.state import Store, alive, refresh

SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "USR1": 10, "USR2": 12, "TERM": 15,
           "CONT": 18, "STOP": 19, "WINCH": 28}


def parse_signal(text: str) -> int:
    name = text.upper().removeprefix("SIG")
    if name.isdigit() and 0 < int(name) < 65:
        return int(name)
    if name in SIGNALS:
        return SIGNALS[name]
    raise MiniboxError(f"invalid signal: {text}", 1)


def _signal_pid(pid: int | None, sig: int) -> None:
    """kill(2) one process. Never pid 0 or below: kill(0, ...) would signal our own
    process group, and kill(-1, ...) every process we may signal."""
    if not pid or pid <= 0:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _running(store: Store, cid: str) -> dict:
    st = refresh(store.load(cid))
    if st["status"] not in ("running", "paused", "created"):
        raise MiniboxError(f"Error response from daemon: Container {cid} is not running", 1)
    return st


def kill(store: Store, cid: str, sig: int = 9) -> None:
    st = _running(store, cid)
    with store.locked(cid) as cur:
        cur["stopRequested"] = True
    _signal_pid(st["pid"], sig)
    if st["status"] == "paused" and sig == 9:
        _thaw(cid)  # a frozen task only dies once thawed


def _thaw(cid: str) -> None:
    from minibox.cgroups.driver import open_group

    try:
        open_group(cid).thaw()
    except (MiniboxError, OSError):
        pass


def wait_stopped(store: Store, cid: str, timeout: float | None) -> bool:
    """Until the monitor has recorded the end (or the init is gone and no monitor is left)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            st = refresh(store.load(cid))
        except MiniboxError:
            return True  # removed (--rm)
        if st["status"] == "stopped":
            return True
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def stop(store: Store, cid: str, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds (docker stop -t)."""
    st = refresh(store.load(cid))
    if st["status"] not in ("running", "paused", "restarting"):
        return  # docker: stopping a stopped (or never started) container succeeds
    with store.locked(cid) as cur:
        cur["stopRequested"] = True
    if st["status"] == "paused":
        _thaw(cid)
    _signal_pid(st["pid"], 15)
    if not wait_stopped(store, cid, grace):
        _signal_pid(st["pid"], 9)
        wait_stopped(store, cid, 10)


def pause(store: Store, cid: str) -> None:
    from minibox.cgroups.driver import open_group

    st = refresh(store.load(cid))
    if st["status"] == "paused":
        raise MiniboxError(f"Error response from daemon: Container {cid} is already paused", 1)
    if st["status"] != "running":
        raise MiniboxError(f"Error response from daemon: Container {cid} is not running", 1)
    open_group(cid).freeze()
    with store.locked(cid) as cur:
        cur["status"] = "paused"


def unpause(store: Store, cid: str) -> None:
    from minibox.cgroups.driver import open_group

    st = refresh(store.load(cid))
    if st["status"] != "paused":
        raise MiniboxError(f"Error response from daemon: Container {cid} is not paused", 1)
    open_group(cid).thaw()
    with store.locked(cid) as cur:
        cur["status"] = "running"


def wait(store: Store, cid: str) -> int:
    wait_stopped(store, cid, None)
    try:
        code = store.load(cid).get("exitCode")
    except MiniboxError:
        code = store.last_exit(cid)  # removed by --rm: its finisher left the code
    return 0 if code is None else code


def remove(store: Store, cid: str, force: bool = False) -> None:
    """rm: refuse a running container unless forced; then nothing of it stays."""
    from minibox.cgroups.driver import open_group

    st = refresh(store.load(cid))
    running = st["status"] in ("running", "paused", "restarting", "created") and \
        alive(st.get("pid"), st.get("pidStart"))
    # A created container's init is only waiting for `start`: docker removes it without
    # -f, since nothing of the user's has run yet.
    if running and not force and st["status"] != "created":
        raise MiniboxError(
            f"Error response from daemon: You cannot remove a running container {cid}. "
            "Stop the container before attempting removal or force remove", 1)
    # Marked under the lock, whatever the state: a finisher still recording the end of
    # a container that has just exited (or waiting to restart it) then steps aside,
    # rather than writing its state back into the directory being removed.
    with store.locked(cid) as cur:
        cur["status"] = "removing"
    if running:
        if st.get("detached") and alive(st.get("monitorPid"), st.get("monitorStart")):
            # Nothing is left to record: end the C monitor first, so that the init's
            # death does not start a finisher (a Python start) only to be told to go.
            _signal_pid(st["monitorPid"], 9)
        if st["status"] == "paused":
            _thaw(cid)
        _signal_pid(st["pid"], 9)
        _wait_gone(st["pid"], st.get("pidStart"))
    open_group(cid).remove()
    store.remove(cid)
    # Leave no process behind: a monitor (or its finisher) still running ends now.
    _wait_gone(st.get("monitorPid") or 0, st.get("monitorStart"))


def _wait_gone(pid: int, start: int | None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.002)


def prune(store: Store) -> list[str]:
    gone = []
    for st in store.all():
        if st["status"] == "stopped":
            try:
                remove(store, st["id"])
                gone.append(st["id"])
            except MiniboxError:
                pass
    return gone
