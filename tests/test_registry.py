"""pull, push, login, logout and search against Debian's real docker-registry on 127.0.0.1.

Every registry here is a real `docker-registry serve` process (tests/registryd.py) started
by a fixture on a free loopback port and stopped by its PID; skopeo is the second client
for the interop tests. The one stand-in is `Relay`, a byte-for-byte TCP forwarder in front
of the registry that can cut a connection in the middle of a blob: a dropped connection
cannot be produced on demand otherwise. Each test uses its own data root and config dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import DATA_ROOTS, MINIBOX, REPO, Terminal, require_rootfs
from registryd import PASSWORD, USER, Registryd, TokenServer

pytestmark = pytest.mark.skipif(shutil.which("docker-registry") is None,
                                reason="docker-registry is not installed (bash .ci/setup)")


class Box:
    """minibox with its own data root and config dir."""

    def __init__(self, top: Path) -> None:
        self.data = top / "data"
        self.config = top / "config"
        self.env = dict(os.environ, MINIBOX_DATA_ROOT=str(self.data),
                        MINIBOX_CONFIG=str(self.config), MINIBOX_NO_PROGRESS="1")
        DATA_ROOTS.append(str(self.data))

    def __call__(self, *args: object, input: str | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(MINIBOX), *map(str, args)], input=input, text=True,
                              capture_output=True, env=self.env, cwd=REPO, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def ok(self, *args: object, input: str | None = None) -> str:
        proc = self(*args, input=input)
        assert proc.returncode == 0, f"minibox {args} failed: {proc.stderr}"
        return proc.stdout

    def fails(self, *args: object, input: str | None = None) -> str:
        """The one-line error of a command that must fail with 125."""
        proc = self(*args, input=input)
        assert proc.returncode == 125, (proc.returncode, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("minibox: "), proc.stderr
        return lines[0]

    def blobs(self) -> set[str]:
        try:
            return set(os.listdir(self.data / "blobs" / "sha256"))
        except FileNotFoundError:
            return set()

    def trust(self, reg: Registryd) -> None:
        d = self.config / "certs.d" / reg.host
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(reg.ca, d / "ca.crt")

    def close(self) -> None:
        DATA_ROOTS.remove(str(self.data))


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Callable[[str], Box]]:
    made: list[Box] = []

    def make(name: str = "a") -> Box:
        b = Box(tmp_path / f"box-{name}")
        made.append(b)
        return b

    require_rootfs()
    yield make
    for b in made:
        b.close()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registryd]:
    with Registryd(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Registryd]:
    with Registryd(tmp_path / "secure", auth=True, tls=True) as reg:
        yield reg


def busybox(b: Box, name: str) -> str:
    """Import the busybox rootfs as an image and name it `name`."""
    b.ok("import", "rootfs", "busybox:local")
    b.ok("tag", "busybox:local", name)
    return name


def curl(reg: Registryd, path: str, *opts: str) -> dict:
    out = subprocess.run(["curl", "-sf", *opts, f"http://{reg.host}{path}"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


# -- plain HTTP -----------------------------------------------------------------------------

def test_push_pull_run_search_tags(box: Callable[[str], Box], registry: Registryd) -> None:
    a, b = box("a"), box("b")
    name = busybox(a, f"{registry.host}/tools/busybox:1.0")
    out = a.ok("push", name)
    assert out.splitlines()[0] == f"The push refers to repository [{registry.host}/tools/busybox]"
    assert ": Pushed" in out
    digest = out.splitlines()[-1].split("digest: ")[1].split()[0]
    assert digest.startswith("sha256:")
    # What the registry now has, as curl sees it.
    assert curl(registry, "/v2/_catalog") == {"repositories": ["tools/busybox"]}
    assert curl(registry, "/v2/tools/busybox/tags/list") == {"name": "tools/busybox",
                                                             "tags": ["1.0"]}
    # A second tag of the same image: the registry has every blob already.
    a.ok("tag", name, f"{registry.host}/tools/busybox:latest")
    out = a.ok("push", f"{registry.host}/tools/busybox:latest")
    assert ": Layer already exists" in out and ": Pushed" not in out
    assert sorted(curl(registry, "/v2/tools/busybox/tags/list")["tags"]) == ["1.0", "latest"]
    # Removed locally, pulled back (into another store), run.
    a.ok("rmi", name, f"{registry.host}/tools/busybox:latest", "busybox:local")
    out = b.ok("pull", name)
    assert ": Pull complete" in out and f"Digest: {digest}" in out
    assert out.splitlines()[-1] == name
    # Pull fetched and verified; the layer is unpacked by the image's first run.
    assert unpacked(b) == []
    run = b("run", "--rm", name, "echo", "pulled and running")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "pulled and running\n"
    assert len(unpacked(b)) == 1
    # Again: nothing is fetched twice.
    out = b.ok("pull", name)
    assert ": Already exists" in out and f"Status: Image is up to date for {name}" in out
    # search: the catalog, filtered, with tags.
    out = b.ok("search", f"{registry.host}/busy")
    assert out.splitlines()[1].split() == [f"{registry.host}/tools/busybox", "1.0", "latest"]
    assert b.ok("search", f"{registry.host}/nothing-like-this").splitlines() == ["NAME   TAGS"]
    b.ok("tag", name, f"{registry.host}/other:2")
    b.ok("push", f"{registry.host}/other:2")
    out = b.ok("search", "--filter", "tag=latest", f"{registry.host}/")
    assert [line.split()[0] for line in out.splitlines()[1:]] == [
        f"{registry.host}/tools/busybox"]
    assert len(b.ok("search", "--limit", "1", f"{registry.host}/").splitlines()) == 2
    assert "tag=TAG only" in b.fails("search", "--filter", "stars=3", f"{registry.host}/")


def test_two_layers_pushed_and_pulled_at_once(box: Callable[[str], Box],
                                              registry: Registryd) -> None:
    """Layers go up and come down in parallel threads: they share one ping of the
    registry (a second thread must not start its own and try HTTPS on a plain one)."""
    a, b = box("a"), box("b")
    busybox(a, "busybox:local")
    a.ok("run", "-d", "--name", "w", "busybox:local", "sh", "-c",
         "echo second layer > /two; exec sleep 1000")
    deadline = time.monotonic() + 10
    while a("exec", "w", "cat", "/two").stdout != "second layer\n":
        assert time.monotonic() < deadline, "the container never wrote /two"
        time.sleep(0.05)
    name = f"{registry.host}/two:1"
    a.ok("commit", "w", name)
    a.ok("rm", "-f", "w")
    proc = a("push", "--explain", name)
    assert proc.returncode == 0, proc.stderr
    pings = [line for line in proc.stderr.splitlines()
             if line.startswith("[explain] GET ") and line.split()[2].endswith("/v2/")]
    assert len(pings) == 1 and pings[0].endswith("= 200 OK"), pings
    assert "TLS handshake failed" not in proc.stderr
    assert proc.stdout.count(": Pushed") == 2, proc.stdout
    proc = b("pull", "--explain", name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(": Pull complete") == 2, proc.stdout
    assert "TLS handshake failed" not in proc.stderr
    run = b("run", "--rm", name, "cat", "/two")
    assert (run.returncode, run.stdout) == (0, "second layer\n"), run.stderr


def test_pull_by_digest_and_mount(box: Callable[[str], Box], registry: Registryd) -> None:
    a, b = box("a"), box("b")
    name = busybox(a, f"{registry.host}/one:1")
    digest = a.ok("push", name).splitlines()[-1].split("digest: ")[1].split()[0]
    a.ok("tag", name, f"{registry.host}/two:1")
    out = a.ok("push", "--explain", f"{registry.host}/two:1")
    assert ": Mounted from one" in out
    out = b.ok("pull", f"{registry.host}/one@{digest}")
    assert f"Digest: {digest}" in out
    run = b("run", "--rm", f"{registry.host}/one@{digest}", "true")
    assert run.returncode == 0, run.stderr
    assert b.fails("pull", f"{registry.host}/one@sha256:{'0' * 64}") == (
        f"minibox: manifest for {registry.host}/one@sha256:{'0' * 64} not found: "
        "manifest unknown")


def test_unknown_tag_and_bad_names(box: Callable[[str], Box], registry: Registryd) -> None:
    b = box()
    assert b.fails("pull", f"{registry.host}/nothing:here") == (
        f"minibox: manifest for {registry.host}/nothing:here not found: manifest unknown")
    assert "An image does not exist locally" in b.fails("push", f"{registry.host}/x:1")
    assert "no registry in the name" in b.fails("pull", "busybox")
    port = registry.port
    registry.stop()
    err = b.fails("pull", f"127.0.0.1:{port}/nothing:here")
    assert "connection refused" in err and "is the registry running?" in err


# -- htpasswd and TLS ----------------------------------------------------------------------

def test_login_push_logout_pull_over_tls(box: Callable[[str], Box], secure: Registryd) -> None:
    a, b = box("a"), box("b")
    a.trust(secure)
    b.trust(secure)
    host = secure.host
    name = busybox(a, f"{host}/private:1")
    assert a.fails("push", name).startswith(f"minibox: push access denied for {host}/private")
    err = a.fails("login", "-u", USER, "--password-stdin", host, input="wrong\n")
    assert err == (f"minibox: login to {host} refused: authentication required "
                   "(wrong user name or password?)")
    assert not (a.config / "config.json").exists()
    assert a.ok("login", "-u", USER, "--password-stdin", host,
                input=PASSWORD + "\n") == "Login Succeeded\n"
    cfg = a.config / "config.json"
    assert os.stat(cfg).st_mode & 0o777 == 0o600
    import base64

    auths = json.loads(cfg.read_text())["auths"]
    assert base64.b64decode(auths[host]["auth"]).decode() == f"{USER}:{PASSWORD}"
    a.ok("push", name)
    assert a.ok("logout", host) == f"Removing login credentials for {host}\n"
    assert json.loads(cfg.read_text())["auths"] == {}
    assert a.ok("logout", host) == f"Not logged in to {host}\n"
    # Another client without credentials is refused; with them it pulls.
    assert b.fails("pull", name).startswith(f"minibox: pull access denied for {name}")
    # The global --config (docker's) names the config directory, over MINIBOX_CONFIG.
    other = b.config.parent / "other-config"
    (other / "certs.d" / host).mkdir(parents=True)
    shutil.copy(secure.ca, other / "certs.d" / host / "ca.crt")
    b.ok("--config", other, "login", "-u", USER, "--password-stdin", host,
         input=PASSWORD + "\n")
    assert host in json.loads((other / "config.json").read_text())["auths"]
    assert not (b.config / "config.json").exists()
    b.ok("login", "-u", USER, "--password-stdin", host, input=PASSWORD + "\n")
    assert "Pull complete" in b.ok("pull", name)
    assert b("run", "--rm", name, "true").returncode == 0


def test_login_prompts_on_a_terminal(box: Callable[[str], Box], secure: Registryd) -> None:
    """Without -u or --password-stdin, on a terminal, login asks as docker does: the user
    name echoed, the password not."""
    a = box("a")
    a.trust(secure)

    def converse(password: str) -> tuple[int, bytes]:
        t = Terminal(("login", secure.host), env=a.env)
        try:
            t.expect(rb"^Username: ")
            t.send(USER.encode() + b"\n")
            t.expect(re.escape(USER.encode()) + rb"\r\nPassword: ")
            t.send(password.encode() + b"\n")
            return t.wait(30), t.output.replace(b"\r\n", b"\n")
        finally:
            t.close()

    code, rest = converse(PASSWORD)
    assert code == 0, rest
    assert rest == b"\nLogin Succeeded\n", rest  # the password is not echoed
    assert secure.host in json.loads((a.config / "config.json").read_text())["auths"]
    code, rest = converse("wrong")
    assert code == 125 and rest.endswith(b"(wrong user name or password?)\n"), rest


def test_bearer_token_auth(box: Callable[[str], Box], tmp_path: Path) -> None:
    tokens = TokenServer(tmp_path / "token")
    try:
        with Registryd(tmp_path / "reg", token=tokens) as reg:
            a, b = box("a"), box("b")
            name = busybox(a, f"{reg.host}/tok/busybox:1")
            assert a.fails("push", name).startswith(
                f"minibox: registry {reg.host}: the token service refused anonymous access")
            err = a.fails("login", "-u", USER, "--password-stdin", reg.host, input="nope\n")
            assert "the token service refused these credentials: bad credentials" in err
            a.ok("login", "-u", USER, "--password-stdin", reg.host, input=PASSWORD + "\n")
            tokens.requests.clear()
            a.ok("push", name)
            # One token per scope, reused for every request of that scope.
            scopes = [urllib.parse.parse_qs(urllib.parse.urlsplit(p).query).get("scope")
                      for p in tokens.requests]
            assert scopes == [["repository:tok/busybox:pull,push"]], tokens.requests
            b.ok("login", "-u", USER, "--password-stdin", reg.host, input=PASSWORD + "\n")
            assert "Pull complete" in b.ok("pull", name)
            assert b("run", "--rm", name, "true").returncode == 0
    finally:
        tokens.close()


def test_untrusted_certificate_refused(box: Callable[[str], Box], secure: Registryd) -> None:
    b = box()
    err = b.fails("login", "-u", USER, "--password-stdin", secure.host, input=PASSWORD + "\n")
    assert err == (f"minibox: registry {secure.host}: TLS certificate not trusted: unable to "
                   f"get local issuer certificate (put its CA certificate in {b.config}/"
                   f"certs.d/{secure.host}/ca.crt, or use --tls-verify=false)")
    assert "Login Succeeded" in b.ok("login", "--tls-verify=false", "-u", USER,
                                     "--password-stdin", secure.host, input=PASSWORD + "\n")
    # Listed in insecure-registries (docker's daemon.json key, here in config.json): the
    # certificate is not checked for that registry, without the flag.
    cfg = b.config / "config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()),
                               "insecure-registries": [secure.host]}))
    assert b.ok("search", f"{secure.host}/").splitlines() == ["NAME   TAGS"]


# -- interop with skopeo --------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_skopeo_pushed_image_runs(box: Callable[[str], Box], registry: Registryd,
                                  fmt: str) -> None:
    a, b = box("a"), box("b")
    a.ok("push", busybox(a, f"{registry.host}/src:1"))
    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
                    "--format", fmt, f"docker://{registry.host}/src:1",
                    f"docker://{registry.host}/by-skopeo:{fmt}"], check=True)
    raw = json.loads(subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false",
         f"docker://{registry.host}/by-skopeo:{fmt}"], check=True, capture_output=True,
        text=True).stdout)
    assert raw["mediaType"] == {"oci": "application/vnd.oci.image.manifest.v1+json",
                                "v2s2": "application/vnd.docker.distribution.manifest.v2+json"
                                }[fmt]
    name = f"{registry.host}/by-skopeo:{fmt}"
    assert "Pull complete" in b.ok("pull", name)
    run = b("run", "--rm", name, "sh", "-c", "echo $((6 * 7))")
    assert (run.returncode, run.stdout) == (0, "42\n"), run.stderr


def test_minibox_pushed_image_read_by_skopeo(box: Callable[[str], Box], registry: Registryd,
                                            tmp_path: Path) -> None:
    a = box()
    name = busybox(a, f"{registry.host}/mine:1")
    digest = a.ok("push", name).splitlines()[-1].split("digest: ")[1].split()[0]
    info = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                                      f"docker://{name}"], check=True, capture_output=True,
                                     text=True).stdout)
    assert info["Digest"] == digest and info["Os"] == "linux"
    layout = tmp_path / "layout"
    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{name}",
                    f"oci:{layout}:mine"], check=True)
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest  # copied intact, byte for byte
    manifest = json.loads((layout / "blobs/sha256" / digest[7:]).read_text())
    for desc in manifest["layers"]:
        assert (layout / "blobs/sha256" / desc["digest"][7:]).stat().st_size == desc["size"]


# -- faults -----------------------------------------------------------------------------------

def unpacked(b: Box) -> list[str]:
    """The layer directories of a store (layers/HEX; layers/HEX.json are their records)."""
    layers = b.data / "layers"
    return sorted(p.name for p in layers.iterdir() if p.is_dir()) if layers.exists() else []


def test_layer_not_matching_its_diff_id_refused_at_first_run(
        box: Callable[[str], Box], registry: Registryd) -> None:
    """A config whose diff_id does not match its layer: the blobs are what the manifest
    says, so pull stores them; the first run unpacks, finds the tar's sha256 is another,
    and refuses in one line, leaving no layer behind."""
    import hashlib
    import urllib.request

    a, b = box("a"), box("b")
    name = busybox(a, f"{registry.host}/lying:1")
    a.ok("push", name)
    base = f"http://{registry.host}/v2/lying"
    media = "application/vnd.oci.image.manifest.v1+json"
    manifest = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"{base}/manifests/1", headers={"Accept": media})).read())
    config = json.loads(urllib.request.urlopen(
        f"{base}/blobs/{manifest['config']['digest']}").read())
    real = config["rootfs"]["diff_ids"][0]
    config["rootfs"]["diff_ids"][0] = "sha256:" + hashlib.sha256(b"another tar").hexdigest()
    body = json.dumps(config).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    # distribution-spec "Pushing a blob monolithically": POST for a session, then PUT.
    post = urllib.request.urlopen(urllib.request.Request(f"{base}/blobs/uploads/",
                                                         method="POST", data=b""))
    where = post.headers["Location"]
    where = where if where.startswith("http") else f"http://{registry.host}{where}"
    sep = "&" if "?" in where else "?"
    put = urllib.request.Request(f"{where}{sep}digest={digest}", data=body, method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    assert urllib.request.urlopen(put).status == 201
    manifest["config"].update(digest=digest, size=len(body))
    put = urllib.request.Request(f"{base}/manifests/2", data=json.dumps(manifest).encode(),
                                 method="PUT", headers={"Content-Type": media})
    assert urllib.request.urlopen(put).status == 201
    lying = f"{registry.host}/lying:2"
    assert "Pull complete" in b.ok("pull", lying)
    err = b.fails("run", "--rm", lying, "true")
    layer = manifest["layers"][0]["digest"]
    assert err == (f"minibox: layer {layer}: its content is {real}, but the image config "
                   f"says {config['rootfs']['diff_ids'][0]}; refused")
    assert unpacked(b) == [] and not list((b.data / "tmp").iterdir())
    assert not (b.data / "containers").exists() or not list((b.data / "containers").iterdir())
    b.ok("rmi", lying)


def test_corrupt_blob_rejected(box: Callable[[str], Box], registry: Registryd) -> None:
    a, b = box("a"), box("b")
    name = busybox(a, f"{registry.host}/bad:1")
    a.ok("push", name)
    manifest = json.loads(subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{name}"],
        check=True, capture_output=True, text=True).stdout)
    layer = manifest["layers"][0]["digest"]
    data = registry.blob_data(layer)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, other content
    data.write_bytes(bytes(raw))
    err = b.fails("pull", name)
    assert layer in err and "digest mismatch" in err and "nothing was stored" in err
    assert layer[7:] not in b.blobs()
    assert not list((b.data / "tmp").iterdir())
    gone = b("history", name)
    assert gone.returncode != 0 and "No such image" in gone.stderr


class Relay:
    """A TCP forwarder 127.0.0.1:PORT -> the registry, that calls `on_cut` and closes the
    connection when one answer has passed `cut_after` bytes (once)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.cut_after: int | None = None
        self.cut_upload_after: int | None = None  # the same, client -> registry
        self.on_cut: Callable[[], None] = lambda: None
        self.cuts = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            for src, dst, watch in ((client, server, "up"), (server, client, "down")):
                t = threading.Thread(target=self._pipe, args=(src, dst, watch), daemon=True)
                t.start()
                self.threads.append(t)

    def _pipe(self, src: socket.socket, dst: socket.socket, watch: str) -> None:
        passed = 0
        try:
            while data := src.recv(65536):
                passed += len(data)
                limit = self.cut_after if watch == "down" else self.cut_upload_after
                if limit is not None and passed > limit:
                    if watch == "down":
                        self.cut_after = None
                    else:
                        self.cut_upload_after = None
                    self.cuts += 1
                    self.on_cut()
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.sock.close()
        for t in self.threads:
            t.join(timeout=5)


