"""Answering a registry's authentication challenge (RFC 7235 WWW-Authenticate).

A registry that wants credentials answers 401 with one of:

    WWW-Authenticate: Basic realm="Registry Realm"                 (htpasswd auth)
    WWW-Authenticate: Bearer realm="https://auth/token",service="registry",
                             scope="repository:a/b:pull"            (token auth)

Basic: every request carries `Authorization: Basic base64(user:password)` (RFC 7617).
Bearer: the client asks the realm for a token for that service and scope, with the user's
credentials as Basic auth if it has any (anonymous otherwise), and sends
`Authorization: Bearer TOKEN` (RFC 6750). A token is good for its scope, so tokens are
cached per scope (docker's token authentication specification, "Requesting a Token").
"""

from __future__ import annotations

import base64
import re
import threading
import urllib.parse
from collections.abc import Callable

from minibox.errors import MiniboxError

_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="x",service="y"` -> ("bearer", {"realm": "x", "service": "y"})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _PARAM.finditer(rest)}
    return scheme.lower(), params


class Auth:
    """What to put in the Authorization header for a scope, from the last challenge seen.

    `fetch_token(url, basic_header) -> (status, body dict)` is given by the client, so that
    token requests go through the same connections, TLS settings and narration.
    """

    def __init__(self, registry: str, creds: tuple[str, str] | None,
                 fetch_token: Callable[[str, str | None], tuple[int, dict]]) -> None:
        self.registry = registry
        self.creds = creds
        self.scheme: str | None = None
        self.params: dict[str, str] = {}
        self._tokens: dict[str, str] = {}
        self._fetch_token = fetch_token
        self._lock = threading.Lock()

    def basic(self) -> str | None:
        if not self.creds:
            return None
        user, password = self.creds
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def challenge(self, header: str) -> None:
        scheme, params = parse_challenge(header)
        if scheme not in ("basic", "bearer"):
            raise MiniboxError(f"registry {self.registry} asks for {scheme or '?'} "
                               "authentication; minibox speaks Basic and Bearer")
        if scheme == "bearer" and not params.get("realm"):
            raise MiniboxError(f"registry {self.registry} asks for a Bearer token but names "
                               "no realm to get it from")
        with self._lock:
            self.scheme, self.params = scheme, params

    def header(self, scope: str | None) -> str | None:
        if self.scheme == "basic":
            return self.basic()
        if self.scheme != "bearer":
            return None
        key = scope or ""
        with self._lock:
            token = self._tokens.get(key)
        if token is None:
            token = self._token(scope)
            with self._lock:
                self._tokens[key] = token
        return f"Bearer {token}"

    def forget(self, scope: str | None) -> None:
        """A token was refused (expired): ask for a new one next time."""
        with self._lock:
            self._tokens.pop(scope or "", None)

    def _token(self, scope: str | None) -> str:
        # One scope= parameter per resource (a cross-repository mount needs two).
        query = [("service", self.params.get("service", ""))]
        query += [("scope", s) for s in (scope or "").split()]
        sep = "&" if "?" in self.params["realm"] else "?"
        url = self.params["realm"] + sep + urllib.parse.urlencode(query)
        status, body = self._fetch_token(url, self.basic())
        if status in (401, 403):
            raise MiniboxError(f"registry {self.registry}: the token service refused "
                               f"{'these credentials' if self.creds else 'anonymous access'}"
                               f"{_message(body)} (run: minibox login {self.registry})")
        token = body.get("token") or body.get("access_token")
        if status != 200 or not isinstance(token, str):
            raise MiniboxError(f"registry {self.registry}: the token service at "
                               f"{self.params['realm']} answered {status} without a token")
        return token


def _message(body: dict) -> str:
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return f": {errors[0].get('message', '')}"
    return ""
