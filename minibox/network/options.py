"""docker's network flags -> a plan recorded in the spec (no kernel step happens here).

The plan travels in the spec's annotations (`minibox.network`, a JSON string, since
OCI annotations are strings: config.md "annotations"), so the engine that makes the
container, maybe in another process (the monitor), finds it there.
"""

from __future__ import annotations

import os

from minibox.errors import MiniboxError

ANNOTATION = "minibox.network"
DEFAULT_NETWORK = "bridge"  # docker's name for its default network
# What `run` does without --network. docker's default is its bridge; minibox keeps a
# namespace with only lo, so that `run /bin/true` pays no netlink and no pyroute2 import
# unless a network is asked for (`--network bridge`).
DEFAULT_MODE = "none"


def parse_publish(text: str) -> dict:
    """-p [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp] (docker run --publish)."""
    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise MiniboxError(f'invalid -p "{text}": protocol must be tcp or udp')
    parts = spec.rsplit(":", 2)
    if len(parts) == 3:
        host_ip, host_port, cport = parts
    elif len(parts) == 2:
        host_ip, (host_port, cport) = "", parts
    else:
        host_ip, host_port, cport = "", "", parts[0]
    host_ip = host_ip.strip("[]") or "0.0.0.0"
    try:
        import ipaddress

        ipaddress.IPv4Address(host_ip)
    except ValueError:
        raise MiniboxError(f'invalid -p "{text}": {host_ip} is not an IPv4 address '
                           "(use -p [IP:]HOSTPORT:CONTAINERPORT[/tcp|udp])") from None
    for port in ([host_port] if host_port else []) + [cport]:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise MiniboxError(f'invalid -p "{text}": "{port}" is not a port number 1-65535 '
                               "(use -p [IP:]HOSTPORT:CONTAINERPORT[/tcp|udp])")
    return {"proto": proto, "hostIp": host_ip, "hostPort": int(host_port or 0),
            "containerPort": int(cport)}


def parse_expose(text: str) -> list[dict]:
    port, _, proto = text.partition("/")
    proto = proto or "tcp"
    lo, _, hi = port.partition("-")
    if proto not in ("tcp", "udp") or not lo.isdigit() or (hi and not hi.isdigit()):
        raise MiniboxError(f'invalid --expose "{text}": use PORT[-PORT][/tcp|udp]')
    return [{"proto": proto, "hostIp": "0.0.0.0", "hostPort": 0, "containerPort": p}
            for p in range(int(lo), int(hi or lo) + 1)]


def parse_add_host(text: str) -> tuple[str, str]:
    name, sep, ip = text.partition(":")
    try:
        import ipaddress

        ipaddress.ip_address(ip)
    except ValueError:
        sep = ""
    if not sep or not name:
        raise MiniboxError(f'invalid --add-host "{text}": use NAME:IP')
    return name, ip


def plan(opts: object, hostname: str) -> dict | None:
    """The network plan for `run`/`create` flags, or None when the container keeps a
    namespace with only lo and needs no files (the fast path)."""
    mode = getattr(opts, "net", None) or DEFAULT_MODE
    if mode == "private":
        mode = "none"  # minibox's older name for a namespace with only lo
    ports = [parse_publish(p) for p in getattr(opts, "publish", [])]
    exposed = [e for x in getattr(opts, "expose", []) for e in parse_expose(x)]
    if getattr(opts, "publish_all", False):
        have = {(p["proto"], p["containerPort"]) for p in ports}
        ports += [e for e in exposed if (e["proto"], e["containerPort"]) not in have]
    hosts = [parse_add_host(h) for h in getattr(opts, "add_host", [])]
    dns = list(getattr(opts, "dns", []))
    for d in dns:
        try:
            import ipaddress

            ipaddress.ip_address(d)
        except ValueError:
            raise MiniboxError(f'invalid --dns "{d}": give a name server\'s IP address') from None
    if ports and mode in ("none", "host") or ports and mode.startswith("container:"):
        raise MiniboxError(f"-p/-P need a network with addresses: --network {mode} has none "
                           "to publish to (use --network bridge or a network's name)")
    if mode.startswith("container:") or mode in ("none", "host") and not hosts and not dns:
        return None  # container:ID uses the other's namespace and files
    return {"mode": mode, "ports": ports, "expose": exposed, "addHosts": hosts, "dns": dns,
            "hostname": hostname}


def apply(spec: dict, net: dict, files_dir: str) -> None:
    """Record the plan and bind the per-container /etc files (made by endpoint.prepare)."""
    import json

    spec["annotations"][ANNOTATION] = json.dumps(net)
    for name in ("hostname", "hosts", "resolv.conf"):
        spec["mounts"].append({"destination": f"/etc/{name}", "type": "bind",
                               "source": os.path.join(files_dir, name),
                               "options": ["rbind"]})


def recorded(spec: dict) -> dict | None:
    text = spec.get("annotations", {}).get(ANNOTATION)
    if not text:
        return None
    import json

    return json.loads(text)