@pytest.fixture
def relay(registry: Registryd) -> Iterator[Relay]:
    r = Relay(registry.port)
    yield r
    r.close()


def test_dropped_connection_resumed_with_range(box: Callable[[str], Box], registry: Registryd,
                                               relay: Relay) -> None:
    a, b = box("a"), box("b")
    name = busybox(a, f"127.0.0.1:{relay.port}/resume:1")
    a.ok("push", name)
    relay.cut_after = 300_000  # inside the 1 MB layer
    proc = b("pull", "--explain", name)
    assert proc.returncode == 0, proc.stderr
    assert relay.cuts == 1
    assert "the connection dropped: resume" in proc.stderr
    assert "resume the blob from byte" in proc.stderr
    assert " = 206 Partial Content" in proc.stderr
    assert b("run", "--rm", name, "true").returncode == 0


def test_dropped_upload_goes_on(box: Callable[[str], Box], registry: Registryd,
                                relay: Relay, tmp_path: Path) -> None:
    """A connection cut in the middle of the second 32 MiB chunk: push asks the registry
    how much of the upload it has (GET on it). This registry (distribution 2.8) forgets
    an upload whose chunk broke off (404), so the blob goes again in a new session; the
    push succeeds and the image pulls and runs whole."""
    a, b = box("a"), box("b")
    tree = tmp_path / "tree"
    subprocess.run(["cp", "-a", str(REPO / "rootfs"), str(tree)], check=True)
    (tree / "big").write_bytes(os.urandom(40 << 20))  # incompressible: two chunks
    a.ok("import", tree, "big:1")
    name = f"127.0.0.1:{relay.port}/big:1"
    a.ok("tag", "big:1", name)
    relay.cut_upload_after = 36 << 20  # inside the second PATCH (bytes 32 MiB - 40 MiB)
    proc = a("push", "--explain", name)
    assert proc.returncode == 0, proc.stderr
    assert relay.cuts == 1
    # Method and answer of each request on the upload ("failed (broken pipe)" or
    # "failed (connection reset)", as the kernel tells it, is "failed").
    steps = [line.split(" http")[0] + " " + line.rsplit("= ", 1)[1].split(" (")[0]
             for line in proc.stderr.splitlines()
             if line.startswith("[explain] ") and "/blobs/uploads/" in line]
    assert steps[:7] == [
        "[explain] POST 202 Accepted", "[explain] PATCH 202 Accepted",
        "[explain] PATCH failed", "[explain] GET 404 Not Found",
        "[explain] POST 202 Accepted", "[explain] PATCH 202 Accepted",
        "[explain] PATCH 202 Accepted"], steps
    assert "why: the registry forgot the broken upload: send the blob again" in proc.stderr
    out = b.ok("pull", f"{registry.host}/big:1")
    assert "Pull complete" in out
    run = b("run", "--rm", f"{registry.host}/big:1", "sh", "-c", "wc -c < /big")
    assert run.stdout.strip() == str(40 << 20), run.stderr


