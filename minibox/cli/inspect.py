"""`inspect`, `top`, `stats`: what a container is, what runs in it, what it uses."""

from __future__ import annotations

import json
import os
import sys
import time

from minibox.cli.flags import FlagParser
from minibox.cli.main import store
from minibox.errors import MiniboxError


def _namespaces(pid: int) -> dict:
    out = {}
    if not pid:
        return out
    for ns in ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts", "time"):
        try:
            out[ns] = os.readlink(f"/proc/{pid}/ns/{ns}")
        except OSError:
            pass
    return out


def _network_settings(cid: str) -> dict:
    """docker's NetworkSettings: each network's address and gateway, and the ports."""
    import os

    from minibox.cli.main import ROOT

    try:
        with open(os.path.join(ROOT, "containers", cid, "network.json")) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return {"Networks": {}, "Ports": {}}
    nets = {name: {"IPAddress": ep["ip"], "IPPrefixLen": ep["prefixlen"],
                   "Gateway": ep["gateway"], "HostInterface": ep["veth"],
                   "Interface": ep["ifname"]} for name, ep in rec["networks"].items()}
    ports: dict[str, list] = {}
    for p in rec["ports"]:
        ports.setdefault(f"{p['containerPort']}/{p['proto']}", []).append(
            {"HostIp": p["hostIp"], "HostPort": str(p["hostPort"])})
    return {"Networks": nets, "Ports": ports}


def describe(st: dict, spec: dict) -> dict:
    from minibox.cgroups.driver import open_group
    from minibox.runtime.state import refresh

    st = refresh(st)
    group = open_group(st["id"])
    running = st["status"] in ("running", "paused")
    proc = spec["process"]
    return {
        "Id": st["id"],
        "Created": st["created"],
        "Path": proc["args"][0],
        "Args": proc["args"][1:],
        "State": {
            "Status": {"stopped": "exited"}.get(st["status"], st["status"]),
            "Running": running, "Paused": st["status"] == "paused",
            "Restarting": st["status"] == "restarting", "OOMKilled": st.get("oomKilled", False),
            "Pid": st.get("pid", 0) if running else 0, "ExitCode": st.get("exitCode") or 0,
            "StartedAt": st.get("startedAt"), "FinishedAt": st.get("finishedAt"),
            "MonitorPid": st.get("monitorPid", 0),
        },
        "Name": "/" + st.get("name", ""),
        "NetworkSettings": _network_settings(st["id"]),
        "RestartCount": st.get("restartCount", 0),
        "Rootfs": st.get("rootfs"),
        "HostConfig": {
            "Resources": spec["linux"].get("resources", {}),
            "RestartPolicy": st.get("restartPolicy"),
            "AutoRemove": st.get("autoRemove", False),
            "ReadonlyRootfs": spec["root"].get("readonly", False),
        },
        "Config": {
            "Hostname": spec.get("hostname", ""), "Env": proc["env"], "Cmd": proc["args"],
            "WorkingDir": proc.get("cwd", "/"), "Tty": proc.get("terminal", False),
            "User": f"{proc['user']['uid']}:{proc['user']['gid']}",
        },
        "Mounts": [{"Type": m.get("type"), "Source": m.get("source"),
                    "Destination": m["destination"], "Options": m.get("options", [])}
                   for m in spec["mounts"]],
        "Namespaces": _namespaces(st.get("pid", 0) if running else 0),
        "CgroupPaths": group.dirs if running else [],
        "OCIState": {k: st.get(k) for k in ("ociVersion", "id", "status", "pid", "bundle",
                                            "annotations")},
    }


def inspect(argv: list[str]) -> int:
    p = FlagParser("minibox inspect", "minibox inspect [--type container|image] NAME [NAME...]",
                   "Show containers' (or images') state and configuration as JSON.",
                   positionals=("CONTAINER",), rest="more", interspersed=True)
    p.add("--type", choices=("container", "image"), help="look only for this kind of object")
    o = p.parse(argv)
    st = store()
    out, code = [], 0
    for ref in [o.container] + o.more:
        try:
            if o.type == "image":
                raise MiniboxError(f"No such object: {ref}", 1)
            cid = st.resolve(ref)
            out.append(describe(st.load(cid), st.spec(cid)))
        except MiniboxError as err:
            if o.type != "container":  # docker: a name that is no container may be an image
                from minibox.cli.images import inspect_images

                found, _ = inspect_images([ref])
                if found:
                    out.extend(found)
                    continue
            sys.stderr.write(f"minibox: {err.message}\n")
            code = 1
    print(json.dumps(out, indent=4))
    return code


