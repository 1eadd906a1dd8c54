"""v1 freezer: stop and resume every task of the group (cgroup-v1/freezer-subsystem.rst)."""

from __future__ import annotations

import time

from minibox.cgroups import fs


def apply(d: str, res: dict) -> None:
    """Nothing to set at creation: freezing is an action."""


def set_state(d: str, frozen: bool, timeout: float = 10.0) -> None:
    """Write FROZEN or THAWED and wait until the kernel reports it (FREEZING is transient)."""
    want = "FROZEN" if frozen else "THAWED"
    why = "pause: stop every task of the group" if frozen else "unpause: let the tasks run"
    deadline = time.monotonic() + timeout
    fs.write(f"{d}/freezer.state", want, why)
    while fs.read(f"{d}/freezer.state").strip() != want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{d}/freezer.state did not reach {want}")
        time.sleep(0.005)
        fs.write(f"{d}/freezer.state", want, why)


def state(d: str) -> str:
    return fs.read(f"{d}/freezer.state").strip()
