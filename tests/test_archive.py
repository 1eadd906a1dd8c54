"""`minibox save` and `minibox load` against the real peers: podman, skopeo and umoci.

Images move both ways: podman's archives (docker-archive and oci-archive) load into
minibox and run; minibox's archives load into podman and run there with the same output,
skopeo reads them, and umoci unpacks minibox's OCI layout to the same files. Bad archives
are refused in one line with exit 125 and leave the store exactly as it was.

Each test has its own minibox data root (MINIBOX_DATA_ROOT); podman runs with a private
--root/--runroot (vfs driver: no mounts) under the test's temporary directory, so
nothing touches the machine's own podman images, and both are removed at the end.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import DATA_ROOTS, MINIBOX, REPO, ROOTFS, require_rootfs, run_minibox

MARKER = "made for the archive tests\n"
CMD = ["/bin/cat", "/etc/archive-marker"]
# runc, not podman's default crun: crun 1.8 refuses to run on a hybrid cgroup host while a
# controller (hugetlb, on a fresh machine of this kind) sits on the unified hierarchy.
PODMAN_FLAGS = ["--storage-driver", "vfs", "--cgroup-manager=cgroupfs", "--events-backend=file",
                "--runtime", "runc"]
RUN_FLAGS = ["--rm", "--network=none", "--ulimit", "nofile=20000:20000",
             "--ulimit", "nproc=32768:32768"]


def _extract(t: tarfile.TarFile, dest: Path) -> None:
    # PEP 706's data filter where this Python has it (3.11.4 and later).
    t.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is missing: bash .ci/setup installs it", pytrace=False)


# -- minibox, with a private data root -------------------------------------------------------

class Minibox:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "MINIBOX_DATA_ROOT": str(root)}

    def __call__(self, *args: object, stdin: object = None,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        require_rootfs()
        r = subprocess.run([str(MINIBOX), *map(str, args)],
                           stdin=stdin if stdin is not None else subprocess.DEVNULL,
                           capture_output=True, text=True, env=self.env, cwd=REPO,
                           timeout=120)
        assert "Traceback" not in r.stderr, r.stderr
        if check:
            assert r.returncode == 0, f"minibox {args}: {r.returncode}\n{r.stdout}{r.stderr}"
        return r

    def run(self, image: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return run_minibox(image, *cmd, env=self.env, timeout=60)

    def files(self) -> dict[str, tuple[int, int]]:
        """Everything under the data root: path -> (mode, size), to compare before/after."""
        out = {}
        for top, dirs, names in os.walk(self.root):
            for name in dirs + names:
                path = os.path.join(top, name)
                st = os.lstat(path)
                out[os.path.relpath(path, self.root)] = (st.st_mode, st.st_size)
        return out


@pytest.fixture
def mb(tmp_path: Path) -> Iterator[Minibox]:
    root = tmp_path / "data-root"
    DATA_ROOTS.append(str(root))  # conftest's leak check looks into its tmp/ too
    yield Minibox(root)
    # A load or save, failed or not, leaves no staging file behind.
    staged = os.listdir(root / "tmp") if (root / "tmp").is_dir() else []
    shutil.rmtree(root, ignore_errors=True)
    DATA_ROOTS.remove(str(root))
    assert not staged, f"left in the store's tmp/: {staged}"


# -- podman, with private storage ------------------------------------------------------------

class Podman:
    def __init__(self, base: Path) -> None:
        need("podman")
        self.base = base
        self.env = {**os.environ, "TMPDIR": str(base / "tmp")}
        (base / "tmp").mkdir()
        self.flags = ["--root", str(base / "root"), "--runroot", str(base / "run"),
                      *PODMAN_FLAGS]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["podman", *self.flags, *args], capture_output=True, text=True,
                           env=self.env, stdin=subprocess.DEVNULL, timeout=180)
        if check:
            assert r.returncode == 0, f"podman {args}: {r.returncode}\n{r.stdout}{r.stderr}"
        return r

    def cleanup(self) -> None:
        self("rm", "-a", "-f", check=False)
        self("rmi", "-a", "-f", check=False)
        left = self("images", "-q", check=False).stdout.split()
        mounted = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
                   if line.split()[1].startswith(str(self.base))]
        for point in reversed(mounted):
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(self.base, ignore_errors=True)
        assert not left, f"podman images left behind: {left}"
        assert not mounted, f"podman left mounts behind: {mounted}"


@pytest.fixture
def podman() -> Iterator[Podman]:
    # Not under tmp_path: podman refuses a runroot path longer than 50 characters.
    p = Podman(Path(tempfile.mkdtemp(prefix="minibox-podman-", dir="/tmp")))
    yield p
    p.cleanup()


# -- a test image: the busybox rootfs plus a marker file and a CMD that prints it ---------------

@pytest.fixture
def tree(tmp_path: Path) -> Path:
    require_rootfs()
    dest = tmp_path / "tree"
    subprocess.run(["cp", "-a", str(ROOTFS), str(dest)], check=True)
    (dest / "etc" / "archive-marker").write_text(MARKER)
    os.symlink("archive-marker", dest / "etc" / "marker-link")
    os.link(dest / "etc" / "archive-marker", dest / "etc" / "marker-hardlink")
    return dest


@pytest.fixture
def tree_tar(tree: Path, tmp_path: Path) -> Path:
    out = tmp_path / "tree.tar"
    subprocess.run(["tar", "--numeric-owner", "-C", str(tree), "-cf", str(out), "."],
                   check=True)
    return out


def podman_image(podman: Podman, tree_tar: Path, name: str = "localhost/arch-test:1") -> str:
    podman("import", "-q", "--change", f"CMD {json.dumps(CMD)}", str(tree_tar), name)
    return name


def minibox_image(mb: Minibox, tree_tar: Path, name: str = "arch-test:1") -> str:
    mb("import", "-c", f"CMD {json.dumps(CMD)}", tree_tar, name)
    return name


def loaded_names(stdout: str) -> list[str]:
    return [line.split(": ", 1)[1] for line in stdout.splitlines()
            if line.startswith("Loaded image")]


def inspect(mb: Minibox, image: str) -> dict:
    doc = json.loads(mb("inspect", image).stdout)
    return doc[0] if isinstance(doc, list) else doc


# -- podman -> minibox ------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_podman_archive_loads_and_runs(fmt: str, mb: Minibox, podman: Podman, tree_tar: Path,
                                       tmp_path: Path) -> None:
    name = podman_image(podman, tree_tar)
    archive = tmp_path / "podman.tar"
    podman("save", "--format", fmt, "-o", str(archive), name)
    r = mb("load", "-i", archive)
    assert loaded_names(r.stdout) == ["localhost/arch-test:1"], r.stdout
    # The same image: podman's image id is the config digest, as minibox's is.
    podman_id = podman("image", "inspect", "--format", "{{.Id}}", name).stdout.strip()
    assert inspect(mb, name)["Id"] == f"sha256:{podman_id}"
    ran = mb.run(name)
    assert (ran.returncode, ran.stdout) == (0, MARKER), ran.stderr
    ran = mb.run(name, "/bin/readlink", "/etc/marker-link")
    assert ran.stdout == "archive-marker\n"


def test_compressed_archive_from_stdin(mb: Minibox, podman: Podman, tree_tar: Path,
                                       tmp_path: Path) -> None:
    """`podman save | gzip | minibox load`: a gzip stream on a pipe is read too."""
    name = podman_image(podman, tree_tar)
    archive = tmp_path / "podman.tar"
    podman("save", "-o", str(archive), name)
    packed = tmp_path / "podman.tar.gz"
    # Two gzip members, as a parallel compressor (pigz) writes: both must be read.
    data = archive.read_bytes()
    packed.write_bytes(gzip.compress(data[: len(data) // 2], compresslevel=1) +
                       gzip.compress(data[len(data) // 2:], compresslevel=1))
    feeder = subprocess.Popen(["cat", str(packed)], stdout=subprocess.PIPE)
    try:
        r = mb("load", stdin=feeder.stdout)
    finally:
        feeder.stdout.close()  # type: ignore[union-attr]
        feeder.wait()
    assert loaded_names(r.stdout) == [name]
    # Not a terminal: one plain line per layer copied, then docker's line.
    assert r.stdout.splitlines()[0].startswith("Loading layer sha256:"), r.stdout
    assert os.listdir(mb.root / "tmp") == [], "the staging copy of the archive was left"
    assert mb.run(name).stdout == MARKER


# -- minibox -> podman, skopeo, umoci ----------------------------------------------------------

@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_minibox_archive_loads_into_podman(fmt: str, mb: Minibox, podman: Podman,
                                           tree_tar: Path, tmp_path: Path) -> None:
    name = minibox_image(mb, tree_tar)
    ours = mb.run(name)
    assert (ours.returncode, ours.stdout) == (0, MARKER), ours.stderr
    archive = tmp_path / "minibox.tar"
    mb("save", "--format", fmt, "-o", archive, name)
    r = podman("load", "-i", str(archive))
    loaded = [line.split(": ", 1)[1] for line in r.stdout.splitlines()
              if line.startswith("Loaded image")]
    assert len(loaded) == 1, r.stdout
    assert loaded[0].endswith("arch-test:1")
    theirs = podman("run", *RUN_FLAGS, loaded[0])
    assert theirs.stdout == ours.stdout
    podman_id = podman("image", "inspect", "--format", "{{.Id}}", loaded[0]).stdout.strip()
    assert inspect(mb, name)["Id"] == f"sha256:{podman_id}"


def test_skopeo_reads_minibox_archives(mb: Minibox, tree_tar: Path, tmp_path: Path) -> None:
    need("skopeo")
    name = minibox_image(mb, tree_tar)
    config = inspect(mb, name)
    for fmt, transport in (("docker-archive", "docker-archive"), ("oci-archive", "oci-archive")):
        archive = tmp_path / f"{fmt}.tar"
        mb("save", "--format", fmt, "-o", archive, name)
        r = subprocess.run(["skopeo", "inspect", "--config", f"{transport}:{archive}"],
                           capture_output=True, text=True, check=True)
        seen = json.loads(r.stdout)
        assert seen["rootfs"]["diff_ids"] == config["RootFS"]["Layers"]
        assert seen["config"]["Cmd"] == CMD
        assert seen["os"] == "linux"
        raw = subprocess.run(["skopeo", "inspect", f"{transport}:{archive}"],
                             capture_output=True, text=True, check=True)
        assert json.loads(raw.stdout)["Architecture"] == "amd64"


def _tree_files(root: Path) -> dict[str, tuple]:
    """What a layer must keep of each file: type, mode, owner, content or link target."""
    out = {}
    for top, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                what: object = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            else:
                what = None
            out[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode),
                                                stat.S_IMODE(st.st_mode), st.st_uid,
                                                st.st_gid, what)
    return out


def test_umoci_unpacks_minibox_oci_layout(mb: Minibox, tree: Path, tree_tar: Path,
                                          tmp_path: Path) -> None:
    need("umoci")
    name = minibox_image(mb, tree_tar)
    archive = tmp_path / "oci.tar"
    mb("save", "--format", "oci-archive", "-o", archive, name)
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(archive) as t:
        _extract(t, layout)
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:arch-test:1", str(bundle)],
                   capture_output=True, text=True, check=True)
    assert _tree_files(bundle / "rootfs") == _tree_files(tree)
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] \
        == "arch-test:1"


# -- minibox -> minibox -----------------------------------------------------------------------

def test_round_trip_keeps_the_image(mb: Minibox, tree_tar: Path, tmp_path: Path) -> None:
    name = minibox_image(mb, tree_tar)
    mb("tag", name, "arch-test:other")
    before = inspect(mb, name)
    docker_tar, oci_tar = tmp_path / "d.tar", tmp_path / "o.tar"
    mb("save", "-o", docker_tar, name, "arch-test:other")
    mb("save", "--format", "oci-archive", "-o", oci_tar, name)
    # The same image saved twice is the same bytes: fixed owners, modes and times.
    again = tmp_path / "again.tar"
    mb("save", "-o", again, name, "arch-test:other")
    assert again.read_bytes() == docker_tar.read_bytes()
    with tarfile.open(docker_tar) as t:
        manifest = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
        layers = [m for m in t.getnames() if m.endswith("/layer.tar")]
    assert manifest[0]["RepoTags"] == ["arch-test:1", "arch-test:other"]
    assert len(layers) == 1

    fresh = Minibox(tmp_path / "fresh-root")
    try:
        r = fresh("load", "-q", "-i", docker_tar)
        assert r.stdout.splitlines() == ["Loaded image: arch-test:1",
                                         "Loaded image: arch-test:other"]
        assert inspect(fresh, "arch-test:other")["Id"] == before["Id"]
        r = fresh("load", "-q", "-i", oci_tar)
        assert r.stdout.splitlines() == ["Loaded image: arch-test:1"]
        after = inspect(fresh, name)
        assert after["Id"] == before["Id"]
        # From an OCI layout the manifest comes byte for byte: the digest is kept.
        assert after["RepoDigests"] and set(after["RepoDigests"]) <= set(before["RepoDigests"])
        assert fresh.run(name).stdout == MARKER
    finally:
        shutil.rmtree(fresh.root, ignore_errors=True)


def test_nested_index_picks_this_platform(mb: Minibox, tree_tar: Path, tmp_path: Path) -> None:
    """An index.json entry that is itself an index (multi-platform): linux/amd64 is chosen.

    No multi-platform image can be built here without a registry, so the nested index is
    written by hand around minibox's own manifest; the arm64 entry names a blob that is
    absent, which must not matter since it is never read.
    """
    name = minibox_image(mb, tree_tar)
    archive = tmp_path / "o.tar"
    mb("save", "--format", "oci-archive", "-o", archive, name)
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(archive) as t:
        _extract(t, layout)
    index = json.loads((layout / "index.json").read_text())
    desc = dict(index["manifests"][0])
    desc.pop("annotations")
    inner = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [
                 {"mediaType": desc["mediaType"], "digest": "sha256:" + "0" * 64, "size": 1,
                  "platform": {"os": "linux", "architecture": "arm64"}},
                 {**desc, "platform": {"os": "linux", "architecture": "amd64"}}]}
    data = json.dumps(inner).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    index["manifests"] = [{"mediaType": inner["mediaType"], "digest": f"sha256:{digest}",
                           "size": len(data),
                           "annotations": {"org.opencontainers.image.ref.name": "multi:1"}}]
    (layout / "index.json").write_text(json.dumps(index))
    fresh = Minibox(tmp_path / "fresh-root")
    try:
        r = fresh("load", "-q", "-i", layout)  # an OCI layout directory reads as well
        assert r.stdout.splitlines() == ["Loaded image: multi:1"]
        assert fresh.run("multi:1").stdout == MARKER
    finally:
        shutil.rmtree(fresh.root, ignore_errors=True)


# -- bad input ---------------------------------------------------------------------------------

def _rewrite(src: Path, dest: Path, change: Callable[[str, bytes], bytes | None]) -> None:
    """Copy a tar, passing each file through `change` (None drops the entry)."""
    with tarfile.open(src) as tin, tarfile.open(dest, "w") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            if member.isfile():
                new = change(member.name, data)
                if new is None:
                    continue
                member.size = len(new)
                tout.addfile(member, io.BytesIO(new))
            else:
                tout.addfile(member)


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


def _bad_archives(good_docker: Path, good_oci: Path, tmp: Path) -> dict[str, Path]:
    bad = {}
    bad["not an archive"] = Path("/etc/os-release")
    (tmp / "empty.tar").write_bytes(b"\0" * 10240)
    bad["an empty tar"] = tmp / "empty.tar"
    bad["missing blob"] = tmp / "missing.tar"
    _rewrite(good_oci, bad["missing blob"],
             lambda n, d: None if n.startswith("blobs/") and len(d) > 100000 else d)
    bad["layer digest mismatch"] = tmp / "layer-mismatch.tar"
    _rewrite(good_docker, bad["layer digest mismatch"],
             lambda n, d: _flip(d) if n.endswith(".tar") else d)
    bad["config digest mismatch"] = tmp / "config-mismatch.tar"
    _rewrite(good_oci, bad["config digest mismatch"],
             lambda n, d: d.replace(b'"os":"linux"', b'"os":"Linux"')
             if b'"diff_ids"' in d else d)
    bad["truncated gzip"] = tmp / "truncated.tar.gz"
    packed = gzip.compress(good_docker.read_bytes(), compresslevel=1)
    bad["truncated gzip"].write_bytes(packed[: len(packed) * 2 // 3])
    return bad


def test_bad_archives_are_refused_and_leave_nothing(mb: Minibox, podman: Podman,
                                                    tree_tar: Path, tmp_path: Path) -> None:
    name = podman_image(podman, tree_tar)
    good_docker, good_oci = tmp_path / "d.tar", tmp_path / "o.tar"
    podman("save", "-o", str(good_docker), name)
    podman("save", "--format", "oci-archive", "-o", str(good_oci), name)
    # An image already in the store: a refused load must not touch it either.
    mb("load", "-q", "-i", good_oci)
    mb("tag", name, "kept:1")
    before = mb.files()
    for what, path in _bad_archives(good_docker, good_oci, tmp_path).items():
        r = mb("load", "-i", path, check=False)
        lines = r.stderr.splitlines()
        assert r.returncode == 125, f"{what}: {r.returncode}\n{r.stdout}{r.stderr}"
        assert len(lines) == 1 and lines[0].startswith("minibox: "), f"{what}: {r.stderr}"
        assert "Loaded image" not in r.stdout, what
        assert mb.files() == before, f"{what}: the store changed"
    for what, word in (("missing blob", "missing"), ("layer digest mismatch", "mismatch"),
                       ("config digest mismatch", "mismatch")):
        r = mb("load", "-i", _bad_archives(good_docker, good_oci, tmp_path)[what],
               check=False)
        assert word in r.stderr, f"{what}: {r.stderr}"
    assert mb.run("kept:1").stdout == MARKER


def test_save_errors(mb: Minibox, tree_tar: Path, tmp_path: Path) -> None:
    r = mb("save", "-o", tmp_path / "x.tar", "no-such-image:1", check=False)
    assert r.returncode == 125
    assert r.stderr == "minibox: No such image: no-such-image:1\n"
    assert not list(tmp_path.glob("*x.tar*")), "a failed save left a file"
    r = mb("save", "--format", "zip", "-o", tmp_path / "x.tar", "a", check=False)
    assert r.returncode == 125 and r.stderr.count("\n") == 1
    mb("import", tree_tar, "arch-test:1")
    r = mb("save", "-o", tmp_path / "no-such-dir" / "x.tar", "arch-test:1", check=False)
    assert r.returncode == 125
    assert r.stderr.startswith("minibox: save -o ") and r.stderr.count("\n") == 1, r.stderr
    r = mb("load", "-i", tmp_path / "absent.tar", check=False)
    assert r.returncode == 125
    assert r.stderr.startswith("minibox: open ") and r.stderr.count("\n") == 1


# -- hostile archives: well-formed, correctly hashed, and trying to write outside ---------------

def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _entry(name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE,
           link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, data


def _docker_archive(path: Path, layers: list[bytes], tag: str,
                    diff_ids: list[str] | None = None) -> None:
    """A docker-archive whose every digest is right: only the layers' contents are bad."""
    diff_ids = diff_ids or ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    names = [f"{d.split(':')[1]}/layer.tar" for d in diff_ids]
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag],
                            "Layers": names}]).encode()
    path.write_bytes(_tar([(tarfile.TarInfo(config_name), config),
                           *[(tarfile.TarInfo(n), layer) for n, layer in zip(names, layers,
                                                                             strict=True)],
                           (tarfile.TarInfo("manifest.json"), manifest)]))


