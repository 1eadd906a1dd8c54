"""Progress of long work: a line rewritten in place on a terminal, nothing otherwise.

docker draws progress bars only when its output is a terminal; piped or logged output
gets the plain result lines. The bar goes to stderr so stdout stays the result.
"""

from __future__ import annotations

import os
import sys
import time

from minibox.cli.units import bar, bar_size


class Progress:
    """`p = Progress("Copying"); p(nbytes)` as bytes go by; `p.done()` at the end."""

    def __init__(self, label: str, total: int | None = None) -> None:
        self.label = label
        self.total = total
        self.count = 0
        self.shown = 0.0
        # Only for a person watching: stdout a terminal (as docker decides), and stderr too.
        self.on = os.isatty(1) and os.isatty(2) and not os.environ.get("MINIBOX_NO_PROGRESS")

    def __call__(self, n: int) -> None:
        self.count += n
        if not self.on:
            return
        t = time.monotonic()
        if t - self.shown < 0.1:
            return
        self.shown = t
        if self.total:
            text = (f"{self.label} {bar(self.count, self.total)} "
                    f"{bar_size(self.count)}/{bar_size(self.total)}")
        else:
            text = f"{self.label} {bar_size(self.count)}"
        sys.stderr.write("\r" + text + "\x1b[K")
        sys.stderr.flush()

    def done(self) -> None:
        if self.on and self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
