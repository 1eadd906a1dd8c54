"""Images: references, the store, layers (whiteouts, hostile archives), and the verbs.

Every test uses a data root of its own (`--data-root` under its tmp_path), registered
with conftest's leak check, which then also fails a test that leaves staging files in
the store's tmp/, a container's overlay dirs, or an overlay mount behind.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import DATA_ROOTS, MINIBOX, REPO, ROOTFS, _launched, require_rootfs

from minibox.errors import MiniboxError
from minibox.image import layer, reference
from minibox.image.store import Store


@pytest.fixture
def data_root(tmp_path: Path) -> str:
    root = str(tmp_path / "data")
    DATA_ROOTS.append(root)
    return root


def mb(data_root: str, *args: object, input: bytes | None = None,
       timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`minibox --data-root D ARGS...`; stderr must never hold a traceback."""
    require_rootfs()
    argv = [str(MINIBOX), "--data-root", data_root, *map(str, args)]
    with subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else
                          subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, cwd=REPO) as proc:
        _launched(proc.pid)
        out, err = proc.communicate(input, timeout=timeout)
    r = subprocess.CompletedProcess(argv, proc.returncode, out.decode(errors="replace"),
                                    err.decode(errors="replace"))
    assert "Traceback" not in r.stderr, f"minibox crashed:\n{r.stderr}"
    return r


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"{r.args} failed ({r.returncode}): {r.stderr}"
    return r.stdout


def one_line_error(r: subprocess.CompletedProcess[str], code: int = 125) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minibox: "), r.stderr
    return lines[0]


def tree_of(root: str) -> dict[str, tuple]:
    """Every file under root: type, mode, owner, content or target (what a layer holds)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("l", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("d", st.st_mode & 0o7777, st.st_uid)
            elif os.path.isfile(p):
                out[rel] = ("f", st.st_mode & 0o7777, st.st_uid, Path(p).read_bytes())
            else:
                out[rel] = ("o", st.st_mode, st.st_rdev)
    return out


def make_tar(entries: list[tuple], compress: str = "none") -> bytes:
    """entries: (name, kind, payload) with kind file/dir/symlink/hardlink/char/fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            data = None
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                ti.size = len(data)
                ti.mode = 0o644
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, payload
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, payload
            elif kind == "char":
                ti.type, ti.devmajor, ti.devminor, ti.mode = tarfile.CHRTYPE, *payload, 0o666
            elif kind == "fifo":
                ti.type, ti.mode = tarfile.FIFOTYPE, 0o600
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    if compress == "gzip":
        return gzip.compress(raw)
    if compress == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(raw)
    return raw


# -- references ------------------------------------------------------------------------

@pytest.mark.parametrize("text,registry,repo,tag,digest,canon", [
    ("busybox", None, "busybox", "latest", None, "busybox:latest"),
    ("busybox:1.36", None, "busybox", "1.36", None, "busybox:1.36"),
    ("library/debian:bookworm", None, "library/debian", "bookworm", None,
     "library/debian:bookworm"),
    ("localhost:5000/a/b:1", "localhost:5000", "a/b", "1", None, "localhost:5000/a/b:1"),
    ("localhost/x", "localhost", "x", "latest", None, "localhost/x:latest"),
    ("example.com/team/app", "example.com", "team/app", "latest", None,
     "example.com/team/app:latest"),
    ("a__b.c-d---e", None, "a__b.c-d---e", "latest", None, "a__b.c-d---e:latest"),
    ("repo@sha256:" + "a" * 64, None, "repo", None, "sha256:" + "a" * 64,
     "repo@sha256:" + "a" * 64),
    ("h:1/r:t@sha256:" + "b" * 64, "h:1", "r", "t", "sha256:" + "b" * 64,
     "h:1/r:t@sha256:" + "b" * 64),
])
def test_reference_parse(text, registry, repo, tag, digest, canon):
    ref = reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repo, tag, digest)
    assert str(ref) == canon


@pytest.mark.parametrize("text", ["", "Busybox", "a:", ":t", "a//b", "-a", "a-", "a:b:c",
                                  "a@sha256:abc", "a@", "a_-b", "a:" + "t" * 129,
                                  "host:port/x", "a/" + "b" * 260, "a b"])
def test_reference_rejects(text):
    with pytest.raises(MiniboxError) as exc:
        reference.parse(text)
    assert "invalid reference format" in exc.value.message


# -- the store and layers (library level) ------------------------------------------------

def test_put_blob_verifies_digest_and_leaves_nothing(tmp_path, data_root):
    st = Store(data_root)
    good = st.put_blob(b"hello")
    assert good == "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert st.blob_path(good).endswith(good[7:]) and st.has_blob(good)
    with pytest.raises(MiniboxError) as exc:
        st.put_blob(io.BytesIO(b"tampered"), expected=good)
    assert good in exc.value.message and "sha256:" in exc.value.message.replace(good, "")
    assert os.listdir(st.blobs) == [good[7:]]
    assert os.listdir(st.tmp) == []


