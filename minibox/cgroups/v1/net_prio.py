"""v1 net_prio: per-interface priority of the group's packets (cgroup-v1/net_prio.rst)."""

from __future__ import annotations

from minibox.cgroups import fs


def apply(d: str, res: dict) -> None:
    for prio in (res.get("network") or {}).get("priorities", []):
        fs.write(f"{d}/net_prio.ifpriomap", f"{prio['name']} {prio['priority']}",
                 "--net-prio: the priority of the group's packets on this interface")
