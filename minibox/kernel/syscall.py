"""The one wrapper every kernel step goes through: make the call, narrate it, raise on failure."""

from __future__ import annotations

import os

from minibox import explain
from minibox._native import ffi

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections costs import time on the run path
    from collections.abc import Callable


def native(fn: Callable[..., int], args: tuple, call: str, why: str, man: str,
           *, silent_zero: bool = False) -> int:
    """Call a minibox._native function; on -1 raise OSError with errno and the call in the text.

    cffi keeps the errno of the last call per thread in `ffi.errno`. `silent_zero` is for
    clone: its 0 is the child's side of the same step, already told by the parent.
    """
    ret = fn(*args)
    if ret == -1:
        err = OSError(ffi.errno, f"{call}: {os.strerror(ffi.errno)}")
        explain.failed(call, err, why, man)
        raise err
    if not (silent_zero and ret == 0):
        explain.step(call, ret, why, man)
    return ret


def python(fn: Callable[..., object], args: tuple, call: str, why: str, man: str) -> object:
    """The same for a step Python's os module already offers (setresuid, write to /proc...)."""
    try:
        ret = fn(*args)
    except OSError as err:
        explain.failed(call, err, why, man)
        raise
    explain.step(call, 0 if ret is None else ret, why, man)
    return ret
