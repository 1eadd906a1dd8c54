"""`minibox save` and `minibox load`: images to and from docker-archive and OCI archives.

    minibox save [-o FILE] [--format docker-archive|oci-archive] IMAGE [IMAGE...]
    minibox load [-i FILE] [-q]

As docker: save writes to stdout when no -o is given (never to a terminal); load reads
stdin when no -i is given and prints `Loaded image: NAME:TAG` (or `Loaded image ID:` for
an image without a name) per image. On a terminal both draw a progress bar per blob;
otherwise load prints one plain line per layer it copied.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from minibox.cli.flags import FlagParser
from minibox.cli.units import human_size


class Progress:
    """Per-blob progress: a redrawn bar on a terminal, or one plain line per finished blob."""

    def __init__(self, verb: str, tty: bool, plain: bool) -> None:
        self.verb, self.tty, self.plain = verb, tty, plain
        self._what: str | None = None
        self._done = 0
        self._drawn = 0.0

    def __call__(self, what: str, done: int, total: int | None) -> None:
        if what != self._what:
            self.finish()
            self._what = what
        self._done = done
        if self.tty:
            now = time.monotonic()
            if now - self._drawn >= 0.1 or (total is not None and done >= total):
                self._drawn = now
                self._draw(total)

    def _label(self) -> str:
        what = self._what or ""
        return what.split(":", 1)[-1][:12]

    def _draw(self, total: int | None) -> None:
        width = 40
        if total:
            filled = min(width, self._done * width // max(total, 1))
            bar = "=" * filled + (">" if filled < width else "") + " " * (width - filled - 1)
            amount = f"{human_size(self._done)}/{human_size(total)}"
        else:
            bar, amount = " " * width, human_size(self._done)
        sys.stdout.write(f"\r{self._label()}: {self.verb} [{bar[:width]}] {amount}\x1b[K")
        sys.stdout.flush()

    def finish(self) -> None:
        if self._what is None:
            return
        if self.tty:
            sys.stdout.write(f"\r{self._label()}: {self.verb} done "
                             f"{human_size(self._done)}\x1b[K\n")
        elif self.plain:
            sys.stdout.write(f"{self.verb} {self._what} {human_size(self._done)}\n")
        sys.stdout.flush()
        self._what = None


def _store() -> Any:
    from minibox.image.store import Store

    return Store()  # the data root: --data-root, MINIBOX_DATA_ROOT, or /var/lib/minibox


def _narrate(on: bool) -> None:
    from minibox import explain

    if on:
        explain.enable()
    else:
        explain.settle()


def save(argv: list[str]) -> int:
    p = FlagParser("minibox save", "minibox save [OPTIONS] IMAGE [IMAGE...]",
                   "Save images to a tar archive (streamed to stdout by default).",
                   positionals=("IMAGE",), rest="more")
    p.add("-o", "--output", metavar="FILE", help="write to a file instead of stdout")
    p.add("--format", metavar="FORMAT", choices=("docker-archive", "oci-archive"),
          default="docker-archive",
          help="docker-archive (docker load, podman load) or oci-archive (an OCI layout)")
    p.add("--explain", kind="bool", help="tell each file step on stderr")
    o = p.parse(argv)
    _narrate(o.explain)
    from minibox.image.archive.save import save as do_save

    progress = Progress("Saving", tty=True, plain=False) \
        if o.output and sys.stdout.isatty() else None
    do_save(_store(), [o.image, *o.more], o.output, o.format, progress)
    if progress:
        progress.finish()
    return 0


def load(argv: list[str]) -> int:
    p = FlagParser("minibox load", "minibox load [OPTIONS]",
                   "Load images from a tar archive (docker-archive or OCI; gzip, bzip2, "
                   "xz too), or STDIN.")
    p.add("-i", "--input", metavar="FILE", help="read from a file (or an OCI layout "
          "directory) instead of stdin")
    p.add("-q", "--quiet", kind="bool", help="no progress output")
    p.add("--explain", kind="bool", help="tell each file step on stderr")
    o = p.parse(argv)
    _narrate(o.explain)
    if o.input is None and sys.stdin.isatty():
        from minibox.errors import MiniboxError

        # docker's check (cli/command/image/load.go): a terminal is not an archive.
        raise MiniboxError("requested load from stdin, but stdin is empty (use -i FILE or "
                           "redirect an archive)")
    from minibox.image.archive.load import load as do_load

    tty = sys.stdout.isatty()
    progress = None if o.quiet else Progress("Loading layer", tty=tty, plain=True)
    # Unpacking into layer directories is the long part: a bar on a terminal only.
    unpacking = Progress("Unpacking", tty=True, plain=False) if tty and not o.quiet else None

    def copied(what: str, done: int, total: int | None) -> None:
        if unpacking:
            unpacking.finish()
        progress(what, done, total)  # type: ignore[misc]

    def unpacked(what: str, done: int, total: int | None) -> None:
        if progress:
            progress.finish()
        unpacking(what, done, total)  # type: ignore[misc]

    loaded = do_load(_store(), o.input, copied if progress else None,
                     unpacked if unpacking else None)
    for bar in (progress, unpacking):
        if bar:
            bar.finish()
    for image in loaded:
        for ref in image.refs:
            print(f"Loaded image: {ref}")
        if not image.refs:
            print(f"Loaded image ID: {image.id}")
    return 0
