"""User namespace id maps, written by the parent into /proc/PID/{uid_map,setgroups,gid_map}."""

from __future__ import annotations

from minibox.kernel.syscall import python


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def write_maps(pid: int, uid_map: list[dict], gid_map: list[dict]) -> None:
    """Write the maps in the order the kernel requires (user_namespaces(7)).

    setgroups must be denied before an unprivileged-style gid_map is written, and a map
    can be written only once.
    """
    uids = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in uid_map)
    gids = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in gid_map)
    python(_write, (f"/proc/{pid}/uid_map", uids), f'write /proc/{pid}/uid_map "{uids.strip()}"',
           "container uid 0.. is host uid range; outside it container root is unprivileged",
           "user_namespaces(7)")
    python(_write, (f"/proc/{pid}/setgroups", "deny"), f'write /proc/{pid}/setgroups "deny"',
           "stops container root from dropping groups to bypass negative group permissions",
           "user_namespaces(7)")
    python(_write, (f"/proc/{pid}/gid_map", gids), f'write /proc/{pid}/gid_map "{gids.strip()}"',
           "the same mapping for group ids", "user_namespaces(7)")
