"""A real Docker registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1.

Used by tests/test_registry.py and bench/registry.py: a temporary directory holds the
config, the storage, and (when asked) an htpasswd file and a CA plus a certificate for
localhost and 127.0.0.1 made with openssl. The server is started on a free loopback port
and stopped by its PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
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


class Registryd:
    """docker-registry serving DIR/storage on 127.0.0.1:PORT (plain, htpasswd, TLS)."""

    def __init__(self, top: Path, auth: bool = False, tls: bool = False,
                 port: int | None = None) -> None:
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
