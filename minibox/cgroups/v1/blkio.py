"""v1 blkio: proportional block I/O weight (cgroup-v1/blkio-controller.rst)."""

from __future__ import annotations

import os

from minibox.cgroups import fs
from minibox.errors import MiniboxError


def apply(d: str, res: dict) -> None:
    weight = (res.get("blockIO") or {}).get("weight")
    if weight is None:
        return
    for name in ("blkio.weight", "blkio.bfq.weight"):
        if os.path.exists(f"{d}/{name}"):
            fs.write(f"{d}/{name}", weight, "--blkio-weight: share of disk time under contention")
            return
    raise MiniboxError("--blkio-weight: this kernel's blkio controller has no weight file "
                       "(it needs the BFQ I/O scheduler); run without --blkio-weight")
