"""The one cgroup interface the engine uses: create, apply, add, freeze, stats, kill, remove.

A container's group is `<caller's own group>/minibox/<id>` in every hierarchy the host
has (as runc nests under its caller). On a v1 host that is one directory per mounted
controller; on v2 one directory; on a hybrid host each controller is driven where it
is really mounted.
"""

from __future__ import annotations

import errno
import os
import sys
import time

from minibox import explain
from minibox.cgroups import fs
from minibox.cgroups.detect import CONTROLLERS, V2_NAMES, Layout, detect, own_group
from minibox.errors import MiniboxError

PARENT = "minibox"


def needs(ctrl: str, res: dict) -> bool:
    """Does this container need a controller the host may have left unmounted?

    perf_event always: it limits nothing, but every container should be countable with
    `perf stat -G`. The others only when a flag asks for what they do.
    """
    net = res.get("network") or {}
    return {
        "perf_event": True,
        "net_cls": net.get("classID") is not None,
        "net_prio": bool(net.get("priorities")),
        "hugetlb": bool(res.get("hugepageLimits")),
        "blkio": (res.get("blockIO") or {}).get("weight") is not None,
    }.get(ctrl, False)


OPTIONAL = ("perf_event", "net_cls", "net_prio", "hugetlb", "blkio")
V2_ORDER = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids")
# The resource keys each controller module reads.
KEYS = {"memory": ("memory",), "cpu": ("cpu",), "cpuset": ("cpu",), "pids": ("pids",),
        "devices": ("devices",), "net_cls": ("network",), "net_prio": ("network",),
        "hugetlb": ("hugepageLimits",), "blkio": ("blockIO",), "io": ("blockIO",)}


def _module(version: str, controller: str):
    # __import__ rather than importlib, whose import pulls in warnings and more.
    name = f"minibox.cgroups.{version}.{controller}"
    __import__(name)
    return sys.modules[name]


