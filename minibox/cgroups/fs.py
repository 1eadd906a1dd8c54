"""The one writer of cgroup files: every write is narrated (path and value) for --explain."""

from __future__ import annotations

import os

from minibox import explain


def write(path: str, value: str | int, why: str) -> None:
    text = str(value)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as err:
        explain.failed(f'write {path} "{text}"', err, why, "cgroups(7)")
        raise OSError(err.errno, f"cannot write {text!r} to {path}: {err.strerror}") from None
    explain.step(f'write {path} "{text}"', "ok", why, "cgroups(7)")


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def read_int(path: str, default: int = 0) -> int:
    try:
        text = read(path).strip()
    except OSError:
        return default
    if text == "max":
        return -1
    try:
        return int(text)
    except ValueError:
        return default


def read_keyed(path: str) -> dict[str, int]:
    """Files of `key value` lines (memory.stat, cpu.stat, memory.events...)."""
    out: dict[str, int] = {}
    try:
        for line in read(path).splitlines():
            key, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                out[key] = int(value)
    except OSError:
        pass
    return out


def mkdir(path: str, why: str) -> bool:
    """Create a group directory; True when it was created now."""
    try:
        os.mkdir(path)
    except FileExistsError:
        return False
    explain.step(f'mkdir("{path}")', 0, why, "cgroups(7)")
    return True


def rmdir(path: str, why: str) -> None:
    os.rmdir(path)
    explain.step(f'rmdir("{path}")', 0, why, "cgroups(7)")
