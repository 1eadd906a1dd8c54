"""v1 net_cls: tag the group's packets with a class id for tc(8) (cgroup-v1/net_cls.rst)."""

from __future__ import annotations

from minibox.cgroups import fs


def apply(d: str, res: dict) -> None:
    classid = (res.get("network") or {}).get("classID")
    if classid is not None:
        fs.write(f"{d}/net_cls.classid", classid,
                 "--net-cls-classid: traffic control can match the group's packets by this")
