"""v2 hugetlb: hugetlb.<size>.max (cgroup-v2.rst "HugeTLB")."""

from __future__ import annotations

import os

from minibox.cgroups import fs


def apply(d: str, res: dict) -> None:
    for lim in res.get("hugepageLimits") or []:
        fs.write(f"{d}/hugetlb.{lim['pageSize']}.max", lim["limit"],
                 "--hugetlb-limit: huge pages of this size the group may use")
        rsvd = f"{d}/hugetlb.{lim['pageSize']}.rsvd.max"
        if os.path.exists(rsvd):
            fs.write(rsvd, lim["limit"], "--hugetlb-limit: huge page reservations, too")
