"""v2 cpuset: cpuset.cpus and cpuset.mems (cgroup-v2.rst "Cpuset"); empty means the parent's."""

from __future__ import annotations

from minibox.cgroups import fs


def apply(d: str, res: dict) -> None:
    cpu = res.get("cpu") or {}
    if cpu.get("cpus"):
        fs.write(f"{d}/cpuset.cpus", cpu["cpus"], "--cpuset-cpus: the CPUs the group may run on")
    if cpu.get("mems"):
        fs.write(f"{d}/cpuset.mems", cpu["mems"],
                 "--cpuset-mems: the memory nodes the group may allocate from")
