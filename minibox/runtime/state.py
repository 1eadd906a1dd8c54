"""Container state on disk: one directory per container under the root (/run/minibox).

    ROOT/containers/ID/state.json   OCI state fields + name, command, exit code, times
    ROOT/containers/ID/config.json  the spec the container was made from
    ROOT/containers/ID/ctr.log      stdout/stderr lines with timestamps (the monitor's)
    ROOT/containers/ID/lock         flock(2) guard for read-modify-write of state.json
    ROOT/names/NAME                 a symlink to ID: creating it is the atomic name claim

state.json is replaced with rename(2), so a reader sees the old or the new file, never
half of one; every change holds the container's lock, so concurrent CLIs and the
monitor never lose each other's writes (runtime-spec "State").
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from minibox.errors import MiniboxError

DEFAULT_ROOT = "/run/minibox"


def now() -> str:
    """RFC 3339 with nanoseconds, UTC, as docker prints times."""
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 10**9)) + f".{t % 10**9:09d}Z"


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.

    A pid alone can be reused after the process ends; pid plus start time cannot.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(b")") + 2:].split()
    return int(rest[19])


def alive(pid: int | None, start: int | None) -> bool:
    if not pid or start is None:
        return False
    st = proc_start_time(pid)
    if st != start:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        state = data[data.rindex(b")") + 2:].split()[0]
        return state != b"Z"  # a zombie has ended; only its parent has not reaped it yet
    except OSError:
        return False


class Store:
    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = root
        self.cdir = os.path.join(root, "containers")
        self.ndir = os.path.join(root, "names")

    def ensure(self) -> None:
        os.makedirs(self.cdir, mode=0o711, exist_ok=True)
        os.makedirs(self.ndir, mode=0o711, exist_ok=True)

    def path(self, cid: str, name: str = "") -> str:
        return os.path.join(self.cdir, cid, name)

    # -- creation and removal ----------------------------------------------------------

    def create(self, cid: str, name: str, state: dict, spec: dict) -> None:
        """Claim the name, then write the container's directory; nothing half-made stays."""
        self.ensure()
        claimed = False
        if name:
            try:
                os.symlink(cid, os.path.join(self.ndir, name))
                claimed = True
            except FileExistsError:
                other = os.readlink(os.path.join(self.ndir, name))
                raise MiniboxError(f'Conflict. The container name "/{name}" is already in use by '
                                   f'container "{other}". You have to remove (or rename) that '
                                   "container to be able to reuse that name.", 125) from None
        try:
            os.mkdir(self.path(cid), 0o700)
            _write_json(self.path(cid, "config.json"), spec)
            open(self.path(cid, "lock"), "w").close()
            _write_json(self.path(cid, "state.json"), state)
        except BaseException:
            self._rm_dir(cid)
            if claimed:
                _unlink(os.path.join(self.ndir, name))
            raise

    def remove(self, cid: str) -> None:
        st = self.load(cid)
        self._rm_dir(cid)
        if st.get("name"):
            link = os.path.join(self.ndir, st["name"])
            try:
                if os.readlink(link) == cid:
                    os.unlink(link)
            except OSError:
                pass

    def _rm_dir(self, cid: str) -> None:
        import shutil

        shutil.rmtree(self.path(cid), ignore_errors=True)

    # -- reading and writing ---------------------------------------------------------

    def load(self, cid: str) -> dict:
        try:
            with open(self.path(cid, "state.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            raise MiniboxError(f"No such container: {cid}", 1) from None

    def spec(self, cid: str) -> dict:
        with open(self.path(cid, "config.json")) as f:
            return json.load(f)

    @contextmanager
    def locked(self, cid: str) -> Iterator[dict]:
        """Read-modify-write under the container's lock; the dict is saved on exit."""
        try:
            fd = os.open(self.path(cid, "lock"), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise MiniboxError(f"No such container: {cid}", 1) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = self.load(cid)
            yield st
            _write_json(self.path(cid, "state.json"), st)
        finally:
            os.close(fd)

    def ids(self) -> list[str]:
        try:
            return [d for d in os.listdir(self.cdir) if len(d) == 64]
        except FileNotFoundError:
            return []

    def all(self) -> list[dict]:
        out = []
        for cid in self.ids():
            try:
                out.append(refresh(self.load(cid)))
            except (MiniboxError, ValueError):
                continue  # removed meanwhile, or being written for the first time
        return out

    def resolve(self, ref: str) -> str:
        """An id, a unique id prefix or a name -> the full id (docker's lookup order)."""
        if not ref:
            raise MiniboxError("No such container: (empty name)", 1)
        if len(ref) == 64 and os.path.isdir(self.path(ref)):
            return ref
        try:
            return os.readlink(os.path.join(self.ndir, ref.lstrip("/")))
        except OSError:
            pass
        matches = [cid for cid in self.ids() if cid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise MiniboxError(f'multiple IDs found with provided prefix: {ref}', 1)
        raise MiniboxError(f"No such container: {ref}", 1)


def refresh(st: dict) -> dict:
    """Tell the truth even if the monitor died: a running/paused container whose init is
    gone is stopped (the exit code then is unknown)."""
    if st.get("status") in ("running", "paused", "created") and st.get("pid"):
        if not alive(st.get("pid"), st.get("pidStart")):
            monitor_alive = alive(st.get("monitorPid"), st.get("monitorStart"))
            if not monitor_alive:
                st = dict(st, status="stopped", pid=0)
                st.setdefault("exitCode", 255)
    return st


def _write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
