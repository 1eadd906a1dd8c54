"""`-c` / `--change`: Dockerfile instructions applied to an image config (import, commit).

docker accepts CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME
and WORKDIR here (docker import --help); the JSON ("exec") form of CMD and ENTRYPOINT is
kept as a list, the shell form becomes ["/bin/sh", "-c", TEXT] (Dockerfile reference).
"""

from __future__ import annotations

import json
import shlex

from minibox.errors import MiniboxError

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER",
           "VOLUME", "WORKDIR")


def _exec_form(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", text]


def _pairs(keyword: str, text: str) -> list[tuple[str, str]]:
    words = shlex.split(text)
    if not words:
        raise MiniboxError(f"{keyword} requires at least one argument")
    if "=" not in words[0]:
        # the old form: ENV KEY VALUE WITH SPACES
        key, _, value = text.strip().partition(" ")
        return [(key, value.strip())]
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise MiniboxError(f'{keyword} needs KEY=VALUE pairs, got "{w}"')
        out.append((key, value))
    return out


def apply(config: dict, changes: list[str]) -> dict:
    """Return `config` (the "config" object of an image config) with `changes` made."""
    cfg = dict(config)
    for change in changes:
        keyword, _, rest = change.strip().partition(" ")
        keyword = keyword.upper()
        if keyword not in ALLOWED:
            raise MiniboxError(f'{keyword or change!r} is not a valid change command: use one '
                               f"of {', '.join(ALLOWED)}")
        rest = rest.strip()
        if keyword == "CMD":
            cfg["Cmd"] = _exec_form(rest)
        elif keyword == "ENTRYPOINT":
            cfg["Entrypoint"] = _exec_form(rest)
        elif keyword == "ENV":
            env = list(cfg.get("Env") or [])
            for key, value in _pairs("ENV", rest):
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
            cfg["Env"] = env
        elif keyword == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(_pairs("LABEL", rest))
            cfg["Labels"] = labels
        elif keyword == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in rest.split():
                ports[p if "/" in p else f"{p}/tcp"] = {}
            cfg["ExposedPorts"] = ports
        elif keyword == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            paths = _exec_form(rest) if rest.startswith("[") else rest.split()
            for v in paths:
                vols[v] = {}
            cfg["Volumes"] = vols
        elif keyword == "WORKDIR":
            cfg["WorkingDir"] = rest
        elif keyword == "USER":
            cfg["User"] = rest
        elif keyword == "STOPSIGNAL":
            cfg["StopSignal"] = rest
        elif keyword == "ONBUILD":
            cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [rest]
        if not rest:
            raise MiniboxError(f"{keyword} requires at least one argument")
    return cfg
