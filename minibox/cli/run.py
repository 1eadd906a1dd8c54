"""`minibox run [OPTIONS] ROOTFS CMD [ARG...]`: docker's flags -> an OCI spec -> the engine."""

from __future__ import annotations

import os
import sys

from minibox import explain
from minibox.cli.flags import FlagParser, Options
from minibox.cli.main import die_unless_root
from minibox.errors import MiniboxError
from minibox.runtime import spec as S


def parser() -> FlagParser:
    p = FlagParser("minibox run", "minibox run [OPTIONS] IMAGE|ROOTFS [CMD [ARG...]]",
                   "Run a command in a new container made of real namespaces. An argument "
                   "that starts with / or ., ends with /, or names an existing file is a "
                   "root filesystem directory; anything else names an image.",
                   positionals=("ROOTFS",), rest="command")
    a = p.add
    a("--entrypoint", metavar="CMD", help="run CMD instead of the image's Entrypoint "
      '("" clears it)')
    a("--explain", kind="bool", help="print every kernel step to stderr as it happens")
    a("-h", "--hostname", help="container hostname (default: the short container id)")
    a("-e", "--env", kind="append", metavar="KEY=VALUE", help="set an environment variable")
    a("--env-file", kind="append", metavar="FILE", help="read environment variables from FILE")
    a("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    a("-u", "--user", metavar="UID[:GID]", help="user (and group) to run the command as")
    a("--read-only", kind="bool", help="mount the container's root filesystem read-only")
    a("-v", "--volume", kind="append", metavar="HOST:CONTAINER[:ro]",
      help="bind mount a host path")
    a("--tmpfs", kind="append", metavar="PATH[:OPTS]", help="mount a tmpfs")
    a("--overlay", kind="bool",
      help="a throwaway writable overlayfs layer; the rootfs stays untouched")
    a("--userns", kind="bool",
      help=f"a user namespace: container root is host uid {S.USERNS_HOST_ID}")
    a("-t", "--tty", kind="bool", help="allocate a pseudo-terminal")
    a("-i", "--interactive", kind="bool", help="keep stdin open")
    a("-d", "--detach", kind="bool", help="run in the background; print the container id")
    a("--name", help="a name for the container (default: a random adjective_name)")
    a("--rm", kind="bool", help="remove the container when it ends (foreground runs always do)")
    a("--restart", metavar="POLICY", default="no",
      help="no, on-failure[:N], always or unless-stopped (carried out by the monitor)")
    a("--init", kind="bool", help="run a tiny reaper as PID 1 that forwards signals")
    a("--net", "--network", dest="net", metavar="MODE", default="none",
      help="none (only lo), bridge, a network's NAME, host, or container:ID")
    a("-p", "--publish", kind="append", metavar="[IP:]HOSTPORT:PORT[/PROTO]",
      help="publish a container port on the host (nftables DNAT)")
    a("-P", "--publish-all", kind="bool", help="publish every --expose'd port on a free port")
    a("--expose", kind="append", metavar="PORT[/PROTO]", help="declare a port for -P")
    a("--add-host", kind="append", metavar="NAME:IP", help="add a line to /etc/hosts")
    a("--dns", kind="append", metavar="IP", help="a name server for /etc/resolv.conf")
    for ns in ("pid", "ipc", "uts"):
        a(f"--{ns}", choices=("host", "private"), default="private",
          help=f"host: share the host's {ns} namespace")
    a("--cidfile", metavar="FILE", help="write the container id to FILE")
    p.section("resources (cgroups)")
    a("-m", "--memory", metavar="BYTES", help="memory limit, e.g. 64m")
    a("--memory-swap", metavar="BYTES", help="memory plus swap limit; -1: no limit")
    a("--memory-reservation", metavar="BYTES", help="soft memory limit")
    a("--cpus", metavar="N", help="number of CPUs, e.g. 0.5")
    a("-c", "--cpu-shares", kind="int", metavar="N", help="relative CPU weight (default 1024)")
    a("--cpu-period", kind="int", metavar="US", help="CFS period in microseconds")
    a("--cpu-quota", kind="int", metavar="US", help="CFS quota in microseconds")
    a("--cpuset-cpus", metavar="LIST", help="CPUs allowed, e.g. 0-1")
    a("--cpuset-mems", metavar="LIST", help="memory nodes allowed")
    a("--pids-limit", kind="int", metavar="N", help="most processes; -1: no limit")
    a("--device", kind="append", metavar="HOST[:CONTAINER[:PERMS]]", help="add a host device")
    a("--device-cgroup-rule", kind="append", metavar="RULE",
      help="allow devices, e.g. 'c 1:3 rwm'")
    a("--blkio-weight", kind="int", metavar="N", help="block I/O weight, 10 to 1000")
    a("--net-cls-classid", metavar="ID", help="net_cls class id, e.g. 0x100001")
    a("--net-prio", kind="append", metavar="IFACE=PRIO", help="net_prio priority per interface")
    a("--hugetlb-limit", kind="append", metavar="SIZE=BYTES", help="huge pages, e.g. 2MB=4m")
    return p


def parse_user(value: str, rootfs: str, userns: bool) -> tuple[int, int, str | None]:
    """-u uid[:gid] or name[:group], names looked up in the rootfs's /etc/passwd and group."""
    from minibox.runtime.rootfs import securejoin

    name, _, group = value.partition(":")
    home = None
    passwd = _table(securejoin(rootfs, "/etc/passwd"))
    if name.isdigit():
        uid = int(name)
        gid = next((int(r[3]) for r in passwd if r[2] == name), 0)
    else:
        row = next((r for r in passwd if r[0] == name), None)
        if row is None:
            raise MiniboxError(f'unable to find user {name}: no matching entries in passwd file')
        uid, gid, home = int(row[2]), int(row[3]), row[5]
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            grow = next((r for r in _table(securejoin(rootfs, "/etc/group")) if r[0] == group),
                        None)
            if grow is None:
                raise MiniboxError(f"unable to find group {group}: "
                                   "no matching entries in group file")
            gid = int(grow[2])
    limit = S.USERNS_SIZE if userns else 1 << 32
    for kind, n in (("uid", uid), ("gid", gid)):
        if n >= limit - (0 if userns else 1):
            where = (f"outside the user namespace mapping (0-{S.USERNS_SIZE - 1})"
                     if userns else "not a valid id")
            raise MiniboxError(f"{kind} {n} in --user {value} is {where}")
    return uid, gid, home


def _table(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [line.split(":") for line in f.read().splitlines() if line.count(":") >= 3]
    except OSError:
        return []


def is_path(arg: str) -> bool:
    """A rootfs directory, not an image name: starts with / or ., ends with /, or exists."""
    return arg.startswith(("/", ".")) or arg.endswith("/") or os.path.exists(arg)


def build_spec(opts: Options) -> dict:
    cid = os.urandom(32).hex()
    image = None
    if is_path(opts.rootfs):
        from minibox.runtime.run import check_rootfs

        if opts.entrypoint is not None:
            raise MiniboxError("--entrypoint needs an image: a rootfs directory has no "
                               "Entrypoint (give the command after the rootfs)")
        rootfs = check_rootfs(opts.rootfs)
        if not opts.command:
            raise MiniboxError("no command given: minibox run ROOTFS CMD [ARG...] "
                               "(e.g. minibox run rootfs/ /bin/sh)")
        spec = S.new_spec(rootfs, opts.command)
    else:
        from minibox.cli import imagerun

        image = imagerun.image_spec(opts, cid)
        spec = image.spec
        rootfs = image.lookup_root
    spec["annotations"]["minibox.id"] = cid
    for ns, oci in (("net", "network"), ("pid", "pid"), ("ipc", "ipc"), ("uts", "uts")):
        if getattr(opts, ns) == "host":
            S.drop_namespace(spec, oci)
    if opts.net == "host":
        # A new sysfs shows the network namespace's devices; with the host's, bind /sys.
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/sys"]
        spec["mounts"].append({"destination": "/sys", "type": "bind", "source": "/sys",
                               "options": ["rbind", "ro", "nosuid", "noexec", "nodev"]})
    if opts.net.startswith("container:"):
        _join_netns(spec, opts.net)
    if opts.userns:
        if image is not None:
            raise MiniboxError("--userns with an image is not supported yet: overlayfs over "
                               "idmapped layers needs a newer kernel path (use a rootfs dir)")
        S.add_userns(spec)
    if opts.uts == "host":
        if opts.hostname:
            raise MiniboxError("Conflicting options: hostname and the UTS mode")
        hostname = os.uname().nodename  # the host's own: there is no other to set
    else:
        hostname = S.check_hostname(opts.hostname) if opts.hostname else cid[:12]
    if opts.uts != "host":
        spec["hostname"] = hostname
    proc = spec["process"]
    env = [f"HOSTNAME={hostname}"]
    home = "/root"
    user = opts.user or (image.user if image is not None else None)
    if user:
        uid, gid, pw_home = parse_user(user, rootfs, opts.userns)
        proc["user"] = {"uid": uid, "gid": gid}
        home = pw_home or ("/root" if uid == 0 else "/")
    env.append(f"HOME={home}")
    # Like `docker run -it`, a terminal on both ends makes an interactive container.
    proc["terminal"] = bool(opts.tty or (os.isatty(0) and os.isatty(1)))
    if proc["terminal"]:
        env.append("TERM=xterm")
    proc["env"] = S.merge_env(proc["env"] + env, S.parse_env(opts.env, opts.env_file))
    if image is not None and image.workdir and not opts.workdir:
        proc["cwd"] = image.workdir
    if opts.workdir:
        if not opts.workdir.startswith("/"):
            raise MiniboxError(f'the working directory "{opts.workdir}" is invalid: '
                               "it needs to be an absolute path")
        proc["cwd"] = opts.workdir
    if opts.net not in ("none", "private", "host") or opts.publish or opts.publish_all \
            or opts.add_host or opts.dns:
        from minibox.cli.main import ROOT
        from minibox.network import options as netopts

        net = netopts.plan(opts, hostname)
        if net is not None:
            netopts.apply(spec, net, os.path.join(ROOT, "containers", cid))
    spec["root"]["readonly"] = opts.read_only
    _resources(spec, opts)
    for vol in opts.volume:
        spec["mounts"].append(_volume(vol))
    for t in opts.tmpfs:
        path, _, extra = t.partition(":")
        if not path.startswith("/"):
            raise MiniboxError(f'invalid --tmpfs "{t}": the path must be absolute')
        options = ["nosuid", "nodev", "noexec"] + [o for o in extra.split(",") if o]
        spec["mounts"].append({"destination": path, "type": "tmpfs", "source": "tmpfs",
                               "options": options})
    return spec


def _join_netns(spec: dict, mode: str) -> None:
    """--network container:ID: the new container joins a running one's namespace."""
    from minibox.cli.main import store
    from minibox.runtime.state import alive, refresh

    st = store()
    ref = mode.partition(":")[2]
    try:
        other = refresh(st.load(st.resolve(ref)))
    except MiniboxError as err:
        raise MiniboxError(f"cannot join network of container {ref}: {err.message}") from None
    if other["status"] not in ("running", "paused") or not alive(other.get("pid"),
                                                                   other.get("pidStart")):
        raise MiniboxError(f"cannot join network of container {ref}: it is not running "
                           f"(start it first: minibox start {ref})")
    for ns in spec["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = f"/proc/{other['pid']}/ns/net"


def _resources(spec: dict, opts: Options) -> None:
    from minibox.cgroups import limits

    res = limits.from_flags(opts)
    rules = [dict(r) for r in limits.DEFAULT_DEVICE_RULES] + res.pop("extraDeviceRules", [])
    devices = []
    for item in opts.device:
        dev, rule = _device(item)
        devices.append(dev)
        rules.append(rule)
    res["devices"] = rules
    spec["linux"]["resources"] = res
    if devices:
        spec["linux"]["devices"] = devices


def _device(item: str) -> tuple[dict, dict]:
    """--device HOST[:CONTAINER[:PERMS]], as docker: the node appears inside and is allowed."""
    import stat

    parts = item.split(":")
    host = parts[0]
    dest = parts[1] if len(parts) > 1 and parts[1] else host
    perms = parts[2] if len(parts) > 2 else "rwm"
    if len(parts) == 2 and all(c in "rwm" for c in parts[1]):
        dest, perms = host, parts[1]
    if not perms or any(c not in "rwm" for c in perms):
        raise MiniboxError(f'invalid --device "{item}": permissions must be a mix of r, w, m')
    try:
        st = os.stat(host)
    except OSError as err:
        raise MiniboxError(f'--device "{item}": {host}: {err.strerror}') from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise MiniboxError(f'--device "{item}": {host} is not a device node')
    kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    dev = {"path": dest, "hostPath": host, "type": kind, "major": major, "minor": minor,
           "fileMode": stat.S_IMODE(st.st_mode), "uid": 0, "gid": 0}
    return dev, {"allow": True, "type": kind, "major": major, "minor": minor, "access": perms}


def _volume(vol: str) -> dict:
    parts = vol.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise MiniboxError(f'invalid volume "{vol}": use HOST:CONTAINER[:ro]')
    host, dest = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise MiniboxError(f'invalid mode "{mode}" in volume "{vol}": use ro or rw')
    if not host.startswith("/"):
        raise MiniboxError(f'invalid volume "{vol}": the host path must be absolute')
    if not dest.startswith("/") or dest == "/":
        raise MiniboxError(f'invalid volume "{vol}": the container path must be absolute '
                           "and not /")
    if not os.path.exists(host):
        os.makedirs(host)  # as docker does for -v with a missing host directory
    options = ["rbind"] + (["ro"] if mode == "ro" else [])
    return {"destination": dest, "type": "bind", "source": os.path.realpath(host),
            "options": options}


def _restart_policy(text: str) -> dict:
    name, _, count = text.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure") or \
            (count and (name != "on-failure" or not count.isdigit())):
        raise MiniboxError(f'invalid restart policy "{text}": use no, always, unless-stopped '
                           "or on-failure[:N]")
    return {"name": name, "max": int(count or 0)}


def _name(opts: Options) -> str:
    if opts.name is None:
        from minibox.cli.main import ROOT
        from minibox.runtime.names import random_name

        return random_name(lambda n: os.path.lexists(os.path.join(ROOT, "names", n)))
    name = opts.name.lstrip("/")
    ok = name and name[0].isalnum() and all(c.isalnum() or c in "_.-" for c in name)
    if not ok:
        raise MiniboxError(f'Invalid container name ({opts.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] '
                           "are allowed")
    return name


def create_main(argv: list[str]) -> int:
    return main(argv, verb="create")


def main(argv: list[str], verb: str = "run") -> int:
    p = parser()
    if verb == "create":
        p.prog, p.usage = "minibox create", "minibox create [OPTIONS] IMAGE|ROOTFS [CMD...]"
    opts = p.parse(argv)
    if opts.explain:
        explain.enable()
    else:
        explain.settle()
    die_unless_root(verb)
    restart = _restart_policy(opts.restart)
    if restart["name"] != "no" and opts.rm:
        raise MiniboxError("Conflicting options: --restart and --rm")
    name = _name(opts)
    spec = build_spec(opts)
    if opts.init:
        from minibox.runtime.container import INIT

        spec["mounts"].append({"destination": "/dev/init", "type": "bind", "source": INIT,
                               "options": ["bind", "ro"]})
        spec["process"]["args"] = ["/dev/init"] + spec["process"]["args"]
    if opts.cidfile:
        try:
            fd = os.open(opts.cidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise MiniboxError(f"container ID file found, make sure the other container isn't "
                               f"running or delete {opts.cidfile}") from None
        os.write(fd, spec["annotations"]["minibox.id"].encode())
        os.close(fd)
    from minibox.cli.main import store

    if opts.detach or verb == "create":
        from minibox.runtime import container

        if verb == "run" and not opts.tty:
            spec["process"]["terminal"] = False  # -d without -t: output goes to the log
        options = {"restart": restart, "autoremove": opts.rm, "overlay": opts.overlay}
        cid = container.create(store(), spec, name, options, start=verb == "run")
        from minibox.cgroups import warm

        warm.reap()
        print(cid)
        return 0
    if restart["name"] != "no":
        raise MiniboxError("--restart needs -d: a foreground container is removed when it "
                           "ends, and the monitor of a detached one carries the policy out")
    from minibox.runtime.run import run

    sys.stdout.flush()
    return run(spec, overlay=opts.overlay, tty=spec["process"]["terminal"], store=store(),
               name=name)
