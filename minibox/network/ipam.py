"""Networks and their address leases, on disk under one lock.

Bridges, addresses and nftables tables are host-wide kernel objects, so their
bookkeeping is host-wide too: /run/minibox/networks, whatever --root a container's
state uses (docker keeps networks per daemon, not per container store). Every change
happens under flock(2) on one lock file, so concurrent minibox commands never hand out
the same address or host port twice; a lease is also a file created with O_EXCL, which
the kernel refuses to create twice (open(2)).

Layout:
  networks/lock                        the flock
  networks/NAME/network.json           name, id, subnet, gateway, bridge
  networks/NAME/leases/IP              {"cid", "name", "files"} of the container
  networks/ports/PROTO_IP_PORT         the container that holds a published host port
"""

from __future__ import annotations

import ipaddress
import json
import os

from minibox import explain
from minibox.errors import MiniboxError

NET_ROOT = "/run/minibox/networks"
DEFAULT_BRIDGE = "minibox0"
# Candidate subnets for the default network, in docker's order of preference
# (172.17/16 first, then its neighbours); the first that no host route covers wins.
CANDIDATES = [f"172.{n}.0.0/16" for n in range(17, 32)] + \
    [f"192.168.{n}.0/24" for n in range(0, 256, 16)]


# Never a container subnet: loopback, link-local, multicast and up (ip-sysctl and RFC 6890
# special-purpose ranges; loopback lives in the local table, not in /proc/net/route).
RESERVED = [ipaddress.IPv4Network(n) for n in
            ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3")]


class Lock:
    """flock(2) on networks/lock for the duration of a `with` block."""

    def __enter__(self) -> Lock:
        import fcntl

        os.makedirs(os.path.join(NET_ROOT, "ports"), mode=0o755, exist_ok=True)
        self.fd = os.open(os.path.join(NET_ROOT, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                          0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing the last descriptor releases the flock


def _write(path: str, data: dict, excl: bool = False) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if excl else os.O_TRUNC)
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, (json.dumps(data, indent=2) + "\n").encode())
    finally:
        os.close(fd)
    explain.step(f'write("{path}")', 0, "record it on disk, where every minibox command "
                 "looks (kept under flock, so concurrent commands agree)", "flock(2)")


def load(name: str) -> dict | None:
    try:
        with open(os.path.join(NET_ROOT, name, "network.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def names() -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(NET_ROOT)
                      if e.is_dir() and e.name != "ports"
                      and os.path.exists(os.path.join(e.path, "network.json")))
    except FileNotFoundError:
        return []


def host_routes() -> list[ipaddress.IPv4Network]:
    """The host's IPv4 routes (main table), from /proc/net/route (proc(5)): a subnet that
    overlaps one would make the host send that traffic to the wrong place."""
    nets = []
    with open("/proc/net/route") as f:
        next(f)
        for line in f:
            fields = line.split()
            dest = int(fields[1], 16)
            mask = int(fields[7], 16)
            if mask == 0:
                continue  # the default route overlaps everything by definition
            # /proc/net/route prints the addresses in host (little-endian) byte order.
            d = ipaddress.IPv4Address(int.from_bytes(dest.to_bytes(4, "little"), "big"))
            m = bin(mask).count("1")
            nets.append(ipaddress.IPv4Network(f"{d}/{m}", strict=False))
    return nets


def _taken(subnet: ipaddress.IPv4Network, skip_bridges: tuple[str, ...] = ()) -> str | None:
    for other in names():
        cfg = load(other)
        if cfg and ipaddress.IPv4Network(cfg["subnet"]).overlaps(subnet):
            return f"minibox network {other} ({cfg['subnet']})"
    for reserved in RESERVED:
        if reserved.overlaps(subnet):
            return f"the reserved range {reserved}"
    for route in host_routes():
        if route.overlaps(subnet):
            return f"the host route {route}"
    return None


def create(name: str, subnet: str | None = None, gateway: str | None = None,
           bridge: str | None = None) -> dict:
    """Record a network (the caller holds the Lock and makes the bridge)."""
    if load(name) is not None:
        raise MiniboxError(f"network with name {name} already exists")
    if subnet:
        try:
            net = ipaddress.IPv4Network(subnet, strict=False)
        except ValueError:
            raise MiniboxError(f'invalid --subnet "{subnet}": use an IPv4 CIDR such as '
                               "10.89.0.0/24") from None
        if net.prefixlen > 30:
            raise MiniboxError(f"--subnet {subnet} is too small: it needs room for a gateway "
                               "and a container (/30 or larger)")
        clash = _taken(net)
        if clash:
            raise MiniboxError(f"--subnet {net} of network {name} overlaps {clash}: "
                               "choose another subnet")
    else:
        net = None
        for cand in CANDIDATES:
            if _taken(ipaddress.IPv4Network(cand)) is None:
                net = ipaddress.IPv4Network(cand)
                break
        if net is None:
            raise MiniboxError(f"no free subnet for network {name}: every candidate overlaps "
                               "a host route or a network (give one with --subnet)")
    if gateway:
        try:
            gw = ipaddress.IPv4Address(gateway)
        except ValueError:
            raise MiniboxError(f'invalid --gateway "{gateway}": not an IPv4 address') from None
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise MiniboxError(f"--gateway {gateway} is not a host address of {net}")
    else:
        gw = net.network_address + 1
    nid = os.urandom(32).hex()
    cfg = {"name": name, "id": nid, "driver": "bridge", "subnet": str(net),
           "gateway": str(gw), "bridge": bridge or f"mbr-{nid[:10]}",
           "created": _now()}
    d = os.path.join(NET_ROOT, name)
    os.makedirs(os.path.join(d, "leases"), exist_ok=True)
    _write(os.path.join(d, "network.json"), cfg)
    return cfg


def remove(name: str) -> None:
    d = os.path.join(NET_ROOT, name)
    for path in (os.path.join(d, "network.json"), os.path.join(d, "leases")):
        try:
            os.rmdir(path) if path.endswith("leases") else os.unlink(path)
        except FileNotFoundError:
            pass
    os.rmdir(d)


def _now() -> str:
    import time

    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def leases(name: str) -> dict[str, dict]:
    d = os.path.join(NET_ROOT, name, "leases")
    out = {}
    try:
        entries = list(os.scandir(d))
    except FileNotFoundError:
        return out
    for e in entries:
        try:
            with open(e.path) as f:
                out[e.name] = json.load(f)
        except (OSError, ValueError):
            continue
    return out


def allocate(cfg: dict, holder: dict) -> str:
    """The lowest free host address of the network's subnet (the caller holds the Lock)."""
    net = ipaddress.IPv4Network(cfg["subnet"])
    d = os.path.join(NET_ROOT, cfg["name"], "leases")
    _reclaim(d)
    used = set(os.listdir(d)) | {cfg["gateway"]}
    for ip in net.hosts():
        s = str(ip)
        if s in used:
            continue
        try:
            _write(os.path.join(d, s), holder, excl=True)
        except FileExistsError:
            continue
        return s
    raise MiniboxError(f"no free address left in network {cfg['name']} ({cfg['subnet']}): "
                       "remove containers or create a larger network")


def _reclaim(d: str) -> None:
    """Take back records whose container directory is gone (the caller holds the Lock).

    Every record is written after its container's state directory exists and removed
    before that directory goes; a record that outlives it was left by a minibox killed
    half-way (SIGKILL between the two steps), and nothing else will ever free it.
    """
    for e in os.scandir(d):
        try:
            with open(e.path) as f:
                where = json.load(f).get("dir")
        except (OSError, ValueError):
            continue
        if where and not os.path.isdir(where):
            os.unlink(e.path)
            explain.step(f'unlink("{e.path}")', 0, f"its container ({where}) is gone: a "
                         "minibox killed half-way left it", "unlink(2)")


def free(network: str, ip: str, cid: str) -> None:
    path = os.path.join(NET_ROOT, network, "leases", ip)
    try:
        with open(path) as f:
            if json.load(f).get("cid") != cid:
                return  # someone else's by now: never free another container's address
        os.unlink(path)
    except (OSError, ValueError):
        return
    explain.step(f'unlink("{path}")', 0, f"give address {ip} back to network {network}",
                 "unlink(2)")


def _port_path(p: dict) -> str:
    return os.path.join(NET_ROOT, "ports", f"{p['proto']}_{p['hostIp']}_{p['hostPort']}")


def claim_ports(ports: list[dict], cid: str, where: str = "") -> None:
    """Reserve the host ports (the caller holds the Lock); 0 means any free port.

    With NAT rules no process listens on the host port, so the port is checked two ways:
    against other containers' reservations, and by binding it for a moment, which fails
    if a host program listens there (docker's proxy would fail the same way).
    """
    import socket

    os.makedirs(os.path.join(NET_ROOT, "ports"), exist_ok=True)
    _reclaim(os.path.join(NET_ROOT, "ports"))
    held = os.listdir(os.path.join(NET_ROOT, "ports"))
    done: list[dict] = []
    try:
        for p in ports:
            kind = socket.SOCK_STREAM if p["proto"] == "tcp" else socket.SOCK_DGRAM
            s = socket.socket(socket.AF_INET, kind)
            try:
                try:
                    s.bind((p["hostIp"], p["hostPort"]))
                except OSError as err:
                    raise MiniboxError(
                        f"cannot publish {p['hostIp']}:{p['hostPort']}/{p['proto']} for "
                        f"container {cid[:12]}: {err.strerror} (the port is in use on the "
                        "host; choose another host port)") from None
                p["hostPort"] = s.getsockname()[1]
            finally:
                s.close()
            for h in held:
                proto, ip, port = h.split("_")
                if proto == p["proto"] and int(port) == p["hostPort"] and \
                        "0.0.0.0" in (ip, p["hostIp"]) or h == os.path.basename(_port_path(p)):
                    raise MiniboxError(
                        f"cannot publish {p['hostIp']}:{p['hostPort']}/{p['proto']} for "
                        f"container {cid[:12]}: port is already allocated to another "
                        "container (choose another host port)")
            try:
                _write(_port_path(p), {"cid": cid, "dir": where}, excl=True)
            except FileExistsError:
                raise MiniboxError(f"cannot publish {p['hostIp']}:{p['hostPort']}: port is "
                                   "already allocated to another container") from None
            done.append(p)
            held.append(os.path.basename(_port_path(p)))
    except BaseException:
        release_ports(done, cid)
        raise


def release_ports(ports: list[dict], cid: str) -> None:
    for p in ports:
        path = _port_path(p)
        try:
            with open(path) as f:
                if json.load(f).get("cid") != cid:
                    continue
            os.unlink(path)
        except (OSError, ValueError):
            continue
        explain.step(f'unlink("{path}")', 0, f"host port {p['hostPort']}/{p['proto']} is free "
                     "for others again", "unlink(2)")
