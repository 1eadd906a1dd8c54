"""`minibox VERB ...`: dispatch to the verb's module, importing only that one."""

from __future__ import annotations

import importlib
import os
import sys

from minibox.errors import MiniboxError

# verb -> module under minibox.cli; each module has `main(argv) -> int`.
VERBS = {
    "run": "run",
    "mkrootfs": "mkrootfs",
}

USAGE = """usage: minibox VERB [OPTIONS] ...

A container runtime that shows every kernel step it takes (add --explain).

verbs:
  run       run a command in a new container:  minibox run [OPTIONS] ROOTFS CMD [ARG...]
  mkrootfs  build the default busybox root filesystem:  minibox mkrootfs [DIR]
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 125
    if args[0] in ("-v", "--version", "version"):
        from minibox import __version__

        print(f"minibox version {__version__}")
        return 0
    verb = args[0]
    if verb not in VERBS:
        sys.stderr.write(f"minibox: unknown command \"{verb}\" (see: minibox --help)\n")
        return 125
    try:
        module = importlib.import_module(f"minibox.cli.{VERBS[verb]}")
        return module.main(args[1:])
    except MiniboxError as err:
        sys.stderr.write(f"minibox: {err.message}\n")
        return err.code
    except KeyboardInterrupt:
        return 130
    except OSError as err:
        # A kernel or file step failed where no nicer message was prepared.
        sys.stderr.write(f"minibox: {err}\n")
        return 125
    except Exception as err:  # noqa: BLE001 - one line, never a traceback, for users
        if os.environ.get("MINIBOX_DEBUG"):
            raise
        sys.stderr.write(f"minibox: internal error: {err!r} "
                         "(run with MINIBOX_DEBUG=1 for the traceback)\n")
        return 125


def entry() -> None:
    """The console script: run, flush, and leave without interpreter teardown.

    Finalising the interpreter (module and object cleanup) costs about as much as
    creating the container; nothing minibox holds needs it, so exit at once.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def die_unless_root(verb: str) -> None:
    if os.geteuid() != 0:
        raise MiniboxError(f"{verb} needs root: namespaces and mounts are root's "
                           f"(try: sudo minibox {verb} ...)")
