"""`minibox network create|ls|inspect|rm|connect|disconnect` and `minibox port`."""

from __future__ import annotations

from minibox import explain
from minibox.cli.flags import FlagParser
from minibox.cli.main import die_unless_root, store
from minibox.errors import MiniboxError

USAGE = """usage: minibox network COMMAND

  create [--subnet CIDR] [--gateway IP] NAME   make a network (a bridge and a subnet)
  ls                                           list networks
  inspect NAME [NAME...]                       subnet, gateway, containers (JSON)
  rm NAME [NAME...]                            remove networks no container uses
  connect NAME CONTAINER                       give a container an interface on NAME
  disconnect NAME CONTAINER                    take it away
"""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 125
    verb, rest = argv[0], argv[1:]
    funcs = {"create": create, "ls": ls, "list": ls, "inspect": inspect, "rm": rm,
             "remove": rm, "connect": connect, "disconnect": disconnect}
    if verb not in funcs:
        raise MiniboxError(f'unknown network command "{verb}" (see: minibox network --help)')
    return funcs[verb](rest)


def _valid_name(name: str) -> None:
    if not name or not name[0].isalnum() or not all(c.isalnum() or c in "_.-" for c in name) \
            or name.startswith("container"):
        raise MiniboxError(f'invalid network name "{name}": use [a-zA-Z0-9][a-zA-Z0-9_.-] '
                           "(not starting with container)")
    if name in ("bridge", "none", "host"):
        raise MiniboxError(f"{name} is a pre-defined network and cannot be created")


def create(argv: list[str]) -> int:
    p = FlagParser("minibox network create", "minibox network create [OPTIONS] NAME",
                   "Create a bridge network.", positionals=("NAME",))
    p.add("--explain", kind="bool", help="print every kernel step")
    p.add("--subnet", metavar="CIDR", help="the network's IPv4 subnet (default: a free one)")
    p.add("--gateway", metavar="IP", help="the bridge's address (default: the first)")
    p.add("-d", "--driver", default="bridge", help="only bridge")
    o = p.parse(argv)
    _explain(o)
    die_unless_root("network create")
    if o.driver != "bridge":
        raise MiniboxError(f'network driver "{o.driver}" is not supported: minibox has bridge')
    _valid_name(o.name)
    from minibox.network import endpoint, ipam

    with ipam.Lock():
        cfg = ipam.create(o.name, o.subnet, o.gateway)
        try:
            endpoint.ensure_bridge(cfg)
        except BaseException:
            ipam.remove(o.name)
            raise
    print(cfg["id"])
    return 0


def _explain(o: object) -> None:
    if getattr(o, "explain", False):
        explain.enable()
    else:
        explain.settle()


def ls(argv: list[str]) -> int:
    p = FlagParser("minibox network ls", "minibox network ls", "List networks.")
    p.add("-q", "--quiet", kind="bool", help="only names")
    o = p.parse(argv)
    from minibox.network import ipam

    if not o.quiet:
        print(f"{'NETWORK ID':<14}{'NAME':<20}{'DRIVER':<9}{'SUBNET':<18}BRIDGE")
    for name in ipam.names():
        cfg = ipam.load(name)
        if o.quiet:
            print(name)
        else:
            print(f"{cfg['id'][:12]:<14}{name:<20}{cfg['driver']:<9}{cfg['subnet']:<18}"
                  f"{cfg['bridge']}")
    return 0


def inspect(argv: list[str]) -> int:
    p = FlagParser("minibox network inspect", "minibox network inspect NAME [NAME...]",
                   "Show networks as JSON.", positionals=("NAME",), rest="more")
    o = p.parse(argv)
    import json

    from minibox.network import ipam

    out = []
    for name in [o.name] + o.more:
        cfg = ipam.load(name)
        if cfg is None:
            raise MiniboxError(f"network {name} not found", 1)
        containers = {h["cid"]: {"Name": h.get("name", ""), "IPv4Address":
                                 f"{ip}/{cfg['subnet'].split('/')[1]}"}
                      for ip, h in sorted(ipam.leases(name).items())}
        out.append({"Name": name, "Id": cfg["id"], "Created": cfg["created"],
                    "Driver": cfg["driver"], "Bridge": cfg["bridge"],
                    "IPAM": {"Config": [{"Subnet": cfg["subnet"], "Gateway": cfg["gateway"]}]},
                    "Containers": containers})
    print(json.dumps(out, indent=4))
    return 0


def rm(argv: list[str]) -> int:
    p = FlagParser("minibox network rm", "minibox network rm [--explain] NAME [NAME...]",
                   "Remove networks.", positionals=("NAME",), rest="more")
    p.add("--explain", kind="bool", help="print every kernel step")
    o = p.parse(argv)
    _explain(o)
    die_unless_root("network rm")
    from minibox.network import ipam
    from minibox.network.netlink import Netlink

    code = 0
    for name in [o.name] + o.more:
        if name in ("bridge", "none", "host"):
            raise MiniboxError(f"{name} is a pre-defined network and cannot be removed")
        with ipam.Lock():
            cfg = ipam.load(name)
            if cfg is None:
                import sys

                sys.stderr.write(f"minibox: network {name} not found\n")
                code = 1
                continue
            users = ipam.leases(name)
            if users:
                who = ", ".join(h.get("name") or h["cid"][:12] for h in users.values())
                raise MiniboxError(f"network {name} has active endpoints ({who}): remove or "
                                   f"disconnect those containers first")
            nl = Netlink.host()
            try:
                nl.delete(cfg["bridge"], "the network's bridge; its address and route go "
                          "with it")
            finally:
                nl.close()
            ipam.remove(name)
        print(name)
    return code


def _container(ref: str) -> tuple[str, str, int | None]:
    from minibox.runtime.state import alive, refresh

    st = store()
    cid = st.resolve(ref)
    cur = refresh(st.load(cid))
    pid = cur.get("pid") if cur["status"] in ("running", "paused") and \
        alive(cur.get("pid"), cur.get("pidStart")) else None
    return st.path(cid), cid, pid


def connect(argv: list[str]) -> int:
    p = FlagParser("minibox network connect", "minibox network connect NAME CONTAINER",
                   "Connect a container to a network.", positionals=("NAME", "CONTAINER"))
    p.add("--explain", kind="bool", help="print every kernel step")
    o = p.parse(argv)
    _explain(o)
    die_unless_root("network connect")
    from minibox.network import endpoint

    cdir, cid, pid = _container(o.container)
    endpoint.connect(cdir, cid, o.name, pid)
    return 0


def disconnect(argv: list[str]) -> int:
    p = FlagParser("minibox network disconnect", "minibox network disconnect NAME CONTAINER",
                   "Disconnect a container from a network.", positionals=("NAME", "CONTAINER"))
    p.add("--explain", kind="bool", help="print every kernel step")
    o = p.parse(argv)
    _explain(o)
    die_unless_root("network disconnect")
    from minibox.network import endpoint

    cdir, cid, _pid = _container(o.container)
    endpoint.disconnect(cdir, cid, o.name)
    return 0


def port(argv: list[str]) -> int:
    p = FlagParser("minibox port", "minibox port CONTAINER", "List a container's published "
                   "ports.", positionals=("CONTAINER",))
    o = p.parse(argv)
    from minibox.network import endpoint

    st = store()
    cid = st.resolve(o.container)
    for pt in endpoint.ports_of(st.path(cid)):
        print(f"{pt['containerPort']}/{pt['proto']} -> {pt['hostIp']}:{pt['hostPort']}")
    return 0