def test_registry_stopped_mid_pull_then_retry(box: Callable[[str], Box], registry: Registryd,
                                              relay: Relay) -> None:
    a, b = box("a"), box("b")
    name = busybox(a, f"127.0.0.1:{relay.port}/stopped:1")
    a.ok("push", name)
    relay.cut_after = 300_000
    relay.on_cut = registry.stop
    err = b.fails("pull", name)
    assert relay.cuts == 1
    assert err.startswith("minibox: registry 127.0.0.1:")
    assert "is the registry running?" in err
    assert not list((b.data / "tmp").iterdir())
    registry.start()  # same port, same storage
    out = b.ok("pull", name)
    assert "Pull complete" in out and f"Status: Downloaded newer image for {name}" in out
    assert b("run", "--rm", name, "true").returncode == 0


def test_large_layer_chunked_upload(box: Callable[[str], Box], registry: Registryd,
                                    tmp_path: Path) -> None:
    a, b = box("a"), box("b")
    tree = tmp_path / "tree"
    subprocess.run(["cp", "-a", str(REPO / "rootfs"), str(tree)], check=True)
    data = os.urandom(40 << 20)  # incompressible: the gzip layer stays above one chunk
    (tree / "big").write_bytes(data)
    a.ok("import", tree, "big:1")
    name = f"{registry.host}/big:1"
    a.ok("tag", "big:1", name)
    proc = a("push", "--explain", name)
    assert proc.returncode == 0, proc.stderr
    patches = [line for line in proc.stderr.splitlines() if line.startswith("[explain] PATCH")]
    assert len(patches) == 2 and all(p.endswith("= 202 Accepted") for p in patches)
    assert "why: send bytes 0-33554431" in proc.stderr
    out = b.ok("pull", name)
    assert "Pull complete" in out
    import hashlib

    run = b("run", "--rm", name, "sha256sum", "/big")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[0] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_index_picks_this_platform(box: Callable[[str], Box], registry: Registryd,
                                   kind: str) -> None:
    """An OCI index / Docker manifest list naming two images: pull takes linux/amd64's."""
    import hashlib
    import platform
    import urllib.request

    if platform.machine() != "x86_64":
        pytest.skip("the index below names amd64 as this machine's platform")
    a, b = box("a"), box("b")
    digests = {}
    for arch, cmd in (("amd64", "echo amd64"), ("arm64", "echo arm64")):
        a.ok("import", "-c", f'CMD ["sh", "-c", "{cmd}"]', "rootfs", f"multi:{arch}")
        a.ok("tag", f"multi:{arch}", f"{registry.host}/multi:{arch}")
        out = a.ok("push", f"{registry.host}/multi:{arch}")
        digests[arch] = out.splitlines()[-1].split("digest: ")[1].split()[0]
    media = {"oci": "application/vnd.oci.image.index.v1+json",
             "docker": "application/vnd.docker.distribution.manifest.list.v2+json"}[kind]
    child = {"oci": "application/vnd.oci.image.manifest.v1+json",
             "docker": "application/vnd.oci.image.manifest.v1+json"}[kind]
    index = {"schemaVersion": 2, "mediaType": media, "manifests": [
        {"mediaType": child, "digest": digests[arch], "size": 480,
         "platform": {"architecture": arch, "os": "linux"}} for arch in ("arm64", "amd64")]}
    body = json.dumps(index).encode()
    for m in index["manifests"]:
        raw = urllib.request.urlopen(urllib.request.Request(
            f"http://{registry.host}/v2/multi/manifests/{m['digest']}",
            headers={"Accept": child}))
        m["size"] = len(raw.read())
    body = json.dumps(index).encode()
    req = urllib.request.Request(f"http://{registry.host}/v2/multi/manifests/both",
                                 data=body, method="PUT", headers={"Content-Type": media})
    assert urllib.request.urlopen(req).status == 201
    name = f"{registry.host}/multi:both"
    out = b.ok("pull", name)
    index_digest = "sha256:" + hashlib.sha256(body).hexdigest()
    assert f"Digest: {index_digest}" in out  # the digest the tag names, as docker shows
    run = b("run", "--rm", name)
    assert (run.returncode, run.stdout) == (0, "amd64\n"), run.stderr
    assert digests["amd64"][7:] in b.blobs() and digests["arm64"][7:] not in b.blobs()
    c = box("c")
    c.ok("pull", "--platform", "linux/arm64", name)
    assert digests["arm64"][7:] in c.blobs()
    assert c.fails("pull", "--platform", "linux/s390x", name) == (
        f"minibox: {name} has no image for linux/s390x (it has: linux/arm64, linux/amd64)")
    assert index_digest[7:] in b.blobs()  # the index is kept too, byte for byte