def test_layer_whiteouts_become_overlay_whiteouts(tmp_path):
    dest = tmp_path / "l"
    dest.mkdir()
    data = make_tar([("etc", "dir", None), ("etc/.wh.passwd", "file", ""),
                     ("opt", "dir", None), ("opt/.wh..wh..opq", "file", ""),
                     ("opt/new", "file", "n"), ("hl", "hardlink", "opt/new"),
                     ("dev", "dir", None), ("dev/null", "char", (1, 3)),
                     ("p", "fifo", None), ("s", "symlink", "/etc/hostname")], "gzip")
    applied = layer.apply(io.BytesIO(data), str(dest))
    wh = os.lstat(dest / "etc" / "passwd")
    assert os.major(wh.st_rdev) == 0 and os.minor(wh.st_rdev) == 0 and \
        (wh.st_mode & 0o170000) == 0o020000
    assert not (dest / "etc" / ".wh.passwd").exists()
    assert os.getxattr(dest / "opt", "trusted.overlay.opaque") == b"y"
    assert os.stat(dest / "hl").st_ino == os.stat(dest / "opt" / "new").st_ino
    assert os.readlink(dest / "s") == "/etc/hostname"
    assert os.major(os.lstat(dest / "dev" / "null").st_rdev) == 1
    assert applied.diff_id == layer.diff_id_of(io.BytesIO(gzip.decompress(data)))
    # And back: write_layer turns the overlay whiteouts into tar whiteouts again.
    out = io.BytesIO()
    _, diff_id, _ = layer.write_layer(str(dest), out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        names = tf.getnames()
    assert "etc/.wh.passwd" in names and "opt/.wh..wh..opq" in names
    assert diff_id.startswith("sha256:")


@pytest.mark.parametrize("compress", ["none", "gzip", "zstd"])
def test_layer_compressions(tmp_path, compress):
    dest = tmp_path / "l"
    dest.mkdir()
    layer.apply(io.BytesIO(make_tar([("a", "file", "x")], compress)), str(dest))
    assert (dest / "a").read_text() == "x"


@pytest.mark.parametrize("entries,needle", [
    ([("../../etc/x", "file", "pwn")], "../../etc/x"),
    ([("/etc/x", "file", "pwn")], "/etc/x"),
    ([("root", "symlink", "/"), ("root/etc/x", "file", "pwn")], "root/etc/x"),
    ([("up", "symlink", "../../../../.."), ("up/tmp/x", "file", "pwn")], "up/tmp/x"),
    ([("hl", "hardlink", "../../etc/passwd")], "hl"),
])
def test_layer_escapes_are_refused(tmp_path, entries, needle):
    dest = tmp_path / "l"
    dest.mkdir()
    with pytest.raises(MiniboxError) as exc:
        layer.apply(io.BytesIO(make_tar(entries)), str(dest))
    assert f'"{needle}"' in exc.value.message
    assert not Path("/etc/x").exists() and not Path("/tmp/x").exists()


def test_truncated_gzip_is_refused(tmp_path):
    data = make_tar([("a", "file", "x" * 100000)], "gzip")
    dest = tmp_path / "l"
    dest.mkdir()
    with pytest.raises(MiniboxError) as exc:
        layer.apply(io.BytesIO(data[: len(data) // 2]), str(dest))
    assert "truncated" in exc.value.message or "not a valid" in exc.value.message


# -- import, images, tag ------------------------------------------------------------------

def test_import_dir_and_tar_give_the_same_layer(tmp_path, data_root):
    id1 = ok(mb(data_root, "import", ROOTFS, "bb:dir")).strip()
    tarball = tmp_path / "rootfs.tar.gz"
    subprocess.run(["tar", "czf", tarball, "-C", ROOTFS, "."], check=True)
    id2 = ok(mb(data_root, "import", tarball, "bb:tar", "-c", 'CMD ["sh"]')).strip()
    assert id1.startswith("sha256:") and id2.startswith("sha256:") and id1 != id2
    st = Store(data_root)
    a, b = st.image("bb:dir"), st.image("bb:tar")
    assert a.id == id1 and b.id == id2
    assert b.config["config"]["Cmd"] == ["sh"]
    assert a.manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert a.manifest["layers"][0]["mediaType"] == \
        "application/vnd.oci.image.layer.v1.tar+gzip"
    assert tree_of(a.layer_dirs()[0]) == tree_of(str(ROOTFS))
    assert tree_of(b.layer_dirs()[0]) == tree_of(str(ROOTFS))
    assert st.image(id1[7:19]).id == id1
    assert os.listdir(st.tmp) == []


def test_import_from_stdin_and_bad_sources(tmp_path, data_root):
    data = make_tar([("bin", "dir", None), ("bin/hello", "file", "hi")], "zstd")
    iid = ok(mb(data_root, "import", "-", "x", input=data)).strip()
    st = Store(data_root)
    assert st.image("x:latest").id == iid
    assert one_line_error(mb(data_root, "import", tmp_path / "nope")).count("nope") == 1
    assert "invalid reference format" in one_line_error(
        mb(data_root, "import", "-", "Bad:Name", input=data))
    hostile = tmp_path / "evil.tar"
    hostile.write_bytes(make_tar([("../../etc/evil", "file", "x")]))
    before = sorted(os.listdir(st.blobs)), sorted(os.listdir(st.layers_dir)), st.refs()
    err = one_line_error(mb(data_root, "import", hostile, "evil"))
    assert "../../etc/evil" in err
    assert (sorted(os.listdir(st.blobs)), sorted(os.listdir(st.layers_dir)), st.refs()) == \
        before
    assert not Path("/etc/evil").exists()
