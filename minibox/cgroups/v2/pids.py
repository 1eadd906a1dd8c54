"""v2 pids: pids.max and pids.current (cgroup-v2.rst "PID").

The files, their values and their meaning are the same as in v1, so is the code.
"""

from minibox.cgroups.v1.pids import apply, stats

__all__ = ["apply", "stats"]
