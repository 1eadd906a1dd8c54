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

import os
import time

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
        self.tdir = os.path.join(root, "tmp")

    def ensure(self) -> None:
        for d in (self.cdir, self.ndir, self.tdir):
            os.makedirs(d, mode=0o711, exist_ok=True)

    def _sweep_tmp(self) -> None:
        """Remove what a minibox killed while writing a new container left in tmp/ (each
        entry is named ID.PID after the process that wrote it)."""
        for entry in os.scandir(self.tdir):
            pid = entry.name.rpartition(".")[2]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                self._rm_tree(entry.path)

    def path(self, cid: str, name: str = "") -> str:
        return os.path.join(self.cdir, cid, name)

    # -- creation and removal ----------------------------------------------------------

    def create(self, cid: str, name: str, state: dict, spec: dict) -> int | None:
        """Write the container's directory whole, then claim its name.

        The directory is filled under a hidden temporary name and renamed into place
        (rename(2) is atomic), so a minibox killed half-way leaves no half container that
        `ps` cannot show or `rm` cannot remove; the name is claimed only for a complete
        container, and given up again if someone else holds it.
        """
        self.ensure()
        self._sweep_tmp()
        tmp = os.path.join(self.tdir, f"{cid}.{os.getpid()}")
        lock = None
        try:
            # 0711: with --userns, container root (an unprivileged host uid) must be able
            # to pass through to the overlay mount point kept here.
            os.mkdir(tmp, 0o711)
            # Locked before the directory is visible, so that no moment exists when the
            # container is "creating" and nobody holds its creation lock.
            lock = hold_creation(os.path.join(tmp, "creator")) if state.get(
                "creatorLock") else None
            _write_json(os.path.join(tmp, "config.json"), spec)
            open(os.path.join(tmp, "lock"), "w").close()
            _write_json(os.path.join(tmp, "state.json"), state)
            os.rename(tmp, self.path(cid))
        except BaseException:
            if lock is not None:
                os.close(lock)
            self._rm_tree(tmp)
            raise
        try:
            self._claim(cid, name)
        except BaseException:
            if lock is not None:
                os.close(lock)
            raise
        return lock

    def _claim(self, cid: str, name: str) -> None:
        if name:
            try:
                os.symlink(cid, os.path.join(self.ndir, name))
            except FileExistsError:
                self._rm_dir(cid)
                other = os.readlink(os.path.join(self.ndir, name))
                raise MiniboxError(f'Conflict. The container name "/{name}" is already in use by '
                                   f'container "{other}". You have to remove (or rename) that '
                                   "container to be able to reuse that name.", 125) from None
            except BaseException:
                self._rm_dir(cid)
                raise

    def remove(self, cid: str, st: dict | None = None) -> None:
        """Remove the container's directory and its name claim (`st`: its state, if the
        caller holds it already)."""
        if st is None:
            st = self.load(cid)
        try:
            if os.path.exists(self.path(cid, "network.json")):
                from minibox.network import endpoint

                endpoint.release(self.path(cid), cid)  # leases, ports, rules, peers' hosts
        finally:
            self._rm_dir(cid)
            _remove_rwdir(cid, st)
        if st.get("name"):
            link = os.path.join(self.ndir, st["name"])
            try:
                if os.readlink(link) == cid:
                    os.unlink(link)
            except OSError:
                pass

    def _rm_dir(self, cid: str) -> None:
        self._rm_tree(self.path(cid))

    @staticmethod
    def _rm_tree(top: str) -> None:
        """The directory holds a few files and at most one empty directory (the overlay
        mount point): no need for shutil, which costs more to import than this takes."""
        try:
            entries = list(os.scandir(top))
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    os.rmdir(entry.path)
                else:
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass
            except OSError:
                import shutil

                shutil.rmtree(entry.path, ignore_errors=True)
        try:
            os.rmdir(top)
        except FileNotFoundError:
            pass

    # -- reading and writing ---------------------------------------------------------

    def load(self, cid: str) -> dict:
        import json

        try:
            with open(self.path(cid, "state.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            raise MiniboxError(f"No such container: {cid}", 1) from None

    def spec(self, cid: str) -> dict:
        import json

        with open(self.path(cid, "config.json")) as f:
            return json.load(f)

    def locked(self, cid: str) -> _Locked:
        """`with store.locked(cid) as st:` read-modify-write under the container's lock."""
        return _Locked(self, cid, None)

    def replace(self, cid: str, st: dict) -> _Locked:
        """`with store.replace(cid, st):` write `st` whole under the lock, without reading
        (the foreground run owns its state; this keeps json's import off its path)."""
        return _Locked(self, cid, st)

    # --rm removes a container the moment it ends, yet `wait` must still print its exit
    # code (docker does): the finisher leaves it in exits/ID for a minute.
    def record_exit(self, cid: str, code: int) -> None:
        d = os.path.join(self.root, "exits")
        os.makedirs(d, exist_ok=True)
        limit = time.time() - 60
        for entry in os.scandir(d):
            try:
                if entry.stat().st_mtime < limit:
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass
        with open(os.path.join(d, cid), "w") as f:
            f.write(str(code))

    def last_exit(self, cid: str) -> int | None:
        try:
            with open(os.path.join(self.root, "exits", cid)) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

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


class _Locked:
    """flock(2) on the container's lock file around a read-modify-write of state.json."""

    def __init__(self, store: Store, cid: str, st: dict | None) -> None:
        self.store, self.cid, self.st = store, cid, st

    def __enter__(self) -> dict:
        try:
            self.fd = os.open(self.store.path(self.cid, "lock"), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise MiniboxError(f"No such container: {self.cid}", 1) from None
        try:
            # A POSIX record lock through os.lockf (fcntl(2) F_SETLKW): the fcntl module
            # would cost an import on the run path for flock(2).
            os.lockf(self.fd, os.F_LOCK, 0)
            if self.st is None:
                self.st = self.store.load(self.cid)
        except BaseException:
            os.close(self.fd)
            raise
        return self.st

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                _write_json(self.store.path(self.cid, "state.json"), self.st)
        finally:
            os.close(self.fd)


def hold_creation(path: str) -> int:
    """Take the creation lock of a container that other processes will finish making.

    flock(2) locks belong to the open file, which fork(2) shares: the CLI takes it, the
    forked process that goes on to make the container holds it too, and it is released
    only when the last of them closes it (the monitor's exec) or dies. So "is someone
    still making this container?" has a true answer, whoever was killed.
    """
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _creation_abandoned(st: dict) -> bool:
    lock = st.get("creatorLock")
    if not lock:  # a foreground run: its creator is the CLI itself
        return not alive(st.get("creatorPid"), st.get("creatorStart"))
    import fcntl

    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def refresh(st: dict) -> dict:
    """Tell the truth even if the monitor died: a running/paused container whose init is
    gone is stopped (the exit code then is unknown)."""
    if st.get("status") == "creating" and _creation_abandoned(st):
        return dict(st, status="stopped", pid=0, exitCode=st.get("exitCode") or 255,
                    error="minibox was killed while creating this container")
    if st.get("status") in ("running", "paused", "created") and st.get("pid"):
        if not alive(st.get("pid"), st.get("pidStart")):
            monitor_alive = alive(st.get("monitorPid"), st.get("monitorStart"))
            if not monitor_alive:
                # Nobody saw it end, so its exit code is unknown: 255, as docker reports
                # a container whose exit status was lost.
                st = dict(st, status="stopped", pid=0)
                if st.get("exitCode") is None:
                    st["exitCode"] = 255
    return st


def _write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(dumps(data))
    os.replace(tmp, path)


# JSON out without the json module: json pulls in re, and the two cost more import time
# on the `run` path than creating the container's namespaces. Reading still uses json.
_ESCAPES = {i: f"\\u{i:04x}" for i in range(32)}
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\t"): "\\t",
                 ord("\r"): "\\r"})


def dumps(obj: object) -> str:
    """Serialise dicts, lists, strings, numbers, booleans and None as JSON."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, str):
        return '"' + obj.translate(_ESCAPES) + '"'
    if isinstance(obj, (int, float)):
        return repr(obj)
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{dumps(str(k))}: {dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(dumps(v) for v in obj) + "]"
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def _remove_rwdir(cid: str, st: dict) -> None:
    """A container made from an image has its overlay upper and work dirs in the image
    store (<data root>/containers/ID); they go with the container."""
    rwdir = (st.get("annotations") or {}).get("minibox.rwdir")
    if rwdir and os.path.basename(rwdir) == cid and \
            os.path.basename(os.path.dirname(rwdir)) == "containers":
        # The usual case, a container that wrote nothing: four rmdir(2) calls (overlayfs
        # leaves work/work behind); anything else is listed and removed.
        for d in ("upper", "work/work", "work", ""):
            try:
                os.rmdir(os.path.join(rwdir, d))
            except OSError:
                _rmtree(rwdir)
                return


def _rmtree(top: str) -> None:
    """Remove a directory tree without following symlinks (shutil costs import time on
    the `run` path, and an upper dir is usually a handful of entries). An empty
    directory goes with one rmdir(2), without being listed first."""
    try:
        os.rmdir(top)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass  # not empty (or not a directory): list it
    try:
        entries = list(os.scandir(top))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        _unlink(top)
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _rmtree(entry.path)
        else:
            _unlink(entry.path)
    try:
        os.rmdir(top)
    except FileNotFoundError:
        pass


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
