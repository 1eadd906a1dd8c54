"""`minibox logs`: what a detached container wrote, from the monitor's json-file log."""

from __future__ import annotations

import json
import sys
import time

from minibox.cli.flags import FlagParser
from minibox.cli.main import store
from minibox.errors import MiniboxError


def _emit(line: bytes, timestamps: bool) -> None:
    try:
        rec = json.loads(line)
    except ValueError:
        return  # a partial last line that the monitor is still writing
    text = rec.get("log", "")
    if timestamps:
        text = f"{rec.get('time', '')} {text}"
    out = sys.stderr if rec.get("stream") == "stderr" else sys.stdout
    out.write(text)
    out.flush()


def main(argv: list[str]) -> int:
    p = FlagParser("minibox logs", "minibox logs [OPTIONS] CONTAINER",
                   "Show a container's stdout and stderr.", positionals=("CONTAINER",))
    p.add("-f", "--follow", kind="bool", help="keep printing new output until it ends")
    p.add("-n", "--tail", default="all", metavar="N", help="only the last N lines")
    p.add("-t", "--timestamps", kind="bool", help="show each line's time")
    o = p.parse(argv)
    if o.tail != "all" and not o.tail.isdigit():
        raise MiniboxError(f'invalid --tail "{o.tail}": use a number or all')
    st = store()
    cid = st.resolve(o.container)
    path = st.path(cid, "ctr.log")
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        f = None
    pending = b""
    if f is not None:
        lines = f.read().split(b"\n")
        pending = lines.pop()  # no newline yet: still being written
        if o.tail != "all":
            lines = lines[-int(o.tail):] if int(o.tail) else []
        for line in lines:
            _emit(line, o.timestamps)
    if not o.follow:
        return 0
    from minibox.runtime.state import refresh

    while True:
        if f is None:
            try:
                f = open(path, "rb")
            except FileNotFoundError:
                pass
        chunk = f.read() if f is not None else b""
        if chunk:
            data = pending + chunk
            lines = data.split(b"\n")
            pending = lines.pop()
            for line in lines:
                _emit(line, o.timestamps)
            continue
        try:
            state = refresh(st.load(cid))
        except MiniboxError:
            return 0  # removed
        if state["status"] == "stopped":
            # One last read: the monitor has written everything before the end is recorded.
            rest = f.read() if f is not None else b""
            for line in (pending + rest).split(b"\n"):
                if line:
                    _emit(line, o.timestamps)
            return 0
        time.sleep(0.05)
