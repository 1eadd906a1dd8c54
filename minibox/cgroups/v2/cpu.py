"""v2 cpu: cpu.weight and cpu.max (cgroup-v2.rst "CPU")."""

from __future__ import annotations

from minibox.cgroups import fs


def shares_to_weight(shares: int) -> int:
    """runc's conversion: shares 2..262144 onto weight 1..10000, linearly."""
    return 1 + ((shares - 2) * 9999) // 262142


def apply(d: str, res: dict) -> None:
    cpu = res.get("cpu") or {}
    if "shares" in cpu:
        fs.write(f"{d}/cpu.weight", shares_to_weight(cpu["shares"]),
                 "--cpu-shares (as a v2 weight): relative share when CPUs are contended")
    if "quota" in cpu or "period" in cpu:
        quota = cpu.get("quota", -1)
        period = cpu.get("period", 100000)
        fs.write(f"{d}/cpu.max", f"{'max' if quota < 0 else quota} {period}",
                 "--cpus/--cpu-quota: CPU time the group may use per period")


def stats(d: str) -> dict:
    return {"cpu_usage_ns": fs.read_keyed(f"{d}/cpu.stat").get("usage_usec", 0) * 1000}
