"""`minibox VERB ...`: dispatch to the verb's module, importing only that one."""

from __future__ import annotations

import os
import sys

from minibox.errors import MiniboxError

# verb -> (module under minibox.cli, function); each function takes (argv) -> int.
VERBS = {
    "run": ("run", "main"),
    "create": ("run", "create_main"),
    "start": ("lifecycle", "start"),
    "stop": ("lifecycle", "stop"),
    "restart": ("lifecycle", "restart"),
    "kill": ("lifecycle", "kill"),
    "pause": ("lifecycle", "pause"),
    "unpause": ("lifecycle", "unpause"),
    "wait": ("lifecycle", "wait"),
    "rm": ("lifecycle", "rm"),
    "prune": ("lifecycle", "prune"),
    "ps": ("ps", "main"),
    "logs": ("logs", "main"),
    "exec": ("exec", "main"),
    "inspect": ("inspect", "inspect"),
    "top": ("inspect", "top"),
    "stats": ("inspect", "stats"),
    "mkrootfs": ("mkrootfs", "main"),
    "images": ("images", "images"),
    "import": ("images", "import_"),
    "history": ("images", "history"),
    "tag": ("images", "tag"),
    "rmi": ("images", "rmi"),
    "commit": ("images", "commit"),
    "export": ("images", "export"),
    "diff": ("images", "diff"),
    "save": ("archive", "save"),
    "load": ("archive", "load"),
    "pull": ("registry", "pull"),
    "push": ("registry", "push"),
    "login": ("registry", "login"),
    "logout": ("registry", "logout"),
    "search": ("registry", "search"),
    "network": ("network", "main"),
    "port": ("network", "port"),
    "_finish": ("lifecycle", "finish"),
}

# Verbs that clone or fork a container's process and then mostly wait: they run with
# Python's cycle collector off. A collection walks every tracked object and writes to
# its header, and in a child between clone(2) and execve(2) each page so written is a
# copy-on-write fault (the reason for gc.freeze() before fork in the gc docs); what
# these verbs allocate meanwhile is freed by reference counting.
_SHORT_AND_FORKING = {"run", "create", "start", "exec"}

USAGE = """usage: minibox [--root DIR] [--data-root DIR] [--config DIR] VERB [OPTIONS] ...

A container runtime that shows every kernel step it takes (add --explain).

  --root DIR  where container state lives (default /run/minibox, as runc's --root)
  --data-root DIR  where images live (default /var/lib/minibox; or MINIBOX_DATA_ROOT)
  --config DIR  registry credentials and certs.d (default ~/.minibox; or MINIBOX_CONFIG)

containers:
  run       run a command in a new container:  minibox run [OPTIONS] IMAGE|ROOTFS [CMD...]
  create    create a container without starting it (then: minibox start)
  start     start created or stopped containers
  stop      stop containers (SIGTERM, then SIGKILL after -t seconds)
  restart   stop, then start containers
  kill      send a signal to containers (-s, default KILL)
  pause     freeze every process of containers (cgroup freezer)
  unpause   thaw paused containers
  wait      wait for containers to end; print their exit codes
  rm        remove containers (-f: kill running ones first)
  prune     remove every stopped container
  ps        list containers (-a: all)
  logs      show a container's output (-f, --tail N, -t)
  exec      run a command in a running container (-i, -t, -e, -w, -u)
  inspect   show a container's state and configuration as JSON
  top       list a container's processes
  stats     show cpu, memory and pids use (--no-stream)
  port      list a container's published ports

networks:
  network   create, ls, inspect, rm, connect, disconnect bridge networks

images:
  images    list images (-a, -q, --digests, --filter, --format json, --tree)
  import    make an image from a rootfs tarball or directory:  minibox import FILE|DIR [REF]
  history   show the layers of an image, newest first
  tag       give an image another name:  minibox tag SOURCE TARGET
  rmi       remove images (-f: even if several names or a stopped container use it)
  commit    make an image from a container's changes:  minibox commit CONTAINER [REF]
  export    write a container's filesystem as a tar:  minibox export -o FILE CONTAINER
  diff      list the files a container added (A), changed (C) or deleted (D)
  save      write images to a tar archive:  minibox save -o FILE [--format oci-archive] IMAGE...
  load      read images from a tar archive (docker save, podman save, OCI):  minibox load -i FILE

registries:
  pull      download an image from a registry:  minibox pull HOST:PORT/NAME[:TAG|@DIGEST]
  push      upload an image to a registry:  minibox push HOST:PORT/NAME[:TAG]
  login     store credentials for a registry (-u USER --password-stdin HOST:PORT)
  logout    remove a registry's stored credentials
  search    list a private registry's repositories and tags:  minibox search HOST:PORT/TERM

tools:
  mkrootfs  build the default busybox root filesystem:  minibox mkrootfs [DIR]
"""

