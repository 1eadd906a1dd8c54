"""Where is each controller? v1 (one hierarchy per controller), v2 (unified) or hybrid.

Read from /proc/self/mountinfo (what is mounted where) and /proc/cgroups (what the
kernel has); see cgroups(7) "CGROUPS VERSION 1" / "VERSION 2" and proc(5).
"""

from __future__ import annotations

import os

# The controllers minibox drives, by their v1 names.
CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "devices",
               "net_cls", "net_prio", "hugetlb", "perf_event", "blkio")
# v1 name -> the v2 controller that does its job.
V2_NAMES = {"blkio": "io", "cpuacct": "cpu"}


class Layout:
    """v1: controller -> its hierarchy's mount point; unified: the cgroup2 mount point."""

    def __init__(self) -> None:
        self.v1: dict[str, str] = {}
        self.unified: str | None = None
        self.v2_controllers: set[str] = set()
        self.known: set[str] = set()

    @property
    def kind(self) -> str:
        if self.unified and not self.v1:
            return "v2"
        return "hybrid" if self.unified else "v1"

    def where(self, controller: str) -> str:
        """'v1', 'v2' or '' (the kernel has it but nothing mounts it)."""
        if controller in self.v1:
            return "v1"
        if not self.unified:
            return ""
        if controller in ("freezer", "devices", "perf_event"):
            # Built into v2 (cgroup.freeze, BPF device programs, perf -G): never listed
            # in cgroup.controllers, there only on a pure v2 host.
            return "v2" if self.kind == "v2" else ""
        v2name = V2_NAMES.get(controller, controller)
        return "v2" if v2name in self.v2_controllers else ""


_cached: Layout | None = None


def detect() -> Layout:
    """The host's layout, read once per process (the container's child inherits it)."""
    global _cached
    if _cached is None:
        _cached = _read()
    return _cached


def _read() -> Layout:
    layout = Layout()
    with open("/proc/cgroups") as f:
        for line in f.read().splitlines()[1:]:
            name, _hier, _num, enabled = line.split()
            if enabled == "1":
                layout.known.add(name)
    with open("/proc/self/mountinfo") as f:
        for line in f.read().splitlines():
            left, _, right = line.partition(" - ")
            fstype, _source, superopts = right.split(" ", 2)
            mountpoint = left.split(" ")[4]
            if fstype == "cgroup2":
                if layout.unified is None:
                    layout.unified = mountpoint
            elif fstype == "cgroup":
                for opt in superopts.split(","):
                    if opt in CONTROLLERS and opt not in layout.v1:
                        layout.v1[opt] = mountpoint
    if layout.unified:
        path = os.path.join(layout.unified, "cgroup.controllers")
        try:
            with open(path) as f:
                layout.v2_controllers = set(f.read().split())
        except OSError:
            pass
    return layout


_OWN: list[tuple[str, list[str], str]] = []


def own_group(hierarchy: str) -> str:
    """The caller's own group in one hierarchy (a v1 controller name, or '' for v2)."""
    # Read once per process: minibox never moves itself, and a container asks for
    # a dozen hierarchies (cgroups(7), "/proc/[pid]/cgroup").
    if not _OWN:
        with open("/proc/self/cgroup") as f:
            for line in f.read().splitlines():
                _id, ctrls, path = line.split(":", 2)
                _OWN.append((_id, ctrls.split(","), path))
    for _id, ctrls, path in _OWN:
        if hierarchy == "" and ctrls == [""] and _id == "0":
            return path
        if hierarchy and hierarchy in ctrls:
            return path
    return "/"
