"""The narrator: every kernel step minibox takes is reported here, by the wrapper that took it.

`--explain` turns the narrator on. Because the wrappers in minibox/kernel/ (and later
minibox/cgroups/, minibox/network/) call `step()` right after doing the real call with
the real arguments and result, the story printed can never differ from what happened.
The child side of a container narrates too: both processes write whole lines to the
same stderr with one write(2) each, so the lines come out in the order the steps ran.
"""

from __future__ import annotations

import os

_enabled = False
_fd = 2
# Steps taken before the flags are parsed (whether --explain was given is not known
# yet) wait here, so that they are told in the order they happened.
_early: list[str] | None = []


def enable(fd: int = 2) -> None:
    """Start narrating to file descriptor `fd` (stderr by default)."""
    global _enabled, _fd, _early
    _enabled = True
    _fd = fd
    early, _early = _early, None
    for line in early or []:
        _write(line)


def settle() -> None:
    """The flags are parsed and --explain was not given: forget the early steps."""
    global _early
    _early = None


def enabled() -> bool:
    return _enabled


def step(call: str, result: object, why: str, man: str) -> None:
    """Report one kernel step: the call as made, its result, why it is needed, the man page."""
    line = f"[explain] {call} = {result}\n          why: {why} [{man}]\n"
    if not _enabled:
        if _early is not None:
            _early.append(line)
        return
    _write(line)


def _write(line: str) -> None:
    try:
        os.write(_fd, line.encode("utf-8", "replace"))
    except OSError:
        pass


def failed(call: str, err: OSError, why: str, man: str) -> None:
    """Report a step the kernel refused, with the errno name."""
    import errno as _errno

    name = _errno.errorcode.get(err.errno or 0, str(err.errno))
    step(call, f"-1 {name} ({os.strerror(err.errno or 0)})", why, man)
