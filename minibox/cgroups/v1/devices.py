"""v1 devices: an allow list of device nodes (cgroup-v1/devices.rst)."""

from __future__ import annotations

from minibox.cgroups import fs


def rule_text(rule: dict) -> str:
    major = "*" if rule.get("major") is None else rule["major"]
    minor = "*" if rule.get("minor") is None else rule["minor"]
    kind = rule.get("type", "a")
    if kind == "a":
        return "a"
    return f"{kind} {major}:{minor} {rule.get('access', 'rwm')}"


def apply(d: str, res: dict) -> None:
    rules = res.get("devices")
    if rules is None:
        return
    for rule in rules:
        name = "devices.allow" if rule["allow"] else "devices.deny"
        why = ("allow this device" if rule["allow"]
               else "deny every device first; the allow list follows")
        fs.write(f"{d}/{name}", rule_text(rule), why)
