"""v1 memory: limit, memory+swap limit, soft limit (cgroup-v1/memory.rst)."""

from __future__ import annotations

import os

from minibox.cgroups import fs


def apply(d: str, res: dict) -> None:
    mem = res.get("memory") or {}
    if "limit" in mem:
        fs.write(f"{d}/memory.limit_in_bytes", mem["limit"],
                 "--memory: above this the kernel reclaims, then OOM-kills in the group")
    if "swap" in mem:
        # memsw is memory+swap together, and must not be below limit_in_bytes: write it
        # after the limit.
        if os.path.exists(f"{d}/memory.memsw.limit_in_bytes"):
            fs.write(f"{d}/memory.memsw.limit_in_bytes", mem["swap"],
                     "--memory-swap: the limit on memory plus swap")
    if "reservation" in mem:
        fs.write(f"{d}/memory.soft_limit_in_bytes", mem["reservation"],
                 "--memory-reservation: under memory pressure the group is pushed back to this")


def oom_killed(d: str) -> bool:
    return fs.read_keyed(f"{d}/memory.oom_control").get("oom_kill", 0) > 0


def stats(d: str) -> dict:
    st = fs.read_keyed(f"{d}/memory.stat")
    usage = fs.read_int(f"{d}/memory.usage_in_bytes")
    return {"memory_usage": usage - st.get("total_inactive_file", 0),
            "memory_limit": fs.read_int(f"{d}/memory.limit_in_bytes")}
