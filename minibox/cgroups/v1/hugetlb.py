"""v1 hugetlb: a limit per huge page size (cgroup-v1/hugetlb.rst)."""

from __future__ import annotations

from minibox.cgroups import fs


def apply(d: str, res: dict) -> None:
    for lim in res.get("hugepageLimits") or []:
        fs.write(f"{d}/hugetlb.{lim['pageSize']}.limit_in_bytes", lim["limit"],
                 "--hugetlb-limit: huge pages of this size the group may use")
