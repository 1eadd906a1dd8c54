"""v2 memory: memory.max, memory.swap.max, memory.low (cgroup-v2.rst "Memory")."""

from __future__ import annotations

from minibox.cgroups import fs


def apply(d: str, res: dict) -> None:
    mem = res.get("memory") or {}
    if "limit" in mem:
        fs.write(f"{d}/memory.max", _v(mem["limit"]),
                 "--memory: above this the kernel reclaims, then OOM-kills in the group")
    if "swap" in mem:
        # OCI's swap is memory+swap (the v1 meaning); v2 limits swap alone (runc converts
        # the same way).
        swap = -1 if mem["swap"] < 0 or mem.get("limit", -1) < 0 else mem["swap"] - mem["limit"]
        fs.write(f"{d}/memory.swap.max", _v(swap), "--memory-swap: swap the group may use")
    if "reservation" in mem:
        fs.write(f"{d}/memory.low", _v(mem["reservation"]),
                 "--memory-reservation: memory protected from reclaim")


def _v(n: int) -> str:
    return "max" if n < 0 else str(n)


def oom_killed(d: str) -> bool:
    return fs.read_keyed(f"{d}/memory.events").get("oom_kill", 0) > 0


def stats(d: str) -> dict:
    st = fs.read_keyed(f"{d}/memory.stat")
    return {"memory_usage": fs.read_int(f"{d}/memory.current") - st.get("inactive_file", 0),
            "memory_limit": fs.read_int(f"{d}/memory.max")}