class Driver:
    """The interface every layout's driver has (the engine sees only this): create,
    apply limits, add a pid, freeze/thaw, read stats, kill every member, remove.

    `v1_dirs` (controller -> the container's directory in that v1 hierarchy) and
    `v2_dir` (its directory in the unified hierarchy) say where the group is; a driver
    fills the ones its layout has. What differs by layout is in the subclasses below.
    """

    kind = ""

    def __init__(self, cid: str, layout: Layout) -> None:
        self.cid = cid
        self.layout = layout
        self.v1_dirs: dict[str, str] = {}
        self.v2_dir: str | None = None
        self._locate()

    # -- where --------------------------------------------------------------------------

    def _v1_locate(self) -> None:
        for ctrl, mnt in self.layout.v1.items():
            base = mnt + own_group(ctrl).rstrip("/")
            self.v1_dirs[ctrl] = f"{base}/{PARENT}/{self.cid}"

    def _v2_locate(self) -> None:
        self.v2_dir = f"{self.layout.unified}{own_group('').rstrip('/')}/{PARENT}/{self.cid}"

    def _locate(self) -> None:
        raise NotImplementedError

    @property
    def dirs(self) -> list[str]:
        out = list(dict.fromkeys(self.v1_dirs.values()))
        if self.v2_dir:
            out.append(self.v2_dir)
        return out

    # -- creation -------------------------------------------------------------------

    def check(self, res: dict) -> None:
        """Refuse, before anything is created, what this host cannot do."""
        for ctrl in OPTIONAL:
            if ctrl == "perf_event" or not needs(ctrl, res) or self.layout.where(ctrl):
                continue  # perf_event is a nicety: never refuse a container for it
            if ctrl not in self.layout.known:
                raise MiniboxError(f"the {ctrl} cgroup controller is not in this kernel "
                                   f"(/proc/cgroups); run without its flag")
            if self.layout.kind == "v2":
                raise MiniboxError(f"cgroup v2 has no {ctrl} controller; run without its flag")
        if (res.get("blockIO") or {}).get("weight") is not None:
            where = self.layout.where("blkio")
            if where == "v1":
                root = self.layout.v1["blkio"]
                # The weight files exist only below the root group (BFQ's are "not on
                # root"): look in the root and in any existing child group.
                dirs = [root] + [e.path for e in os.scandir(root) if e.is_dir()]
                ok = any(os.path.exists(f"{d}/{n}") for d in dirs
                         for n in ("blkio.weight", "blkio.bfq.weight"))
                if not ok:
                    ok = _bfq_available()
            else:
                root = self.layout.unified or ""
                ok = any(os.path.exists(f"{root}/{n}") or os.path.exists(
                    f"{root}/{PARENT}/{n}") for n in ("io.weight", "io.bfq.weight")) or \
                    "io" in self.layout.v2_controllers
            if not ok:
                raise MiniboxError("--blkio-weight: this kernel's blkio controller has no "
                                   "weight file (it needs the BFQ I/O scheduler); run without "
                                   "--blkio-weight")

    def mount_missing(self, res: dict) -> None:
        """Mount a v1 controller the host left unmounted, as a distribution would.

        Called before the container's init is cloned (runtime/process.py): its mount
        namespace is a copy of ours, so a hierarchy mounted later would be missing from
        the container's /sys/fs/cgroup the first time."""
        mounted = False
        for ctrl in OPTIONAL:
            if not needs(ctrl, res) or self.layout.where(ctrl):
                continue
            if self.layout.kind == "v2" or ctrl not in self.layout.known:
                continue
            from minibox.kernel import mounts

            target = f"/sys/fs/cgroup/{ctrl}"
            os.makedirs(target, exist_ok=True)
            try:
                mounts.mount(ctrl, target, "cgroup", mounts.NOSUID | mounts.NODEV
                             | mounts.NOEXEC, ctrl,
                             why=f"the host has not mounted the v1 {ctrl} controller; mount it "
                                 f"where a distribution would, and leave it there")
            except OSError as err:
                if ctrl == "perf_event":
                    continue  # optional: the container runs without a perf_event group
                raise MiniboxError(f"cannot mount the {ctrl} cgroup controller at {target}: "
                                   f"{err.strerror} (is it bound to cgroup v2?)") from None
            self.layout.v1[ctrl] = target
            mounted = True
        if mounted:
            self._locate()

    def preload(self, res: dict) -> None:
        """Import the controller modules that create() and apply() will use."""
        for ctrl, _d in self._v1_work(res):
            _module("v1", ctrl)
        for name in self._v2_work(res):
            _module("v2", name)

    def create(self, res: dict) -> None:
        """Make the group in every hierarchy and write the limits; undone on failure."""
        self.mount_missing(res)  # done already by spawn; a no-op then
        try:
            self._make()
            self.apply(res)
        except BaseException:
            self.remove()
            raise

    def _make(self) -> None:
        raise NotImplementedError

    def apply(self, res: dict) -> None:
        """Write every limit through the controller modules (only those with work to do)."""
        raise NotImplementedError

    def _mkdirs(self, d: str, ctrl: str) -> None:
        parent = os.path.dirname(d)
        for attempt in range(5):
            try:
                created = fs.mkdir(parent, "the parent group of every minibox container")
                if ctrl == "cpuset":
                    _module("v1", "cpuset").prepare_parent(parent, created)
                fs.mkdir(d, f"the container's own {ctrl} group")
                return
            except FileNotFoundError:
                # Another minibox removed the empty parent between our two mkdirs.
                if attempt == 4:
                    raise

    def _mkdirs_v2(self, d: str) -> None:
        """v2: controllers must be enabled in every ancestor's cgroup.subtree_control."""
        parent = os.path.dirname(d)
        fs.mkdir(parent, "the parent group of every minibox container")
        wanted = [c for c in V2_ORDER if c in self.layout.v2_controllers]
        for level in (os.path.dirname(parent), parent):
            have = set(fs.read(f"{level}/cgroup.subtree_control").split())
            enable = [c for c in wanted if c not in have]
            if enable:
                fs.write(f"{level}/cgroup.subtree_control",
                         " ".join(f"+{c}" for c in enable),
                         "v2: let the child groups use these controllers")
        fs.mkdir(d, "the container's own group (unified hierarchy)")

    def _v1_work(self, res: dict) -> list[tuple[str, str]]:
        """(controller, directory) of each v1 controller with something to write."""
        return [(ctrl, d) for ctrl, d in self.v1_dirs.items()
                if ctrl == "cpuset" or any(res.get(k) for k in KEYS.get(ctrl, ()))]

    def _v2_work(self, res: dict) -> list[str]:
        """The v2 controller modules with something to write in the unified group."""
        if not self.v2_dir:
            return []
        out = []
        for ctrl in CONTROLLERS:
            name = V2_NAMES.get(ctrl, ctrl)
            if self.layout.where(ctrl) == "v2" and ctrl != "cpuacct" and \
                    name in _V2_MODULES and any(res.get(k) for k in KEYS.get(name, ())):
                out.append(name)
        return out

    def _apply_v1(self, res: dict) -> None:
        for ctrl, d in self._v1_work(res):
            _module("v1", ctrl).apply(d, res)

    def _apply_v2(self, res: dict) -> None:
        for name in self._v2_work(res):
            _module("v2", name).apply(self.v2_dir, res)

    def add(self, pid: int, why: str = "put the container's init into its group before it "
                                        "runs anything") -> None:
        for d in self.dirs:
            fs.write(f"{d}/cgroup.procs", pid, why)

    # -- actions ----------------------------------------------------------------------

    def _freezer(self) -> tuple:
        raise NotImplementedError

    def freeze(self) -> None:
        mod, d = self._freezer()
        mod.set_state(d, True)

    def thaw(self) -> None:
        mod, d = self._freezer()
        mod.set_state(d, False)

    def frozen(self) -> bool:
        mod, d = self._freezer()
        return mod.state(d) == "FROZEN"

    def pids(self) -> list[int]:
        out: set[int] = set()
        for d in self.dirs:
            try:
                out.update(int(p) for p in fs.read(f"{d}/cgroup.procs").split())
            except OSError:
                pass
        return sorted(out)

    def oom_killed(self) -> bool:
        raise NotImplementedError

    def memory_limit(self) -> int:
        """The memory limit in bytes, or -1 where the host has no memory controller."""
        raise NotImplementedError

    def stats(self) -> dict:
        raise NotImplementedError

    def kill_all(self) -> None:
        """SIGKILL every member."""
        raise NotImplementedError

    def _kill_v1(self) -> None:
        # No cgroup.kill on v1: freeze first so nothing forks while we kill (the runc
        # way), then thaw so the kills are delivered.
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            frozen = False
            try:
                self.freeze()
                frozen = True
            except (MiniboxError, OSError, TimeoutError):
                pass
            for pid in pids:
                try:
                    os.kill(pid, 9)  # SIGKILL
                except ProcessLookupError:
                    pass
            if frozen:
                self.thaw()
            time.sleep(0.01)

    def _kill_v2(self) -> bool:
        """cgroup.kill (cgroup-v2.rst, since 5.14): one write kills every member, also
        the ones forking meanwhile. False where the kernel lacks it."""
        if not self.v2_dir or not os.path.exists(f"{self.v2_dir}/cgroup.kill"):
            return False
        if self.pids():
            fs.write(f"{self.v2_dir}/cgroup.kill", 1, "kill every process of the group")
        return True

    def remove(self) -> None:
        """Remove the group and, if empty, the minibox parent, killing any member left.

        rmdir(2) of a group that still has members fails with EBUSY (cgroups(7)), so
        the members are looked for only then. Usually there are none: when a container's
        init ends, the kernel has already killed the rest of its PID namespace
        (pid_namespaces(7)), and reading cgroup.procs in every hierarchy first would
        cost more than the removal itself.
        """
        why = "the container is gone: remove its group"
        for d in self.dirs:
            try:
                fs.rmdir(d, why)
            except FileNotFoundError:
                pass
            except OSError as err:
                if err.errno != errno.EBUSY:
                    raise
                self.kill_all()
                _rmdir_retry(d, why)
            try:
                fs.rmdir(os.path.dirname(d), "no minibox container left here: remove the parent")
            except OSError:
                pass  # other containers still use it


