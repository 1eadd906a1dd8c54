"""v1 cpuset: which CPUs and memory nodes the group may use (cgroup-v1/cpusets.rst).

A new v1 cpuset group starts with empty cpus and mems, and adding a task to it then
fails with ENOSPC: every level is filled from its parent first. The minibox parent
also gets cgroup.clone_children, so that the kernel fills each container's group
from it at mkdir(2) (cgroup-v1/cgroups.rst, "clone_children"), writes saved on the
path of every run.
"""

from __future__ import annotations

import os

from minibox.cgroups import fs


def inherit(d: str) -> None:
    parent = os.path.dirname(d)
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not fs.read(f"{d}/{name}").strip():
            fs.write(f"{d}/{name}", fs.read(f"{parent}/{name}").strip(),
                     "a new v1 cpuset is empty; copy the parent's so tasks can join")


def prepare_parent(parent: str, created: bool) -> None:
    """The minibox parent: filled from its own parent; new ones pass that on by clone."""
    inherit(parent)
    if created:
        fs.write(f"{parent}/cgroup.clone_children", 1,
                 "new cpusets below start with this group's cpus and mems")


def apply(d: str, res: dict) -> None:
    inherit(d)
    cpu = res.get("cpu") or {}
    if cpu.get("cpus"):
        fs.write(f"{d}/cpuset.cpus", cpu["cpus"], "--cpuset-cpus: the CPUs the group may run on")
    if cpu.get("mems"):
        fs.write(f"{d}/cpuset.mems", cpu["mems"],
                 "--cpuset-mems: the memory nodes the group may allocate from")
