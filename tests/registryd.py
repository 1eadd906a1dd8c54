"""A real Docker registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1.

Used by tests/test_registry.py and bench/registry.py: a temporary directory holds the
config, the storage, and (when asked) an htpasswd file and a CA plus a certificate for
localhost and 127.0.0.1 made with openssl. The server is started on a free loopback port
and stopped by its PID.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

USER, PASSWORD = "student", "s3cret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certs(d: Path) -> tuple[Path, Path, Path]:
    """(ca.crt, server.crt, server.key): a CA and a certificate it signed for localhost
    and 127.0.0.1 (subjectAltName: clients check it, not the CN)."""
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=minibox test CA")
    ssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    return d / "ca.crt", d / "server.crt", d / "server.key"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A token service for the registry's Bearer auth (docker's token authentication
    specification), on 127.0.0.1: GET /token?service=S&scope=repository:NAME:ACTIONS with
    Basic credentials answers {"token": JWT} granting the asked actions to USER; no or
    wrong credentials get 401. The JWT is RS256-signed with openssl(1) by a key whose
    self-signed certificate the registry trusts (`rootcertbundle`), sent in `x5c`.

    Debian packages no token server, so this small one stands in for docker_auth or
    Harbor's: it plays the part the spec gives the authorisation service, nothing else.
    """

    def __init__(self, top: Path, service: str = "minibox-test") -> None:
        top.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = top / "token.key", top / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", str(self.key), "-out", str(self.cert), "-days", "1",
                        "-subj", "/CN=minibox test token signer"], check=True,
                       capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.service = service
        self.issuer = "minibox-test-issuer"
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                server.requests.append(self.path)
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                auth = self.headers.get("Authorization", "")
                user = None
                if auth.startswith("Basic "):
                    name, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                    user = name if (name, pw) == (USER, PASSWORD) else "!"
                if user in (None, "!"):
                    body = b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}'
                    self.send_response(401)
                else:
                    body = json.dumps({"token": server.token(user, query.get("scope", []))
                                       }).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def token(self, user: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":", 2) if scope.count(":") >= 2 else \
                (scope, "", "")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing = (_b64url(json.dumps(header).encode()) + "."
                   + _b64url(json.dumps(claims).encode())).encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing, check=True, capture_output=True).stdout
        return signing.decode() + "." + _b64url(sig)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


class Registryd:
    """docker-registry serving DIR/storage on 127.0.0.1:PORT (plain, htpasswd, TLS)."""

    def __init__(self, top: Path, auth: bool = False, tls: bool = False,
                 port: int | None = None, token: TokenServer | None = None) -> None:
        self.top = top
        self.auth = auth
        self.tls = tls
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.storage = top / "storage"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ca: Path | None = None
        top.mkdir(parents=True, exist_ok=True)
        lines = ["version: 0.1", "log:", "  level: error", "  accesslog:",
                 "    disabled: true", "storage:", "  filesystem:",
                 f"    rootdirectory: {self.storage}", "  delete:", "    enabled: true",
                 "http:", f"  addr: 127.0.0.1:{self.port}"]
        if tls:
            self.ca, cert, key = make_certs(top / "certs")
            lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
        if auth:
            out = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True,
                                 capture_output=True, text=True).stdout
            (top / "htpasswd").write_text(out)
            lines += ["auth:", "  htpasswd:", "    realm: minibox-test",
                      f"    path: {top / 'htpasswd'}"]
        if token:
            lines += ["auth:", "  token:", f"    realm: {token.realm}",
                      f"    service: {token.service}", f"    issuer: {token.issuer}",
                      f"    rootcertbundle: {token.cert}"]
        self.config = top / "config.yml"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def start(self) -> Registryd:
        log = open(self.top / "registry.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited {self.proc.returncode}: "
                                   + (self.top / "registry.log").read_text()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"docker-registry did not listen on {self.host}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def blob_data(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (registry/storage/paths.go)."""
        hexd = digest.split(":", 1)[1]
        return (self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data")

    def __enter__(self) -> Registryd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