class V1Driver(Driver):
    """cgroup v1: one hierarchy per controller (or a few together), one directory of the
    container's in each (cgroups(7) "CGROUPS VERSION 1")."""

    kind = "v1"

    def _locate(self) -> None:
        self._v1_locate()

    def _make(self) -> None:
        for ctrl, d in self.v1_dirs.items():
            self._mkdirs(d, ctrl)

    def apply(self, res: dict) -> None:
        self._apply_v1(res)

    def _freezer(self) -> tuple:
        if "freezer" in self.v1_dirs:
            return _module("v1", "freezer"), self.v1_dirs["freezer"]
        raise MiniboxError("this host has no freezer cgroup controller: pause is not possible")

    def oom_killed(self) -> bool:
        d = self.v1_dirs.get("memory")
        return bool(d) and _module("v1", "memory").oom_killed(d)

    def memory_limit(self) -> int:
        d = self.v1_dirs.get("memory")
        return fs.read_int(f"{d}/memory.limit_in_bytes") if d else -1

    def stats(self) -> dict:
        out: dict = {}
        for ctrl in ("memory", "cpuacct", "pids"):
            d = self.v1_dirs.get(ctrl)
            if d:
                out.update(_module("v1", ctrl).stats(d))
        return out

    def kill_all(self) -> None:
        self._kill_v1()