ROOT = "/run/minibox"


def store():  # noqa: ANN201 - imported lazily on purpose
    from minibox.runtime.state import Store

    return Store(ROOT)


def main(argv: list[str] | None = None) -> int:
    global ROOT
    args = sys.argv[1:] if argv is None else argv
    while args and args[0].startswith(("--root", "--data-root", "--config")):
        if args[0] == "--root" and len(args) > 1:
            ROOT, args = os.path.abspath(args[1]), args[2:]
        elif args[0].startswith("--root="):
            ROOT, args = os.path.abspath(args[0][7:]), args[1:]
        elif args[0] == "--data-root" and len(args) > 1:
            os.environ["MINIBOX_DATA_ROOT"], args = os.path.abspath(args[1]), args[2:]
        elif args[0].startswith("--data-root="):
            os.environ["MINIBOX_DATA_ROOT"], args = os.path.abspath(args[0][12:]), args[1:]
        elif args[0] == "--config" and len(args) > 1:
            # docker's --config: where credentials (config.json) and certs.d live.
            os.environ["MINIBOX_CONFIG"], args = os.path.abspath(args[1]), args[2:]
        elif args[0].startswith("--config="):
            os.environ["MINIBOX_CONFIG"], args = os.path.abspath(args[0][9:]), args[1:]
        else:
            sys.stderr.write(f"minibox: flag needs an argument: {args[0]}\n")
            return 125
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 125
    if args[0] in ("-v", "--version", "version"):
        from minibox import __version__

        print(f"minibox version {__version__}")
        return 0
    verb = args[0]
    if verb not in _SHORT_AND_FORKING:
        # The launcher started with the cycle collector off (csrc/launcher.c): verbs
        # that run long or build big object graphs (pull, build...) want it back.
        import gc

        gc.enable()
    if verb == "run" and os.geteuid() == 0:
        from minibox.cgroups import warm

        warm.start()
    if verb not in VERBS:
        sys.stderr.write(f"minibox: unknown command \"{verb}\" (see: minibox --help)\n")
        return 125
    try:
        modname, func = VERBS[verb]
        # __import__ rather than importlib: importlib itself costs import time.
        __import__(f"minibox.cli.{modname}")
        module = sys.modules[f"minibox.cli.{modname}"]
        return getattr(module, func)(args[1:])
    except MiniboxError as err:
        sys.stderr.write(f"minibox: {err.message}\n")
        return err.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`minibox inspect X | head`): nothing more to say.
        _silence_stdout()
        return 0
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


def _silence_stdout() -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)


def _name_process() -> None:
    """Show as `minibox` in ps and /proc/PID/comm, not as the interpreter that runs it."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write("minibox")
    except OSError:
        pass


def entry() -> None:
    """The console script: run, flush, and leave without interpreter teardown.

    Finalising the interpreter (module and object cleanup) costs about as much as
    creating the container; nothing minibox holds needs it, so exit at once.
    """
    _name_process()
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    finally:
        os._exit(code)


def die_unless_root(verb: str) -> None:
    if os.geteuid() != 0:
        raise MiniboxError(f"{verb} needs root: namespaces and mounts are root's "
                           f"(try: sudo minibox {verb} ...)")
