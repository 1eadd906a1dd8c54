"""Lifecycle verbs: start, stop, restart, kill, pause, unpause, wait, rm, prune (and _finish).

Like the docker CLI, each takes one or more containers (id, unique id prefix or name),
prints each one it acted on, and reports a failure per container, exiting 1 if any.
"""

from __future__ import annotations

import sys

from minibox.cli.flags import FlagParser
from minibox.cli.main import die_unless_root, store
from minibox.errors import MiniboxError


def _each(verb: str, refs: list[str], act, echo: bool = True) -> int:
    die_unless_root(verb)
    st = store()
    code = 0
    for ref in refs:
        try:
            cid = st.resolve(ref)
            out = act(st, cid)
            if echo:
                print(ref if out is None else out)
        except MiniboxError as err:
            sys.stderr.write(f"minibox: {err.message}\n")
            code = err.code or 1
    return code


def _parser(verb: str, usage: str, text: str) -> FlagParser:
    return FlagParser(f"minibox {verb}", f"minibox {verb} {usage}", text,
                      positionals=("CONTAINER",), rest="more")


def start(argv: list[str]) -> int:
    from minibox.runtime import container

    p = _parser("start", "CONTAINER [CONTAINER...]", "Start created or stopped containers.")
    o = p.parse(argv)
    return _each("start", [o.container] + o.more, container.start)


def stop(argv: list[str]) -> int:
    from minibox.runtime import control

    p = _parser("stop", "[-t SECONDS] CONTAINER [CONTAINER...]",
                "Stop containers: SIGTERM, then SIGKILL after the grace time.")
    p.add("-t", "--time", kind="int", default=10, metavar="SECONDS",
          help="seconds to wait before killing (default 10)")
    o = p.parse(argv)
    return _each("stop", [o.container] + o.more, lambda s, c: control.stop(s, c, o.time))


def restart(argv: list[str]) -> int:
    from minibox.runtime import container, control

    p = _parser("restart", "[-t SECONDS] CONTAINER [CONTAINER...]", "Stop, then start.")
    p.add("-t", "--time", kind="int", default=10, metavar="SECONDS",
          help="seconds to wait before killing (default 10)")
    o = p.parse(argv)

    def act(s, c):
        control.stop(s, c, o.time)
        container.start(s, c)

    return _each("restart", [o.container] + o.more, act)


def kill(argv: list[str]) -> int:
    from minibox.runtime import control

    p = _parser("kill", "[-s SIGNAL] CONTAINER [CONTAINER...]", "Send a signal (default KILL).")
    p.add("-s", "--signal", default="KILL", metavar="SIGNAL", help="signal name or number")
    o = p.parse(argv)
    sig = control.parse_signal(o.signal)
    return _each("kill", [o.container] + o.more, lambda s, c: control.kill(s, c, sig))


def pause(argv: list[str]) -> int:
    from minibox.runtime import control

    o = _parser("pause", "CONTAINER [CONTAINER...]",
                "Freeze every process of containers (cgroup freezer).").parse(argv)
    return _each("pause", [o.container] + o.more, control.pause)


def unpause(argv: list[str]) -> int:
    from minibox.runtime import control

    o = _parser("unpause", "CONTAINER [CONTAINER...]", "Thaw paused containers.").parse(argv)
    return _each("unpause", [o.container] + o.more, control.unpause)


def wait(argv: list[str]) -> int:
    from minibox.runtime import control

    o = _parser("wait", "CONTAINER [CONTAINER...]",
                "Wait for containers to end; print their exit codes.").parse(argv)
    return _each("wait", [o.container] + o.more, control.wait)


def rm(argv: list[str]) -> int:
    from minibox.runtime import control

    p = _parser("rm", "[-f] CONTAINER [CONTAINER...]", "Remove containers.")
    p.add("-f", "--force", kind="bool", help="kill a running container first")
    p.add("-v", "--volumes", kind="bool", help="accepted for docker compatibility")
    o = p.parse(argv)
    return _each("rm", [o.container] + o.more, lambda s, c: control.remove(s, c, o.force))


def prune(argv: list[str]) -> int:
    from minibox.runtime import control

    p = FlagParser("minibox prune", "minibox prune [-f]", "Remove every stopped container.")
    p.add("-f", "--force", kind="bool", help="do not ask (minibox never asks)")
    p.parse(argv)
    die_unless_root("prune")
    gone = control.prune(store())
    if gone:
        print("Deleted Containers:")
        for cid in gone:
            print(cid)
    print(f"Total reclaimed containers: {len(gone)}")
    return 0


def finish(argv: list[str]) -> int:
    """Internal: the monitor's hand-over when a detached container's init has ended."""
    from minibox.runtime import container

    cid, status = argv[0], int(argv[1])
    container.finish(store(), cid, status)
    return 0
