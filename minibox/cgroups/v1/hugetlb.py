"""v1 hugetlb: a limit per huge page size (cgroup-v1/hugetlb.rst)."""

from __future__ import annotations

import os

from minibox.cgroups import fs


def apply(d: str, res: dict) -> None:
    for lim in res.get("hugepageLimits") or []:
        fs.write(f"{d}/hugetlb.{lim['pageSize']}.limit_in_bytes", lim["limit"],
                 "--hugetlb-limit: huge pages of this size the group may use")
        rsvd = f"{d}/hugetlb.{lim['pageSize']}.rsvd.limit_in_bytes"
        if os.path.exists(rsvd):
            # Limit reservations too, so mmap fails up front instead of a SIGBUS at
            # first touch (runc sets both).
            fs.write(rsvd, lim["limit"], "--hugetlb-limit: huge page reservations, too")
