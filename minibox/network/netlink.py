"""Netlink through pyroute2, one narrated call per kernel request (rtnetlink(7)).

`IPRoute` opens an rtnetlink socket in the network namespace of the calling thread.
To talk to a container's namespace minibox enters it with setns(2) just long enough to
open a second socket, then comes back: a socket stays bound to the namespace it was
made in (network_namespaces(7)), so no helper process is needed.
"""

from __future__ import annotations

import os

from minibox import explain
from minibox.errors import MiniboxError
from minibox.kernel import namespaces

MAN = "rtnetlink(7)"


def _iproute() -> type:
    """pyroute2's IPRoute class, loaded without the rest of pyroute2.

    The package's __init__ imports every family pyroute2 speaks (ndb, ipdb, conntrack,
    wireguard, nl80211...): about 140 ms here, before minibox sends one message. When
    pyroute2 is not loaded yet, the package is registered bare (its search path, without
    running __init__) and only pyroute2.iproute.linux is imported: about 85 ms.
    """
    import sys

    if "pyroute2" not in sys.modules:
        import importlib.util

        spec = importlib.util.find_spec("pyroute2")
        pkg = importlib.util.module_from_spec(spec)  # a module object; __init__ not run
        sys.modules["pyroute2"] = pkg
    from pyroute2.iproute.linux import IPRoute

    return IPRoute


class Netlink:
    def __init__(self, ipr: object, where: str) -> None:
        self.ipr = ipr
        self.where = where  # "host" or "container PID", for the narration

    @classmethod
    def host(cls) -> Netlink:
        return cls(_iproute()(), "host")

    @classmethod
    def of_pid(cls, pid: int) -> Netlink:
        """An rtnetlink socket inside the network namespace of process `pid`."""
        IPRoute = _iproute()  # noqa: N806 - the class, named as pyroute2 names it
        here = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        there = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            namespaces.setns(there, "net", f"/proc/{pid}/ns/net",
                             "enter the container's network namespace for a moment: a "
                             "netlink socket opened now stays bound to it")
            try:
                ipr = IPRoute()
            finally:
                namespaces.setns(here, "net", "/proc/self/ns/net (back to the host's)",
                                 "back to the host's namespace; the socket stays in the "
                                 "container's")
        finally:
            os.close(here)
            os.close(there)
        return cls(ipr, f"netns of pid {pid}")

    def close(self) -> None:
        self.ipr.close()

    def _do(self, text: str, why: str, fn: str, *args: object, **kw: object) -> object:
        call = f"netlink({self.where}): {text}"
        try:
            ret = getattr(self.ipr, fn)(*args, **kw)
        except Exception as err:  # pyroute2's NetlinkError carries the errno in .code
            code = getattr(err, "code", None)
            if code is None:
                raise
            oserr = OSError(code, f"{text}: {os.strerror(code)}")
            explain.failed(call, oserr, why, MAN)
            raise oserr from None
        explain.step(call, 0, why, MAN)
        return ret

    def index(self, ifname: str) -> int | None:
        found = self.ipr.link_lookup(ifname=ifname)
        return found[0] if found else None

    def add_bridge(self, name: str) -> int:
        self._do(f"RTM_NEWLINK {name} type bridge", "a virtual switch on the host: every "
                 "container's veth end plugs into it", "link", "add", ifname=name, kind="bridge")
        return self.index(name)

    def add_address(self, index: int, ifname: str, ip: str, prefixlen: int, why: str) -> None:
        self._do(f"RTM_NEWADDR {ip}/{prefixlen} dev {ifname}", why, "addr", "add",
                 index=index, address=ip, prefixlen=prefixlen)

    def up(self, index: int, ifname: str, why: str, master: int | None = None,
           master_name: str = "") -> None:
        kw = {"master": master} if master is not None else {}
        extra = f" master {master_name or master}" if master is not None else ""
        self._do(f"RTM_NEWLINK {ifname}{extra} up", why, "link", "set", index=index,
                 state="up", **kw)

    def add_veth(self, host: str, peer: str) -> int:
        self._do(f"RTM_NEWLINK {host} type veth peer {peer}", "a veth pair is a cable with "
                 "two ends: whatever enters one comes out of the other (veth(4))", "link",
                 "add", ifname=host, kind="veth", peer={"ifname": peer})
        return self.index(host)

    def move(self, index: int, ifname: str, pid: int, newname: str) -> None:
        self._do(f"RTM_NEWLINK {ifname} netns pid {pid} name {newname}",
                 "move the cable's other end into the container's network namespace and "
                 f"name it {newname} there (one request: IFLA_NET_NS_PID with IFLA_IFNAME)",
                 "link", "set", index=index, net_ns_pid=pid, ifname=newname)

    def default_route(self, gateway: str) -> None:
        self._do(f"RTM_NEWROUTE default via {gateway}", "whatever is not on the container's "
                 "own subnet goes to the bridge's address on the host", "route", "add",
                 dst="0.0.0.0/0", gateway=gateway)

    def delete(self, ifname: str, why: str) -> bool:
        index = self.index(ifname)
        if index is None:
            return False
        try:
            self._do(f"RTM_DELLINK {ifname}", why, "link", "del", index=index)
        except OSError:
            return False  # gone meanwhile, with its namespace
        return True


def sysctl(path: str, value: str, why: str) -> None:
    """A write to /proc/sys (sysctl(8) does the same)."""
    from minibox.kernel.syscall import python

    def write() -> None:
        with open(path, "w") as f:
            f.write(value)

    try:
        python(write, (), f'write("{path}", "{value}")', why, "proc(5)")
    except OSError as err:
        raise MiniboxError(f"cannot set {path}: {err.strerror}") from None
