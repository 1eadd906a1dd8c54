"""v2 io: io.weight (cgroup-v2.rst "IO"), converted from blkio weight as runc does."""

from __future__ import annotations

import os

from minibox.cgroups import fs


def blkio_to_io_weight(weight: int) -> int:
    """blkio 10..1000 onto io 1..10000, linearly."""
    return 1 + (weight - 10) * 9999 // 990


def apply(d: str, res: dict) -> None:
    weight = (res.get("blockIO") or {}).get("weight")
    if weight is None:
        return
    for name, value in (("io.weight", f"default {blkio_to_io_weight(weight)}"),
                        ("io.bfq.weight", f"default {weight}")):
        if os.path.exists(f"{d}/{name}"):
            fs.write(f"{d}/{name}", value, "--blkio-weight: share of disk time under contention")
            return
    from minibox.errors import MiniboxError

    raise MiniboxError("--blkio-weight: this kernel's io controller has no weight file (it "
                       "needs the BFQ scheduler or io.cost); run without --blkio-weight")
