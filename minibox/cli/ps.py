"""`minibox ps`: list containers, in docker's columns (or --format json, -q)."""

from __future__ import annotations

import json
import time

from minibox.cli.flags import FlagParser
from minibox.cli.main import store
from minibox.cli.units import human_duration as human
from minibox.errors import MiniboxError

STATUS = {"created": "created", "running": "running", "paused": "paused",
          "stopped": "exited", "restarting": "restarting", "creating": "created",
          "removing": "removing"}


def _seconds(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    import calendar

    base, _, frac = stamp.rstrip("Z").partition(".")
    t = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return t + float("0." + (frac or "0"))


def status_text(st: dict, now: float) -> str:
    s = st["status"]
    if s in ("running", "paused"):
        up = f"Up {human(now - _seconds(st.get('startedAt') or st['created']))}"
        return up + " (Paused)" if s == "paused" else up
    if s == "stopped":
        ago = human(now - _seconds(st.get("finishedAt") or st["created"]))
        return f"Exited ({st.get('exitCode', 0)}) {ago} ago"
    if s == "restarting":
        return "Restarting"
    return "Created"


def _command(st: dict) -> str:
    text = " ".join(st.get("command") or [])
    return f'"{text[:20]}…"' if len(text) > 20 else f'"{text}"'


def main(argv: list[str]) -> int:
    p = FlagParser("minibox ps", "minibox ps [OPTIONS]", "List containers.")
    p.add("-a", "--all", kind="bool", help="show all containers (default: running ones)")
    p.add("-q", "--quiet", kind="bool", help="only ids")
    p.add("-f", "--filter", kind="append", metavar="KEY=VALUE", help="status=, name=, id=")
    p.add("--format", metavar="FORMAT", help="json: one JSON object per line")
    p.add("--no-trunc", kind="bool", help="full ids")
    o = p.parse(argv)
    filters: list[tuple[str, str]] = []
    for f in o.filter:
        key, eq, value = f.partition("=")
        if not eq or key not in ("status", "name", "id"):
            raise MiniboxError(f'invalid filter "{f}": use status=, name= or id=')
        if key == "status" and value not in ("created", "running", "paused", "exited",
                                             "restarting", "removing"):
            raise MiniboxError(f'invalid filter "status={value}": use created, running, '
                               "paused, exited, restarting or removing")
        filters.append((key, value))
    if o.format not in (None, "json", "{{json .}}"):
        raise MiniboxError(f'unsupported --format "{o.format}": use json')
    rows = sorted(store().all(), key=lambda s: s["created"], reverse=True)
    show_all = o.all or any(k == "status" for k, _ in filters)
    now = time.time()
    out = []
    for st in rows:
        status = STATUS.get(st["status"], st["status"])
        if not show_all and status not in ("running", "paused", "restarting"):
            continue
        if not all(_match(st, status, k, v) for k, v in filters):
            continue
        cid = st["id"] if o.no_trunc else st["id"][:12]
        # A container made from an image shows the image's name, as docker does.
        image = (st.get("annotations") or {}).get("minibox.imageRef") or st.get("rootfs", "")
        if o.quiet:
            out.append(cid)
        elif o.format:
            out.append(json.dumps({
                "ID": cid, "Image": image, "Command": _command(st),
                "CreatedAt": st["created"], "State": status,
                "Status": status_text(st, now), "Names": st.get("name", ""),
                "Pid": st.get("pid", 0), "ExitCode": st.get("exitCode")}))
        else:
            out.append(_row(cid, image, _command(st),
                            human(now - _seconds(st["created"])) + " ago",
                            status_text(st, now), _ports(st["id"]), st.get("name", "")))
    if not o.quiet and not o.format:
        print(_row("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"))
    for line in out:
        print(line)
    return 0


def _ports(cid: str) -> str:
    """docker's PORTS column: 127.0.0.1:8080->80/tcp, from the container's network record."""
    import os

    from minibox.cli.main import ROOT

    try:
        with open(os.path.join(ROOT, "containers", cid, "network.json")) as f:
            ports = json.load(f)["ports"]
    except (OSError, ValueError, KeyError):
        return ""
    return ", ".join(f"{p['hostIp']}:{p['hostPort']}->{p['containerPort']}/{p['proto']}"
                     for p in ports)


def _match(st: dict, status: str, key: str, value: str) -> bool:
    if key == "status":
        return status == value
    if key == "name":
        return value in st.get("name", "")
    return st["id"].startswith(value)


def _row(cid: str, image: str, cmd: str, created: str, status: str, ports: str,
         names: str) -> str:
    image = image if len(image) <= 20 else "…" + image[-19:]
    return f"{cid:<14} {image:<20} {cmd:<24} {created:<24} {status:<36} {ports:<7} {names}"
