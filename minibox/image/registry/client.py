"""One registry endpoint, spoken to over HTTP/1.1 with the standard library.

Why http.client and ssl rather than a library: the distribution API is a handful of plain
requests, and the parts that matter here are the ones libraries hide: the exact Accept
list, Range requests to resume a blob, chunked uploads with Content-Range, the TLS context
built from certs.d, and one narrated line per request. http.client gives all of that
directly, loads in a few milliseconds, and adds no dependency.

Each thread keeps its own keep-alive connection (layers are fetched by several threads at
once; an HTTPConnection is not shared between threads).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable

from minibox import explain
from minibox.errors import MiniboxError
from minibox.image.registry import auth as authmod
from minibox.image.registry import config

TYPE_CHECKING = False  # typing costs ms at import; the hints below are strings
if TYPE_CHECKING:
    from typing import BinaryIO

SPEC = "distribution-spec v1.1"
# Requests that failed on the wire (refused, reset, cut mid-answer) are tried this often.
ATTEMPTS = 4
TIMEOUT = 60.0
CHUNK = 1 << 20  # read size for blob bodies


class Unreachable(MiniboxError):
    """The registry could not be reached, or the connection dropped, after every retry."""


class Response:
    """The answer to one request: status, headers (case-insensitive) and the open body."""

    def __init__(self, raw: http.client.HTTPResponse, url: str, method: str = "GET") -> None:
        self.raw = raw
        self.method = method
        self.status = raw.status
        self.reason = raw.reason
        self.url = url

    def header(self, name: str) -> str | None:
        return self.raw.getheader(name)

    def read(self) -> bytes:
        return self.raw.read()

    def json(self) -> dict:
        body = self.raw.read()
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def error_text(self) -> str:
        """The registry's own words for an error (its JSON `errors` list), else the reason."""
        data = self.json()
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return "; ".join(str(e.get("message") or e.get("code")) for e in errors)
        return f"{self.status} {self.reason}".strip()


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if not host.startswith("[") or "]:" in host \
        else host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _unverified() -> ssl.SSLContext:
    """A TLS client context that checks nothing (no hostname, no chain)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Registry:
    """A registry at HOST[:PORT]: TLS (verified with certs.d), credentials, retries.

    `tls_verify`: True (default) verifies the certificate; False, or the registry listed
    in `insecure-registries`, skips the check and allows plain HTTP (docker's insecure
    registries). A registry on the loopback interface may also answer in plain HTTP (as
    docker allows 127.0.0.0/8), but a certificate it presents is still verified.
    """

    def __init__(self, host: str, tls_verify: bool = True,
                 creds: tuple[str, str] | None | bool = True) -> None:
        self.host = host
        self.tls_verify = tls_verify
        self.insecure = not tls_verify or config.insecure(host)
        self.plain_ok = self.insecure or is_loopback(host)
        self.scheme: str | None = None
        if creds is True:
            creds = config.credentials(host)
        self.auth = authmod.Auth(host, creds or None, self._fetch_token)
        self._local = threading.local()
        self._conns: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._ping_lock = threading.Lock()

    # -- connections ------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self.insecure:  # --tls-verify=false, or listed in insecure-registries
            return _unverified()  # no CA bundle to load (about 20 ms) for no checks
        ctx = ssl.create_default_context()
        ca = config.ca_file(self.host)
        if ca:
            ctx.load_verify_locations(cafile=ca)
        return ctx

    def _speaks_tls(self) -> bool:
        """Does HOST:PORT answer a TLS handshake? Asked before the first request to a
        registry that may be plain HTTP (loopback), so that a plain one costs neither
        the CA bundle nor a failed request. Only the handshake happens on this
        connection, unverified, and it is closed: nothing is sent over it."""
        parts = urllib.parse.urlsplit(f"//{self.host}")
        try:
            sock = socket.create_connection((parts.hostname, parts.port or 443), TIMEOUT)
        except OSError:
            return True  # the real request says what is wrong
        try:
            with _unverified().wrap_socket(sock, server_hostname=parts.hostname):
                answer = "handshake completed"
                return True
        except ssl.SSLError as err:
            answer = f"no TLS ({err.reason})"
            return False
        except OSError as err:
            answer = f"failed ({_why_failed(err)})"
            return True
        finally:
            sock.close()
            explain.step(f"TLS handshake with {self.host}", answer, "does this loopback "
                         "registry speak HTTPS or plain HTTP? (docker tries HTTPS first)",
                         "RFC 8446")

    def _connect(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        key = (scheme, netloc)
        conns = self._local.__dict__.setdefault("conns", {})
        conn = conns.get(key)
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(netloc, timeout=TIMEOUT, blocksize=CHUNK,
                                                   context=self._context())
            else:
                # blocksize: a file body is sent in reads of this size (default 8 KiB).
                conn = http.client.HTTPConnection(netloc, timeout=TIMEOUT, blocksize=CHUNK)
            conns[key] = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _drop(self, scheme: str, netloc: str) -> None:
        conn = self._local.__dict__.get("conns", {}).pop((scheme, netloc), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    # -- the one place requests are made ----------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.scheme or 'https'}://{self.host}{path}"

    def raw_request(self, method: str, url: str, headers: dict[str, str] | None = None,
                    body: bytes | BinaryIO | None = None, why: str = "",
                    retry: bool = True) -> Response:
        """Send one request to an absolute URL, retried (with a new connection) when the
        connection fails or drops; narrated as `METHOD URL = STATUS`."""
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        hdrs = {"User-Agent": "minibox", **(headers or {})}
        attempts = ATTEMPTS if retry and not hasattr(body, "read") else 1
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(0.25 * 2 ** (attempt - 1))
            conn = self._connect(parts.scheme, parts.netloc)
            try:
                conn.request(method, target, body=body, headers=hdrs)
                raw = conn.getresponse()
            except ssl.SSLError as err:
                self._drop(parts.scheme, parts.netloc)
                explain.step(f"{method} {url}", f"TLS handshake failed ({err.reason})",
                             why or "registry request", SPEC)
                raise
            except (OSError, http.client.HTTPException) as err:
                self._drop(parts.scheme, parts.netloc)
                explain.step(f"{method} {url}", f"failed ({_why_failed(err)})",
                             why or "registry request", SPEC)
                last = err
                continue
            explain.step(f"{method} {url}", f"{raw.status} {raw.reason}",
                         why or "registry request", SPEC)
            if raw.status in (502, 503, 504) and method in ("GET", "HEAD") \
                    and attempt + 1 < attempts:
                raw.read()  # a proxy or a registry restarting: ask again (RFC 9110 15.6)
                last = http.client.HTTPException(f"{raw.status} {raw.reason}")
                continue
            return Response(raw, url, method)
        raise Unreachable(f"registry {self.host}: {method} {url} failed: {_why_failed(last)} "
                          f"(is the registry running? then try again)") from last

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | BinaryIO | None = None, scope: str | None = None,
                why: str = "", retry: bool = True) -> Response:
        """A request to this registry (`path` from /v2/, or an absolute upload URL), with
        the Authorization the last challenge asked for; one 401 is answered and retried."""
        if self.scheme is None:
            with self._ping_lock:
                if self.scheme is None:
                    self._ping()
        url = path if "://" in path else self.url(path)
        for answered in (False, True):
            hdrs = dict(headers or {})
            value = self.auth.header(scope)
            if value:
                hdrs["Authorization"] = value
            if hasattr(body, "seek"):
                body.seek(0)  # a retry after a challenge sends the same body again
            resp = self.raw_request(method, url, hdrs, body, why, retry)
            if resp.status != 401 or answered:
                return resp
            challenge = resp.header("WWW-Authenticate")
            resp.read()
            if not challenge:
                return resp
            self.auth.forget(scope)
            self.auth.challenge(challenge)
        return resp  # pragma: no cover - the loop returns

    def _fetch_token(self, url: str, basic: str | None) -> tuple[int, dict]:
        resp = self.raw_request("GET", url, {"Authorization": basic} if basic else {},
                                why="get a Bearer token for this scope from the realm")
        return resp.status, resp.json()

    # -- the API -----------------------------------------------------------------------

    def ping(self) -> Response:
        """GET /v2/: is this a registry, which scheme does it speak, which auth does it want
        (distribution-spec "Determining support"; docker tries HTTPS first).

        self.scheme is set only when the answer is in: threads pushing or pulling blobs
        at once wait on the lock for one ping rather than racing to their own."""
        with self._ping_lock:
            resp = self._ping()
            return resp

    def _ping(self) -> Response:
        scheme = "https"
        try:
            if self.plain_ok and not self.insecure and not self._speaks_tls():
                raise ssl.SSLError("the registry answered the TLS handshake in plain HTTP")
            resp = self.raw_request("GET", f"https://{self.host}/v2/",
                                    why="is this a v2 registry? what authentication does "
                                    "it want?")
        except ssl.SSLCertVerificationError as err:
            raise MiniboxError(
                f"registry {self.host}: TLS certificate not trusted: {err.verify_message} "
                f"(put its CA certificate in {config.config_dir()}/certs.d/{self.host}/ca.crt"
                ", or use --tls-verify=false)") from None
        except ssl.SSLError as err:
            if not self.plain_ok:
                raise MiniboxError(
                    f"registry {self.host} does not speak TLS ({err.reason}); if it is a "
                    "plain-HTTP registry use --tls-verify=false or list it in "
                    f"insecure-registries in {config.config_path()}") from None
            self._drop("https", self.host)
            scheme = "http"
            resp = self.raw_request("GET", f"http://{self.host}/v2/", why="the registry "
                                    "speaks plain HTTP (allowed: loopback or insecure "
                                    "registry)")
        if resp.status == 401 and resp.header("WWW-Authenticate"):
            self.auth.challenge(resp.header("WWW-Authenticate") or "")
        elif resp.status != 200:
            resp.read()
            raise MiniboxError(f"{self.host} is not a registry: GET /v2/ answered "
                               f"{resp.status} {resp.reason}")
        resp.read()
        self.scheme = scheme
        return resp

    def check_login(self) -> None:
        """GET /v2/ with the credentials: refused credentials raise with the registry's words."""
        self.ping()
        if self.auth.scheme is None:
            return  # the registry asks for nothing
        if self.auth.scheme == "bearer":
            self.auth.header(None)  # the token service checks the credentials
            return
        resp = self.request("GET", "/v2/", why="check the credentials")
        if resp.status == 401:
            raise MiniboxError(f"login to {self.host} refused: {resp.error_text()} "
                               "(wrong user name or password?)")
        resp.read()
        if resp.status != 200:
            raise MiniboxError(f"login to {self.host}: GET /v2/ answered {resp.status}")

    def blob_reader(self, repo: str, digest: str, size: int | None = None,
                    progress: Callable[[int], None] | None = None) -> BlobReader:
        """A file-like reader of a blob; see BlobReader."""
        return BlobReader(self, repo, digest, size, progress)