def _proc_row(pid: int) -> tuple[str, str, str, str] | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    nspid = status.get("NSpid", "").split()
    return (status.get("Uid", "").split()[0] if status.get("Uid") else "?", str(pid),
            nspid[-1] if nspid else "?", cmd or f"[{status.get('Name', '').strip()}]")


def top(argv: list[str]) -> int:
    from minibox.cgroups.driver import open_group
    from minibox.runtime.state import refresh

    p = FlagParser("minibox top", "minibox top CONTAINER",
                   "List a container's processes, with host and container PIDs.",
                   positionals=("CONTAINER",))
    o = p.parse(argv)
    st = store()
    cid = st.resolve(o.container)
    if refresh(st.load(cid))["status"] not in ("running", "paused"):
        raise MiniboxError(f"Error response from daemon: Container {cid} is not running", 1)
    print(f"{'UID':<8} {'PID':<10} {'CONTAINER PID':<14} CMD")
    for pid in open_group(cid).pids():
        row = _proc_row(pid)
        if row:
            print(f"{row[0]:<8} {row[1]:<10} {row[2]:<14} {row[3]}")
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{n}B"
        n /= 1024
    return str(n)


def stats(argv: list[str]) -> int:
    from minibox.cgroups.driver import open_group

    p = FlagParser("minibox stats", "minibox stats [--no-stream] [CONTAINER...]",
                   "Show CPU, memory and pids use, read from each container's cgroup.",
                   rest="refs")
    p.add("--no-stream", kind="bool", help="print once and exit")
    p.add("-a", "--all", kind="bool", help="include stopped containers")
    p.add("--format", metavar="FORMAT", help="json: one JSON object per line")
    o = p.parse(argv)
    st = store()
    ids = [st.resolve(r) for r in o.refs] if o.refs else [
        s["id"] for s in st.all() if s["status"] in ("running", "paused") or o.all]
    ncpu = os.cpu_count() or 1
    while True:
        groups = {cid: open_group(cid) for cid in ids}
        first = {cid: g.stats() for cid, g in groups.items()}
        t0 = time.monotonic()
        time.sleep(0.5)
        dt = time.monotonic() - t0
        rows = []
        for cid, g in groups.items():
            now = g.stats()
            name = st.load(cid).get("name", "") if os.path.isdir(st.path(cid)) else ""
            used = now.get("cpu_usage_ns", 0) - first[cid].get("cpu_usage_ns", 0)
            cpu = 100.0 * used / (dt * 1e9)
            mem, lim = now.get("memory_usage", 0), now.get("memory_limit", -1)
            host_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            if lim < 0 or lim > host_mem:
                lim = host_mem
            rows.append({"ID": cid[:12], "Name": name, "CPUPerc": f"{cpu:.2f}%",
                         "MemUsage": f"{_size(mem)} / {_size(lim)}",
                         "MemPerc": f"{100.0 * mem / lim:.2f}%" if lim else "0.00%",
                         "PIDs": str(now.get("pids", 0)), "cpu": cpu, "ncpu": ncpu})
        if o.format == "json":
            for r in rows:
                print(json.dumps({k: v for k, v in r.items() if k not in ("cpu", "ncpu")}))
        else:
            print(f"{'CONTAINER ID':<14} {'NAME':<22} {'CPU %':<8} {'MEM USAGE / LIMIT':<24} "
                  f"{'MEM %':<8} PIDS")
            for r in rows:
                print(f"{r['ID']:<14} {r['Name']:<22} {r['CPUPerc']:<8} {r['MemUsage']:<24} "
                      f"{r['MemPerc']:<8} {r['PIDs']}")
        sys.stdout.flush()
        if o.no_stream:
            return 0
