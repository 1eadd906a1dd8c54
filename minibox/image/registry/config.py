"""minibox's client configuration: credentials and registry certificates, as docker keeps them.

The config directory is `$MINIBOX_CONFIG` (set by the global `--config DIR` flag too), else
`~/.minibox` (root's is /root/.minibox), the counterpart of docker's `~/.docker`:

    config.json                   {"auths": {"HOST:PORT": {"auth": base64("user:pass")}},
                                   "insecure-registries": ["HOST:PORT", ...]}
                                  created 0600: it holds passwords (docker login(1))
    certs.d/HOST:PORT/ca.crt      the CA that signed that registry's certificate

CA certificates are also read from /etc/minibox/certs.d/HOST:PORT/ca.crt, the machine-wide
place, as the docker daemon reads /etc/docker/certs.d.
"""

from __future__ import annotations

import base64
import json
import os

from minibox import explain
from minibox.errors import MiniboxError

SYSTEM_CERTS = "/etc/minibox/certs.d"


def config_dir() -> str:
    return os.environ.get("MINIBOX_CONFIG") or os.path.join(os.path.expanduser("~"), ".minibox")


def config_path() -> str:
    return os.path.join(config_dir(), "config.json")


def load() -> dict:
    path = config_path()
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise MiniboxError(f"cannot read {path}: {err} (fix or remove the file)") from None
    if not isinstance(data, dict):
        raise MiniboxError(f"{path} is not a JSON object (fix or remove the file)")
    return data


def save(data: dict) -> None:
    """Write config.json whole: 0600 from the first byte (O_CREAT mode), tmp + rename."""
    path = config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(data, indent="\t") + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    explain.step(f"write({path}, mode 0600)", "ok",
                 "credentials are stored as docker stores them, readable by the owner only",
                 "docker-login(1)")


def credentials(registry: str) -> tuple[str, str] | None:
    entry = load().get("auths", {}).get(registry)
    if not isinstance(entry, dict) or not entry.get("auth"):
        return None
    try:
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise MiniboxError(f"the stored credentials for {registry} in {config_path()} are "
                           f"not base64 of user:password (run: minibox login {registry})"
                           ) from None
    return user, password


def store_credentials(registry: str, user: str, password: str) -> None:
    data = load()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    data.setdefault("auths", {})[registry] = {"auth": auth}
    save(data)


def remove_credentials(registry: str) -> bool:
    data = load()
    if registry not in data.get("auths", {}):
        return False
    del data["auths"][registry]
    save(data)
    return True


def insecure(registry: str) -> bool:
    return registry in (load().get("insecure-registries") or [])


def ca_file(registry: str) -> str | None:
    """certs.d/HOST:PORT/ca.crt under the config dir, else under /etc/minibox."""
    for top in (os.path.join(config_dir(), "certs.d"), SYSTEM_CERTS):
        path = os.path.join(top, registry, "ca.crt")
        if os.path.isfile(path):
            return path
    return None