def test_hostile_layers_write_nothing_outside(mb: Minibox, tmp_path: Path) -> None:
    mark = os.urandom(4).hex()
    outside = Path(f"/tmp/minibox-escape-{mark}")
    good = _tar([_entry("etc", kind=tarfile.DIRTYPE), _entry("etc/ok", b"fine\n")])
    # Not in the store before: its unpacked directory must go again with the refusal.
    other = _tar([_entry("etc", kind=tarfile.DIRTYPE), _entry("etc/other", b"new\n")])
    hostile = {
        "dot-dot": _tar([_entry("../" * 12 + f"tmp/minibox-escape-{mark}", b"x\n")]),
        "symlink then through it": _tar([
            _entry("evil", kind=tarfile.SYMTYPE, link="/tmp"),
            _entry(f"evil/minibox-escape-{mark}", b"x\n")]),
        "hard link to a host file": _tar([
            _entry("passwd", kind=tarfile.LNKTYPE, link="../" * 12 + "etc/passwd")]),
    }
    mb("load", "-q", "-i", _good_archive(tmp_path, good))  # a store with something in it
    before = mb.files()
    for what, layer in hostile.items():
        # Alone, and as the second layer over a good one (whose unpacking must be undone).
        for layers in ([layer], [other, layer]):
            archive = tmp_path / "hostile.tar"
            _docker_archive(archive, layers, "hostile:1")
            r = mb("load", "-i", archive, check=False)
            assert r.returncode == 125, f"{what}: {r.returncode}\n{r.stdout}{r.stderr}"
            lines = r.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("minibox: "), f"{what}: {r.stderr}"
            assert not outside.exists(), f"{what}: wrote {outside}"
            assert mb.files() == before, f"{what} ({len(layers)} layers): the store changed"
    # An absolute path is neutralised (kept inside the layer) or refused, never followed.
    archive = tmp_path / "absolute.tar"
    _docker_archive(archive, [_tar([_entry(f"/tmp/minibox-escape-{mark}", b"x\n")])],
                    "absolute:1")
    r = mb("load", "-i", archive, check=False)
    assert r.returncode in (0, 125), r.stderr
    assert not outside.exists()


