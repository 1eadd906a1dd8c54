"""The one network step the foundation needs: bring `lo` up in a new network namespace."""

from __future__ import annotations

from minibox._native import lib
from minibox.kernel.syscall import native


def link_up(ifname: str) -> None:
    native(
        lib.mb_link_up,
        (ifname.encode(),),
        f"ioctl(SIOCSIFFLAGS, {ifname}, IFF_UP)",
        "a new network namespace starts with lo down; without it 127.0.0.1 is unreachable",
        "netdevice(7)",
    )
