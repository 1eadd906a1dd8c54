"""docker's resource flags -> OCI `linux.resources`, validated before anything is created.

Names, units and messages follow docker (`docker run --help`, daemon/daemon_unix.go's
verifyPlatformContainerResources); values are checked against this host (CPUs online,
memory nodes, huge page sizes, which weight files exist).
"""

from __future__ import annotations

import os

from minibox.errors import MiniboxError

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
MIN_MEMORY = 6 * (1 << 20)


def parse_bytes(value: str, flag: str) -> int:
    """docker's RAMInBytes: 512, 512k, 64m, 1.5g, 2gb (binary units)."""
    text = value.strip().lower()
    num = text.rstrip("bkmgtp")
    unit = text[len(num):]
    if unit.endswith("b") and len(unit) == 2:
        unit = unit[0]
    try:
        if unit not in _UNITS or not num:
            raise ValueError
        n = float(num)
        if n < 0:
            raise ValueError
    except ValueError:
        raise MiniboxError(f'invalid argument "{value}" for "{flag}" flag: '
                           f"invalid size: '{value}'") from None
    return int(n * _UNITS[unit])


def parse_list(text: str) -> set[int]:
    """A cpuset list: 0-2,5."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(part)
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _online(path: str) -> tuple[set[int], str]:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        text = "0"
    return parse_list(text), text


def _check_set(value: str, path: str, what: str, flag: str) -> str:
    try:
        wanted = parse_list(value)
    except ValueError:
        raise MiniboxError(f'invalid argument "{value}" for "{flag}" flag: '
                           f"invalid format, use e.g. 0-1,3") from None
    available, text = _online(path)
    missing = sorted(wanted - available)
    if missing or not wanted:
        req = ",".join(str(n) for n in missing) or value
        raise MiniboxError(f"Requested {what} are not available - requested {req}, "
                           f"available: {text}")
    return value


def hugepage_sizes() -> dict[str, int]:
    """'2MB' -> 2097152, from /sys/kernel/mm/hugepages (the names cgroup files use)."""
    sizes: dict[str, int] = {}
    try:
        for entry in os.listdir("/sys/kernel/mm/hugepages"):
            kb = int(entry.split("-")[1].rstrip("kB"))
            for name, div in (("GB", 1 << 20), ("MB", 1 << 10), ("KB", 1)):
                if kb % div == 0:
                    sizes[f"{kb // div}{name}"] = kb * 1024
                    break
    except OSError:
        pass
    return sizes


def from_flags(opts: object) -> dict:
    """Read the resource flags off an argparse namespace; return OCI linux.resources."""
    res: dict = {}
    get = lambda name: getattr(opts, name, None)  # noqa: E731
    mem: dict = {}
    if get("memory") is not None:
        mem["limit"] = parse_bytes(opts.memory, "--memory")
        if mem["limit"] < MIN_MEMORY:
            raise MiniboxError("Minimum memory limit allowed is 6MB")
    if get("memory_swap") is not None:
        if "limit" not in mem:
            raise MiniboxError("You should always set the Memory limit when using "
                               "Memoryswap limit, see usage")
        mem["swap"] = -1 if opts.memory_swap.strip() == "-1" else parse_bytes(
            opts.memory_swap, "--memory-swap")
        if 0 <= mem["swap"] < mem["limit"]:
            raise MiniboxError("Minimum memoryswap limit should be larger than memory limit, "
                               "see usage")
    elif "limit" in mem:
        mem["swap"] = 2 * mem["limit"]  # docker: as much swap as memory, unless told
    if get("memory_reservation") is not None:
        mem["reservation"] = parse_bytes(opts.memory_reservation, "--memory-reservation")
        if "limit" in mem and mem["reservation"] > mem["limit"]:
            raise MiniboxError("Minimum memory limit can not be less than memory reservation "
                               "limit, see usage")
    if mem:
        res["memory"] = mem

    cpu: dict = {}
    ncpu = os.cpu_count() or 1
    if get("cpus") is not None:
        try:
            cpus = float(opts.cpus)
        except ValueError:
            raise MiniboxError(f'invalid argument "{opts.cpus}" for "--cpus" flag: '
                               "use a number such as 0.5") from None
        if get("cpu_period") is not None or get("cpu_quota") is not None:
            raise MiniboxError("Conflicting options: Nano CPUs and CPU Period/Quota "
                               "cannot both be set")
        if not 0.01 <= cpus <= ncpu:
            raise MiniboxError(f"Range of CPUs is from 0.01 to {ncpu:.2f}, as there are only "
                               f"{ncpu} CPUs available")
        cpu["period"] = 100000
        cpu["quota"] = int(cpus * 100000)
    if get("cpu_period") is not None:
        if not 1000 <= opts.cpu_period <= 1000000:
            raise MiniboxError("CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                               "than 1s (i.e. 1000000)")
        cpu["period"] = opts.cpu_period
    if get("cpu_quota") is not None:
        if 0 <= opts.cpu_quota < 1000:
            raise MiniboxError("CPU cfs quota can not be less than 1ms (i.e. 1000)")
        cpu["quota"] = opts.cpu_quota
    if get("cpu_shares") is not None:
        if not 2 <= opts.cpu_shares <= 262144:
            raise MiniboxError(f"invalid --cpu-shares {opts.cpu_shares}: use 2 to 262144 "
                               "(1024 is the default weight)")
        cpu["shares"] = opts.cpu_shares
    if get("cpuset_cpus") is not None:
        cpu["cpus"] = _check_set(opts.cpuset_cpus, "/sys/devices/system/cpu/online", "CPUs",
                                 "--cpuset-cpus")
    if get("cpuset_mems") is not None:
        cpu["mems"] = _check_set(opts.cpuset_mems, "/sys/devices/system/node/online",
                                 "memory nodes", "--cpuset-mems")
    if cpu:
        res["cpu"] = cpu

    if get("pids_limit") is not None:
        if opts.pids_limit < -1:
            raise MiniboxError(f"invalid --pids-limit {opts.pids_limit}: use a positive number, "
                               "or -1 (or 0) for no limit")
        res["pids"] = {"limit": opts.pids_limit}

    if get("blkio_weight") is not None:
        if not 10 <= opts.blkio_weight <= 1000:
            raise MiniboxError("Range of blkio weight is from 10 to 1000")
        res["blockIO"] = {"weight": opts.blkio_weight}

    if get("net_cls_classid") is not None:
        try:
            classid = int(opts.net_cls_classid, 0)
            if not 0 <= classid <= 0xFFFFFFFF:
                raise ValueError
        except ValueError:
            raise MiniboxError(f'invalid --net-cls-classid "{opts.net_cls_classid}": use a '
                               "number such as 0x100001 (major 0x10, minor 0x1)") from None
        res.setdefault("network", {})["classID"] = classid
    for item in get("net_prio") or []:
        name, eq, prio = item.partition("=")
        if not eq or not name or not prio.isdigit() or int(prio) > 0xFFFFFFFF:
            raise MiniboxError(f'invalid --net-prio "{item}": use IFACE=PRIORITY, e.g. eth0=5 '
                               "(priority 0 to 4294967295)")
        if "/" in name or not os.path.exists(f"/sys/class/net/{name}"):
            # net_prio.ifpriomap names the host's interfaces (cgroup-v1/net_prio.rst).
            raise MiniboxError(f'invalid --net-prio "{item}": the host has no interface {name}')
        res.setdefault("network", {}).setdefault("priorities", []).append(
            {"name": name, "priority": int(prio)})
    sizes = None
    for item in get("hugetlb_limit") or []:
        size, eq, limit = item.partition("=")
        sizes = sizes or hugepage_sizes()
        if not eq or size.upper() not in sizes:
            raise MiniboxError(f'invalid --hugetlb-limit "{item}": use SIZE=BYTES with a huge '
                               f"page size of this kernel ({', '.join(sorted(sizes))})")
        res.setdefault("hugepageLimits", []).append(
            {"pageSize": size.upper(), "limit": parse_bytes(limit, "--hugetlb-limit")})

    rules = [parse_device_rule(r) for r in get("device_cgroup_rule") or []]
    if rules:
        res["extraDeviceRules"] = rules
    return res


def parse_device_rule(text: str) -> dict:
    """`c 1:3 rwm`, `b *:* m`, `a` (devices.allow syntax, as docker's --device-cgroup-rule)."""
    parts = text.split()
    bad = MiniboxError(f'invalid --device-cgroup-rule "{text}": use TYPE MAJOR:MINOR ACCESS, '
                       "e.g. 'c 1:3 rwm'")
    if parts == ["a"]:
        return {"allow": True, "type": "a", "access": "rwm"}
    if len(parts) != 3 or parts[0] not in ("a", "b", "c"):
        raise bad
    major, _, minor = parts[1].partition(":")
    access = parts[2]
    if not access or any(c not in "rwm" for c in access):
        raise bad

    def num(x: str) -> int | None:
        if x == "*":
            return None
        if not x.isdigit():
            raise bad
        return int(x)

    return {"allow": True, "type": parts[0], "major": num(major), "minor": num(minor),
            "access": access}


# The devices every container may use (runtime-spec config-linux.md default devices,
# plus mknod of anything as docker allows): deny all first, then these.
DEFAULT_DEVICE_RULES = [
    {"allow": False, "type": "a", "access": "rwm"},
    {"allow": True, "type": "c", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "b", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},   # null
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},   # zero
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},   # full
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},   # random
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},   # urandom
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},   # tty
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},   # console
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},   # ptmx
    {"allow": True, "type": "c", "major": 136, "minor": None, "access": "rwm"},  # pts/*
]