def _good_archive(tmp_path: Path, layer: bytes) -> Path:
    archive = tmp_path / "good.tar"
    _docker_archive(archive, [layer], "good:1")
    return archive


def test_layer_not_matching_its_diff_id_is_refused(mb: Minibox, tmp_path: Path) -> None:
    """A gzip layer is stored as it came; the tar inside must still hash to the diff_id."""
    plain = _tar([_entry("etc", kind=tarfile.DIRTYPE), _entry("etc/x", b"one\n")])
    claimed = _tar([_entry("etc", kind=tarfile.DIRTYPE), _entry("etc/x", b"two\n")])
    archive = tmp_path / "lying.tar"
    _docker_archive(archive, [gzip.compress(plain)], "lying:1",
                    ["sha256:" + hashlib.sha256(claimed).hexdigest()])
    mb("load", "-q", "-i", _good_archive(tmp_path, claimed + b"\0" * 1024))
    before = mb.files()
    r = mb("load", "-i", archive, check=False)
    assert r.returncode == 125, r.stdout + r.stderr
    assert r.stderr.startswith("minibox: ") and r.stderr.count("\n") == 1, r.stderr
    assert hashlib.sha256(claimed).hexdigest() in r.stderr
    assert mb.files() == before


def test_progress_on_a_terminal(mb: Minibox, tree_tar: Path, tmp_path: Path) -> None:
    """stdout a terminal: a bar redrawn with \\r per layer, then docker's line."""
    import pty

    name = minibox_image(mb, tree_tar)
    archive = tmp_path / "o.tar"
    mb("save", "--format", "oci-archive", "-o", archive, name)
    fresh = tmp_path / "fresh-root"
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([str(MINIBOX), "load", "-i", str(archive)], stdout=slave,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env={**mb.env, "MINIBOX_DATA_ROOT": str(fresh)}, cwd=REPO)
        os.close(slave)
        slave = -1
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=60) == 0, proc.stderr.read()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
        shutil.rmtree(fresh, ignore_errors=True)
    text = out.decode().replace("\r\n", "\n")
    assert "\r" in text and "Loading layer [" in text and " done " in text, text
    assert text.rstrip("\n").splitlines()[-1] == f"Loaded image: {name}", text


