"""A container's place on its networks: lease, veth pair, address, route, ports, /etc files.

prepare() runs before the child mounts anything, before the clone or right after it
(an address is needed for /etc/hosts, which the child binds while it mounts); attach()
runs in the parent after clone and before the child may go on (runtime/process.py,
between the "G" and "J" messages): the child's network namespace exists by then, and
its command has not started. detach() runs when the init ends, release() when the
container is removed. The record of all of it is network.json in the container's state
directory, so `rm` after a `kill -9` of the monitor still finds every lease, port and
rule to take back.
"""

from __future__ import annotations

import json
import os

from minibox import explain
from minibox.errors import MiniboxError
from minibox.network import ipam
from minibox.network.options import recorded

RECORD = "network.json"
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def _read(cdir: str) -> dict | None:
    try:
        with open(os.path.join(cdir, RECORD)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _save(cdir: str, rec: dict) -> None:
    tmp = os.path.join(cdir, RECORD + ".tmp")
    with open(tmp, "w") as f:
        json.dump(rec, f, indent=2)
    os.rename(tmp, os.path.join(cdir, RECORD))


def _put(path: str, text: str) -> None:
    """Write in place: the container binds this very inode (a rename would leave it the old)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    explain.step(f'write("{path}")', 0, f"the container's /etc/{os.path.basename(path)}, "
                 "made for it and bind-mounted over the image's", "hosts(5), resolv.conf(5)")


def ensure_bridge(cfg: dict) -> None:
    """The network's bridge with the gateway address on it, made if missing."""
    if os.path.exists(f"/sys/class/net/{cfg['bridge']}"):
        return  # the common case, told by sysfs without loading pyroute2
    from minibox.network.netlink import Netlink, sysctl

    nl = Netlink.host()
    try:
        if nl.index(cfg["bridge"]) is not None:
            return
        prefix = int(cfg["subnet"].split("/")[1])
        idx = nl.add_bridge(cfg["bridge"])
        nl.add_address(idx, cfg["bridge"], cfg["gateway"], prefix,
                       "the bridge's address is the containers' gateway; the kernel adds a "
                       f"route to {cfg['subnet']} through the bridge with it")
        # Published ports on 127.0.0.1: after DNAT the packet leaves through the bridge
        # with source 127.0.0.1, which the kernel drops as martian unless route_localnet
        # is set on that interface (ip-sysctl.rst); only this bridge is affected.
        sysctl(f"/proc/sys/net/ipv4/conf/{cfg['bridge']}/route_localnet", "1",
               "let connections to 127.0.0.1:PORT be forwarded to containers on this bridge")
        nl.up(idx, cfg["bridge"], "a bridge forwards nothing while it is down")
    finally:
        nl.close()


def prepare(cdir: str, cid: str, name: str, spec: dict) -> None:
    """Lease addresses and ports, write the record and the /etc files (before the child's
    mounts)."""
    plan = recorded(spec)
    if plan is None:
        return
    rec = {"mode": plan["mode"], "hostname": plan["hostname"], "name": name,
           "addHosts": plan["addHosts"], "dns": plan["dns"], "networks": {},
           "ports": [], "expose": plan["expose"]}
    _save(cdir, rec)  # first, so that a failure below is undone by release()
    if plan["mode"] not in ("none", "host"):
        netname = "bridge" if plan["mode"] == "bridge" else plan["mode"]
        with ipam.Lock():
            cfg = ipam.load(netname)
            if cfg is None and netname == "bridge":
                cfg = ipam.create("bridge", bridge=ipam.DEFAULT_BRIDGE)
            if cfg is None:
                raise MiniboxError(f"network {netname} not found (see: minibox network ls; "
                                   f"create it with: minibox network create {netname})")
            _join(cdir, cid, rec, cfg)
            ports = [dict(p) for p in plan["ports"]]
            ipam.claim_ports(ports, cid, cdir)
            rec["ports"] = ports
            _save(cdir, rec)
            ensure_bridge(cfg)  # under the lock: two first containers make one bridge
    write_files(cdir)
    _refresh_peers(rec, cdir)


def _join(cdir: str, cid: str, rec: dict, cfg: dict) -> dict:
    """Lease an address on network `cfg` and record the endpoint (the caller holds the Lock)."""
    used = {ep["ifname"] for ep in rec["networks"].values()}
    n = next(i for i in range(len(used) + 1) if f"eth{i}" not in used)
    holder = {"cid": cid, "name": rec["name"], "dir": cdir}
    ip = ipam.allocate(cfg, holder)
    ep = {"ip": ip, "prefixlen": int(cfg["subnet"].split("/")[1]), "gateway": cfg["gateway"],
          "bridge": cfg["bridge"], "ifname": f"eth{n}", "veth": f"mb{cid[:10]}{n}",
          "default": cfg["name"] == "bridge"}
    rec["networks"][cfg["name"]] = ep
    _save(cdir, rec)
    return ep


def write_files(cdir: str) -> None:
    """/etc/hostname, /etc/hosts and /etc/resolv.conf for this container (docker makes the
    same three per container). On a user-defined network /etc/hosts also names every other
    container on it, and is rewritten when one comes or goes: the equivalent, in a file, of
    docker's embedded DNS server."""
    rec = _read(cdir)
    if rec is None:
        return
    hostname = rec["hostname"]
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    seen = set()
    for netname, ep in rec["networks"].items():
        names = [hostname] + ([rec["name"]] if rec["name"] and rec["name"] != hostname else [])
        lines.append(f"{ep['ip']}\t{' '.join(names)}")
        if netname == "bridge":
            continue  # docker's default bridge names no one (only user-defined networks do)
        for ip, holder in sorted(ipam.leases(netname).items()):
            if holder.get("dir") == cdir or not holder.get("name") or ip in seen:
                continue
            seen.add(ip)
            lines.append(f"{ip}\t{holder['name']}")
    lines += [f"{ip}\t{name}" for name, ip in rec["addHosts"]]
    _put(os.path.join(cdir, "hosts"), "\n".join(lines) + "\n")
    _put(os.path.join(cdir, "hostname"), hostname + "\n")
    if rec["dns"]:
        resolv = "".join(f"nameserver {d}\n" for d in rec["dns"])
    else:
        # The host's, without loopback name servers: 127.0.0.53 inside the container would
        # be the container's own loopback, where nothing answers (docker filters them too).
        try:
            with open("/etc/resolv.conf") as f:
                host = f.read().splitlines()
        except OSError:
            host = []
        resolv = "".join(line + "\n" for line in host
                         if not line.startswith("nameserver 127.")
                         and not line.startswith("nameserver ::1"))
    _put(os.path.join(cdir, "resolv.conf"), resolv)


def _refresh_peers(rec: dict, cdir: str) -> None:
    for netname in rec["networks"]:
        if netname == "bridge":
            continue
        for holder in ipam.leases(netname).values():
            other = holder.get("dir")
            if other and other != cdir and os.path.isdir(other):
                write_files(other)


def attacher(cdir: str, cid: str, spec: dict) -> Callable[[int], None] | None:
    """What the parent does to the child's network namespace between clone and exec."""
    plan = recorded(spec)
    if plan is None or plan["mode"] in ("none", "host"):
        return None

    def attach(pid: int) -> None:
        rec = _read(cdir)
        if rec is None:
            raise MiniboxError(f"container {cid[:12]} has lost its network record")
        attach_all(cdir, cid, rec, pid)

    return attach


def attach_all(cdir: str, cid: str, rec: dict, pid: int,
               only: str | None = None) -> None:
    from minibox.network.netlink import Netlink

    host = Netlink.host()
    inner = None
    eps = [(n, ep) for n, ep in rec["networks"].items() if only in (None, n)]
    try:
        for _netname, ep in eps:
            br = host.index(ep["bridge"])
            if br is None:
                raise MiniboxError(f"the bridge {ep['bridge']} of network {_netname} is gone "
                                   f"(remove and create the network again)")
            host.delete(ep["veth"], "a stale host end left by an earlier start")
            peer = "mp" + ep["veth"][2:]
            hidx = host.add_veth(ep["veth"], peer)
            host.up(hidx, ep["veth"], f"plug the host end into {ep['bridge']}", master=br,
                    master_name=ep["bridge"])
            host.move(host.index(peer), peer, pid, ep["ifname"])
        inner = Netlink.of_pid(pid)
        for _netname, ep in eps:
            idx = inner.index(ep["ifname"])
            inner.add_address(idx, ep["ifname"], ep["ip"], ep["prefixlen"],
                              f"the container's address, leased from {_netname}")
            inner.up(idx, ep["ifname"], "an interface carries nothing until it is up")
        defaults = [ep for _n, ep in eps if ep["ifname"] == "eth0"]
        if defaults:
            inner.default_route(defaults[0]["gateway"])
        if rec["ports"] and only is None:
            from minibox.network import nft

            first = next(iter(rec["networks"].values()))
            subnet = f"{first['ip']}/{first['prefixlen']}"
            rec["table"] = nft.publish(cid, first["ip"], subnet, rec["ports"])
            _save(cdir, rec)
    except BaseException:
        # Nothing half-made stays: a pair whose end is still on the host would outlive
        # the container (the one in its namespace goes with it anyway).
        for _netname, ep in eps:
            host.delete(ep["veth"], "undo: the container could not be connected")
        raise
    finally:
        host.close()
        if inner is not None:
            inner.close()


def detach(cdir: str, cid: str, only: str | None = None) -> None:
    """The init has ended: its namespace took the container ends of the veths with it (and
    so their host ends, since a veth pair dies whole); remove port rules and stray ends."""
    rec = _read(cdir)
    if rec is None or rec["mode"] in ("none", "host"):
        return
    if rec.get("table") and only is None:
        from minibox.network import nft

        nft.unpublish(rec["table"])
        rec.pop("table")
        _save(cdir, rec)
    eps = [ep for n, ep in rec["networks"].items() if only in (None, n)]
    if any(os.path.exists(f"/sys/class/net/{ep['veth']}") for ep in eps):
        from minibox.network.netlink import Netlink

        nl = Netlink.host()
        try:
            for ep in eps:
                nl.delete(ep["veth"], "the host end of the container's veth pair (its "
                          "namespace is still alive, or the pair would be gone already)")
        finally:
            nl.close()


def release(cdir: str, cid: str) -> None:
    """The container is removed: give back its addresses and ports, update its peers."""
    rec = _read(cdir)
    if rec is None:
        return
    detach(cdir, cid)
    with ipam.Lock():
        for netname, ep in rec["networks"].items():
            ipam.free(netname, ep["ip"], cid)
        ipam.release_ports(rec["ports"], cid)
    for netname in rec["networks"]:
        _refresh_peers({"networks": {netname: None}}, cdir)
    try:
        os.unlink(os.path.join(cdir, RECORD))
    except FileNotFoundError:
        pass


def connect(cdir: str, cid: str, netname: str, pid: int | None) -> None:
    rec = _read(cdir)
    if rec is None or rec["mode"] in ("none", "host"):
        raise MiniboxError(f"container {cid[:12]} has no network of its own to connect "
                           "(it runs with --network none, host or container:ID)")
    if netname in rec["networks"]:
        raise MiniboxError(f"container {cid[:12]} is already connected to network {netname}")
    with ipam.Lock():
        cfg = ipam.load(netname)
        if cfg is None:
            raise MiniboxError(f"network {netname} not found (see: minibox network ls)")
        _join(cdir, cid, rec, cfg)
        ensure_bridge(cfg)
    if pid:
        attach_all(cdir, cid, rec, pid, only=netname)
    write_files(cdir)
    _refresh_peers(rec, cdir)


def disconnect(cdir: str, cid: str, netname: str) -> None:
    rec = _read(cdir)
    if rec is None or netname not in rec["networks"]:
        raise MiniboxError(f"container {cid[:12]} is not connected to network {netname}")
    detach(cdir, cid, only=netname)
    ep = rec["networks"].pop(netname)
    _save(cdir, rec)
    with ipam.Lock():
        ipam.free(netname, ep["ip"], cid)
    write_files(cdir)
    _refresh_peers({"networks": {netname: None}}, cdir)


def ports_of(cdir: str) -> list[dict]:
    rec = _read(cdir)
    return rec["ports"] if rec else []


def record(cdir: str) -> dict | None:
    return _read(cdir)
