"""Progress bars, one per layer, for pull and push when stderr is a terminal.

Each layer is one line (`4f3364085fe8: Downloading [=====>    ] 12.3MB/67.0MB 45.1MB/s`),
redrawn in place with ANSI cursor movement (ECMA-48 CUU "ESC [ n A", EL "ESC [ K") at
most ten times a second; the line ends as the layer's final word ("Pull complete").
Off a terminal (or with MINIBOX_NO_PROGRESS set) nothing is drawn and the final words
are printed as plain lines. Layers move in several threads at once: one lock.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

from minibox.cli.units import bar, bar_size


class Bars:
    def __init__(self, label: str) -> None:
        self.label = label
        self.on = os.isatty(2) and not os.environ.get("MINIBOX_NO_PROGRESS")
        self.rows: dict[str, list] = {}  # short id -> [done, total, start, final text]
        self.drawn = 0
        self.shown = 0.0
        self.lock = threading.Lock()

    def blob(self, digest: str, size: int | None) -> Callable[[int], None]:
        """The byte callback for one blob (a layer gets a bar; the config does not)."""
        short = digest.split(":")[-1][:12]
        with self.lock:
            self.rows.setdefault(short, [0, size, time.monotonic(), None])

        def tick(n: int) -> None:
            with self.lock:
                row = self.rows.setdefault(short, [0, size, time.monotonic(), None])
                row[0] += n
                self._draw()

        return tick

    def status(self, digest: str, text: str) -> None:
        """A layer's state between its bytes and its final word (terminal only)."""
        if not self.on:
            return
        with self.lock:
            row = self.rows.setdefault(digest.split(":")[-1][:12],
                                       [0, None, time.monotonic(), None])
            row[3] = text
            self._draw(force=True)

    def say(self, line: str) -> None:
        """A result line: a layer's final word becomes its row on a terminal."""
        short, sep, text = line.partition(": ")
        is_layer = sep and len(short) == 12 and all(c in "0123456789abcdef" for c in short)
        if not (self.on and is_layer):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
            return
        with self.lock:
            row = self.rows.setdefault(short, [0, None, time.monotonic(), None])
            row[3] = text
            self._draw(force=True)

    def _draw(self, force: bool = False) -> None:
        if not self.on:
            return
        now = time.monotonic()
        if not force and now - self.shown < 0.1:
            return
        self.shown = now
        out = [f"\x1b[{self.drawn}A"] if self.drawn else []
        for short, (done, total, start, final) in self.rows.items():
            if final:
                text = final
            else:
                rate = done / max(now - start, 1e-3)
                drawn = bar(done, total) + " " if total else ""
                amount = f"{bar_size(done)}/{bar_size(total)}" if total else bar_size(done)
                text = f"{self.label} {drawn}{amount} {bar_size(rate)}/s"
            out.append(f"\r{short}: {text}\x1b[K\n")
        self.drawn = len(self.rows)
        sys.stderr.write("".join(out))
        sys.stderr.flush()