def test_save_to_a_pipe_load_from_a_pipe(mb: Minibox, tree_tar: Path, tmp_path: Path) -> None:
    """`minibox save IMAGE | minibox load`: neither side can seek."""
    name = minibox_image(mb, tree_tar)
    fresh = tmp_path / "fresh-root"
    try:
        saver = subprocess.Popen([str(MINIBOX), "save", name], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=mb.env, cwd=REPO)
        r = subprocess.run([str(MINIBOX), "load", "-q"], stdin=saver.stdout,
                           capture_output=True, text=True, cwd=REPO, timeout=120,
                           env={**mb.env, "MINIBOX_DATA_ROOT": str(fresh)})
        saver.stdout.close()  # type: ignore[union-attr]
        assert saver.wait(timeout=60) == 0, saver.stderr.read()  # type: ignore[union-attr]
        saver.stderr.close()  # type: ignore[union-attr]
        assert (r.returncode, r.stdout, r.stderr) == (0, f"Loaded image: {name}\n", "")
        assert os.listdir(mb.root / "tmp") == [] and os.listdir(fresh / "tmp") == []
        r = subprocess.run([str(MINIBOX), "images", "-q", "--no-trunc", name],
                           capture_output=True, text=True, env={**mb.env,
                                                                "MINIBOX_DATA_ROOT": str(fresh)})
        assert r.stdout.strip() == inspect(mb, name)["Id"]
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_whiteouts_from_a_peer_built_image(fmt: str, mb: Minibox, podman: Podman, tree: Path,
                                           tmp_path: Path) -> None:
    """A three-layer image built by podman (buildah inside, chroot isolation) whose second
    layer deletes files of the first: its whiteouts (`.wh.NAME`) must hide them here."""
    (tree / "arch-data").mkdir()
    for name in ("a", "b"):
        (tree / "arch-data" / name).write_text(name + "\n")
    (tree / "etc" / "gone").write_text("deleted by the next layer\n")
    base = tmp_path / "base.tar"
    subprocess.run(["tar", "--numeric-owner", "-C", str(tree), "-cf", str(base), "."],
                   check=True)
    podman("import", "-q", str(base), "localhost/arch-base:1")
    context = tmp_path / "context"
    context.mkdir()
    (context / "Containerfile").write_text(
        "FROM localhost/arch-base:1\n"
        "RUN rm /etc/gone && rm -rf /arch-data && mkdir /arch-data && echo c > /arch-data/c\n"
        "RUN echo added > /etc/added\n")
    podman("build", "-q", "--isolation=chroot", "--ulimit", "nofile=20000:20000",
           "--ulimit", "nproc=32768:32768", "-t", "localhost/arch-built:1", str(context))
    archive = tmp_path / "built.tar"
    podman("save", "--format", fmt, "-o", str(archive), "localhost/arch-built:1")
    with tarfile.open(archive) as t:
        names = t.getnames()
    mb("load", "-q", "-i", archive)
    assert len(inspect(mb, "localhost/arch-built:1")["RootFS"]["Layers"]) == 3, names
    r = mb.run("localhost/arch-built:1", "/bin/sh", "-c",
               "ls /arch-data; cat /etc/added; test -e /etc/gone && echo still there; "
               "cat /etc/archive-marker")
    assert (r.returncode, r.stdout) == (0, "c\nadded\n" + MARKER), r.stderr