class Restart(Exception):
    """The connection dropped and the registry ignores Range: read the blob again."""


class BlobReader:
    """GET /v2/NAME/blobs/DIGEST as a stream with `read(n)`.

    The store hashes what it reads and keeps it only if the sha256 is the digest. When
    the connection drops the reader asks again with `Range: bytes=N-` (RFC 9110 14.2) and
    goes on where it stopped if the registry answers 206 Partial Content; a registry that
    answers 200 (whole blob again) makes it raise Restart, and the caller starts over.
    """

    def __init__(self, reg: Registry, repo: str, digest: str, size: int | None,
                 progress: Callable[[int], None] | None) -> None:
        self.reg, self.repo, self.digest, self.size = reg, repo, digest, size
        self.progress = progress
        self.path = f"/v2/{repo}/blobs/{digest}"
        self.done = 0
        self.failures = 0
        self.resp: Response | None = None

    def _open(self) -> None:
        headers = {"Range": f"bytes={self.done}-"} if self.done else {}
        why = (f"resume the blob from byte {self.done}" if self.done else
               "download a blob (a layer or the config)")
        # No retry inside: read() retries, resuming from where the bytes stopped.
        resp = self.reg.request("GET", self.path, headers,
                                scope=f"repository:{self.repo}:pull", why=why, retry=False)
        if resp.status == 200 and self.done:
            resp.read()
            raise Restart(self.digest)
        if resp.status not in (200, 206):
            raise MiniboxError(f"blob {self.digest} of {self.reg.host}/{self.repo}: "
                               f"{resp.error_text()}")
        self.resp = resp

    def read(self, n: int = CHUNK) -> bytes:
        while True:
            try:
                if self.resp is None:
                    self._open()
                assert self.resp is not None
                chunk = self.resp.raw.read1(n)
                if not chunk and self.size is not None and self.done < self.size:
                    raise http.client.IncompleteRead(b"", self.size - self.done)
                if not chunk:
                    # read1() never marks the answer finished; read() does, so that the
                    # keep-alive connection takes the next request.
                    self.resp.raw.read()
            except (OSError, http.client.HTTPException, Unreachable) as err:
                self.resp = None
                self.reg._drop(self.reg.scheme or "https", self.reg.host)
                self.failures += 1
                explain.step(f"GET {self.reg.url(self.path)}", f"cut after {self.done} bytes "
                             f"({_why_failed(err)})", "the connection dropped: resume", SPEC)
                if self.failures >= ATTEMPTS:
                    raise Unreachable(
                        f"registry {self.reg.host}: the connection dropped while downloading "
                        f"{self.digest} ({_why_failed(err)}); is the registry running? "
                        "then pull again") from None
                time.sleep(0.25 * 2 ** (self.failures - 1))
                continue
            self.done += len(chunk)
            if chunk and self.progress:
                self.progress(len(chunk))
            return chunk


def _why_failed(err: Exception | None) -> str:
    if isinstance(err, Unreachable):
        return str(err.__cause__ and _why_failed(err.__cause__) or "connection failed")
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, socket.timeout):
        return "timed out"
    if isinstance(err, http.client.RemoteDisconnected | ConnectionResetError):
        return "connection closed by the registry"
    if isinstance(err, http.client.IncompleteRead):
        return "connection closed before the end of the body"
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno).lower()
    return str(err) or type(err).__name__
