"""The container's description: an OCI runtime-spec shaped config (config-linux.md, config.md).

The docker-like CLI builds it from flags; a runc-like CLI reads it from config.json; the
engine only ever looks at this dict.
"""

from __future__ import annotations

import os

from minibox.errors import MiniboxError

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# OCI namespace type -> the short name /proc/PID/ns uses.
NS_TYPES = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
}

# Docker's defaults (OCI-NOTES.md): paths hidden from the container, paths made read-only.
MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# The filesystems every container gets (runtime-spec config.md "mounts", runc's defaults).
DEFAULT_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
]

# The default user namespace mapping: container ids 0..65535 are host ids 100000..165535.
USERNS_HOST_ID = 100000
USERNS_SIZE = 65536

# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_HOSTNAME = (r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
             r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def check_hostname(name: str) -> str:
    import re

    if len(name) > 64 or not re.match(_HOSTNAME, name):
        raise MiniboxError(
            f'invalid hostname "{name}": use letters, digits, "-" and ".", at most 64 characters'
        )
    return name


def parse_env(items: list[str], env_files: list[str]) -> list[str]:
    """docker's -e and --env-file: KEY=VALUE, or KEY alone to take the host's value."""
    entries: list[str] = []
    for path in env_files:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError as err:
            raise MiniboxError(f"cannot read env file {path}: {err.strerror}") from None
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                entries.append(line)
    entries.extend(items)
    env: list[str] = []
    for item in entries:
        key, eq, value = item.partition("=")
        if not key or "\0" in item or key != key.strip():
            raise MiniboxError(f'invalid environment variable "{item}": use KEY=VALUE')
        if eq:
            env.append(f"{key}={value}")
        elif key in os.environ:
            env.append(f"{key}={os.environ[key]}")
    return env


def merge_env(base: list[str], extra: list[str]) -> list[str]:
    """Later entries win, keeping the first position of each key."""
    order: dict[str, str] = {}
    for item in base + extra:
        key = item.partition("=")[0]
        order[key] = item
    return list(order.values())


def namespaces_of(spec: dict) -> list[str]:
    """The short names of the namespaces to create (those without a path to join)."""
    return [NS_TYPES[ns["type"]] for ns in spec["linux"]["namespaces"] if not ns.get("path")]


def has_namespace(spec: dict, short: str) -> bool:
    return short in namespaces_of(spec)


def new_spec(rootfs: str, args: list[str]) -> dict:
    """A spec with docker's defaults: every namespace but user, default mounts and masks."""
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": [f"PATH={DEFAULT_PATH}"],
            "cwd": "/",
        },
        "root": {"path": os.path.abspath(rootfs), "readonly": False},
        "hostname": "",
        "mounts": [dict(m, options=list(m["options"])) for m in DEFAULT_MOUNTS],
        "linux": {
            "namespaces": [{"type": t} for t in
                           ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "resources": {},
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
        "annotations": {},
    }


def drop_namespace(spec: dict, oci_type: str) -> None:
    spec["linux"]["namespaces"] = [
        ns for ns in spec["linux"]["namespaces"] if ns["type"] != oci_type
    ]


def add_userns(spec: dict, host_id: int = USERNS_HOST_ID, size: int = USERNS_SIZE) -> None:
    spec["linux"]["namespaces"].insert(0, {"type": "user"})
    mapping = [{"containerID": 0, "hostID": host_id, "size": size}]
    spec["linux"]["uidMappings"] = mapping
    spec["linux"]["gidMappings"] = [dict(m) for m in mapping]