def test_docker_25_layout_and_compressed_layers(mb: Minibox, tree_tar: Path,
                                                 tmp_path: Path) -> None:
    """Docker 25+ writes an OCI layout plus a manifest.json naming blobs/sha256/... files,
    with the full name in io.containerd.image.name and only the tag in ref.name. (No
    docker here: the archive is made from minibox's OCI archive, the way docker lays it.)
    Without oci-layout the same files are a docker-archive with a gzip layer."""
    name = minibox_image(mb, tree_tar)
    oci_tar = tmp_path / "o.tar"
    mb("save", "--format", "oci-archive", "-o", oci_tar, name)
    image = inspect(mb, name)
    with tarfile.open(oci_tar) as t:
        index = json.load(t.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(t.extractfile(  # type: ignore[arg-type]
            "blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
    index["manifests"][0]["annotations"] = {
        "io.containerd.image.name": "docker.io/library/arch-docker:25",
        "org.opencontainers.image.ref.name": "25"}
    docker_manifest = [{"Config": "blobs/sha256/" + manifest["config"]["digest"][7:],
                        "RepoTags": ["arch-docker:25"],
                        "Layers": ["blobs/sha256/" + d["digest"][7:]
                                   for d in manifest["layers"]]}]

    def docker25(n: str, d: bytes) -> bytes:
        return json.dumps(index).encode() if n == "index.json" else d

    d25 = tmp_path / "docker25.tar"
    _rewrite(oci_tar, d25, docker25)
    with tarfile.open(d25, "a") as t:
        data = json.dumps(docker_manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    fresh = Minibox(tmp_path / "fresh-root")
    try:
        r = fresh("load", "-q", "-i", d25)
        assert r.stdout == "Loaded image: arch-docker:25\n"
        assert inspect(fresh, "arch-docker:25")["Id"] == image["Id"]
        # Loading what is there already changes nothing and says the same.
        files = fresh.files()
        assert fresh("load", "-q", "-i", d25).stdout == "Loaded image: arch-docker:25\n"
        assert fresh.files() == files

        plain = tmp_path / "docker-gzip.tar"
        _rewrite(d25, plain, lambda n, d: None if n in ("oci-layout", "index.json") else d)
        other = Minibox(tmp_path / "other-root")
        try:
            r = other("load", "-i", plain)
            assert loaded_names(r.stdout) == ["arch-docker:25"]
            assert inspect(other, "arch-docker:25")["Id"] == image["Id"]
            assert other.run("arch-docker:25").stdout == MARKER
        finally:
            shutil.rmtree(other.root, ignore_errors=True)
    finally:
        shutil.rmtree(fresh.root, ignore_errors=True)
