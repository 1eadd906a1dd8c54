"""v1 cpuacct: CPU time used by the group, in nanoseconds (cgroup-v1/cpuacct.rst)."""

from __future__ import annotations

from minibox.cgroups import fs


def apply(d: str, res: dict) -> None:
    """cpuacct only accounts; nothing to set."""


def stats(d: str) -> dict:
    return {"cpu_usage_ns": fs.read_int(f"{d}/cpuacct.usage")}
