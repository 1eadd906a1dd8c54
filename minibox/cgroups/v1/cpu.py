"""v1 cpu: CFS shares, quota and period (scheduler/sched-bwc.rst)."""

from __future__ import annotations

from minibox.cgroups import fs


def apply(d: str, res: dict) -> None:
    cpu = res.get("cpu") or {}
    if "shares" in cpu:
        fs.write(f"{d}/cpu.shares", cpu["shares"],
                 "--cpu-shares: relative weight when CPUs are contended (default 1024)")
    if "period" in cpu:
        fs.write(f"{d}/cpu.cfs_period_us", cpu["period"],
                 "the CFS accounting period in microseconds")
    if "quota" in cpu:
        fs.write(f"{d}/cpu.cfs_quota_us", cpu["quota"],
                 "--cpus/--cpu-quota: CPU time the group may use per period")