class V2Driver(Driver):
    """cgroup v2: one unified hierarchy, one directory holds every controller's files
    (Documentation/admin-guide/cgroup-v2.rst); freezer and devices are built in."""

    kind = "v2"

    def _locate(self) -> None:
        self._v2_locate()

    def _make(self) -> None:
        assert self.v2_dir is not None
        self._mkdirs_v2(self.v2_dir)

    def apply(self, res: dict) -> None:
        self._apply_v2(res)

    def _freezer(self) -> tuple:
        return _module("v2", "freezer"), self.v2_dir

    def oom_killed(self) -> bool:
        return _module("v2", "memory").oom_killed(self.v2_dir)

    def memory_limit(self) -> int:
        return fs.read_int(f"{self.v2_dir}/memory.max")

    def stats(self) -> dict:
        out: dict = {}
        for ctrl in ("memory", "cpu", "pids"):
            out.update(_module("v2", ctrl).stats(self.v2_dir))
        return out

    def kill_all(self) -> None:
        if not self._kill_v2():
            self._kill_v1()  # a kernel before 5.14: kill pid by pid (freezing first)


class HybridDriver(V1Driver):
    """A hybrid host: the v1 hierarchies, plus the unified one where a controller sits
    there (on this kind of machine hugetlb may, alone). Each controller is driven where
    it is really mounted; the container joins a group in the unified hierarchy only
    when some controller lives there. Freezer, OOM and stats are v1's."""

    kind = "hybrid"

    def _locate(self) -> None:
        self._v1_locate()
        if self.layout.v2_controllers:
            self._v2_locate()

    def _make(self) -> None:
        super()._make()
        if self.v2_dir:
            self._mkdirs_v2(self.v2_dir)

    def apply(self, res: dict) -> None:
        self._apply_v1(res)
        if self.v2_dir:
            self._apply_v2(res)

    def _memory_on_v2(self) -> bool:
        return "memory" not in self.v1_dirs and bool(self.v2_dir) \
            and self.layout.where("memory") == "v2"

    def oom_killed(self) -> bool:
        if self._memory_on_v2():
            return _module("v2", "memory").oom_killed(self.v2_dir)
        return super().oom_killed()

    def memory_limit(self) -> int:
        if self._memory_on_v2():
            return fs.read_int(f"{self.v2_dir}/memory.max")
        return super().memory_limit()

    def kill_all(self) -> None:
        # The unified group holds every member too: cgroup.kill there when it exists.
        if not self._kill_v2():
            self._kill_v1()


_DRIVERS: dict[str, type[Driver]] = {"v1": V1Driver, "v2": V2Driver, "hybrid": HybridDriver}


def open_group(cid: str, layout: Layout | None = None) -> Driver:
    """The driver for this host's layout (detect.py), for container `cid`."""
    layout = layout or detect()
    return _DRIVERS[layout.kind](cid, layout)


def _bfq_available() -> bool:
    """Is the BFQ scheduler (which provides blkio.bfq.weight) there for some disk?"""
    try:
        for dev in os.listdir("/sys/block"):
            with open(f"/sys/block/{dev}/queue/scheduler") as f:
                if "bfq" in f.read():
                    return True
    except OSError:
        pass
    return False


_V2_MODULES = {"cpu", "cpuset", "memory", "pids", "io", "hugetlb", "devices"}


def _rmdir_retry(d: str, why: str) -> None:
    # A group's last task may take a moment to leave after it died (EBUSY).
    for _ in range(200):
        try:
            fs.rmdir(d, why)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno != errno.EBUSY:
                raise
            time.sleep(0.005)
    explain.step(f'rmdir("{d}")', "-1 EBUSY", "group still busy; left behind", "cgroups(7)")
