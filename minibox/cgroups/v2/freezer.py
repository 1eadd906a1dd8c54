"""v2 freezer: cgroup.freeze, confirmed by "frozen 1" in cgroup.events (cgroup-v2.rst)."""

from __future__ import annotations

import time

from minibox.cgroups import fs


def apply(d: str, res: dict) -> None:
    """Nothing to set at creation: freezing is an action."""


def set_state(d: str, frozen: bool, timeout: float = 10.0) -> None:
    fs.write(f"{d}/cgroup.freeze", 1 if frozen else 0,
             "pause: stop every task of the group" if frozen else "unpause: let the tasks run")
    deadline = time.monotonic() + timeout
    while fs.read_keyed(f"{d}/cgroup.events").get("frozen") != (1 if frozen else 0):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{d} did not become {'frozen' if frozen else 'thawed'}")
        time.sleep(0.005)


def state(d: str) -> str:
    return "FROZEN" if fs.read_keyed(f"{d}/cgroup.events").get("frozen") == 1 else "THAWED"
