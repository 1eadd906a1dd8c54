"""v2 pids: pids.max (cgroup-v2.rst "PID")."""

from __future__ import annotations

from minibox.cgroups import fs


def apply(d: str, res: dict) -> None:
    limit = (res.get("pids") or {}).get("limit")
    if limit is not None:
        fs.write(f"{d}/pids.max", "max" if limit <= 0 else limit,
                 "--pids-limit: fork and clone fail with EAGAIN beyond this")


def stats(d: str) -> dict:
    return {"pids": fs.read_int(f"{d}/pids.current"), "pids_limit": fs.read_int(f"{d}/pids.max")}
