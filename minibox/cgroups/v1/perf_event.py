"""v1 perf_event: groups processes so `perf stat -G GROUP` can count just them."""

from __future__ import annotations


def apply(d: str, res: dict) -> None:
    """Membership is all it takes; perf reads the group by name."""