def test_manifest_not_matching_its_digest_rejected(box: Callable[[str], Box],
                                                   registry: Registryd) -> None:
    a, b = box("a"), box("b")
    name = busybox(a, f"{registry.host}/twisted:1")
    digest = a.ok("push", name).splitlines()[-1].split("digest: ")[1].split()[0]
    data = registry.blob_data(digest)
    text = data.read_text()
    assert '"schemaVersion": 2' in text
    data.write_text(text.replace('"schemaVersion": 2', '"schemaVersion":  2'))  # still JSON
    err = b.fails("pull", name)
    assert err == (f"minibox: manifest for {name}: Docker-Content-Digest says {digest} but "
                   f"the content hashes to {err.split('hashes to ')[1].split(';')[0]}; "
                   "nothing was stored")
    assert digest not in err.split("hashes to ")[1]
    err = b.fails("pull", f"{registry.host}/twisted@{digest}")
    assert "the registry sent content hashing to" in err and f"not {digest}" in err
    assert b.blobs() == set()


def test_progress_bars_on_a_terminal(box: Callable[[str], Box], registry: Registryd) -> None:
    """On a terminal each layer has a line redrawn in place; off one, plain lines only."""
    a, b = box("a"), box("b")
    name = busybox(a, f"{registry.host}/bars:1")
    a.ok("push", name)
    env = dict(b.env)
    env.pop("MINIBOX_NO_PROGRESS")
    proc = subprocess.run(["script", "-qec", f"{MINIBOX} pull {name}", "/dev/null"],
                          env=env, capture_output=True, cwd=REPO, timeout=60,
                          stdin=subprocess.DEVNULL)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out
    assert "Downloading [" in out and "Download complete" in out and "\x1b[1A" in out
    assert ": Pull complete\x1b[K" in out
    assert "\x1b[" not in b.ok("pull", name)  # not a terminal: no escapes
