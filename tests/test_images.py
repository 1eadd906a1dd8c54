"""Images: references, the store, layers (whiteouts, hostile archives), and the verbs.

Every test uses a data root of its own (`--data-root` under its tmp_path), registered
with conftest's leak check, which then also fails a test that leaves staging files in
the store's tmp/, a container's overlay dirs, or an overlay mount behind.
"""

from __future__ import annotations

import gzip
import io
import json
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
    outside = [Path("/etc/x"), Path("/tmp/x"), tmp_path / "x"]
    before = [p.exists() for p in outside]
    with pytest.raises(MiniboxError) as exc:
        layer.apply(io.BytesIO(make_tar(entries)), str(dest))
    assert f'"{needle}"' in exc.value.message
    assert [p.exists() for p in outside] == before


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


def test_import_explains_what_enters_the_store(data_root):
    r = mb(data_root, "import", "--explain", ROOTFS, "ex")
    assert r.returncode == 0
    lines = [x for x in r.stderr.splitlines() if x.startswith("[explain]")]
    assert any(f'{data_root}/layers/' in x and x.startswith('[explain] rename("') for x in lines)
    assert any(f'"{data_root}/refs.json") = 0' in x for x in lines)
    r = mb(data_root, "rmi", "--explain", "ex")
    assert r.returncode == 0 and "[recursive] = 0" in r.stderr


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


# -- run IMAGE -------------------------------------------------------------------------------

@pytest.fixture
def bb(data_root: str) -> str:
    """The busybox rootfs imported as image `bb` with a config to honour."""
    ok(mb(data_root, "import", ROOTFS, "bb", "-c", 'CMD ["sh", "-c", "echo from-cmd"]',
          "-c", "ENV GREETING=hello PATH=/usr/bin:/bin", "-c", "WORKDIR /work/dir",
          "-c", "LABEL team=blue"))
    return "bb"


def test_run_image_applies_config(data_root, bb):
    assert ok(mb(data_root, "run", bb)) == "from-cmd\n"
    ok(mb(data_root, "import", ROOTFS, "user", "-c", "USER student", "-c", "ENV GREETING=hello",
          "-c", "WORKDIR /work/dir"))
    out = ok(mb(data_root, "run", "user", "sh", "-c", 'echo $GREETING; pwd; id -u; id -g'))
    assert out.split("\n")[:4] == ["hello", "/work/dir", "1000", "1000"]
    assert "PATH=/usr/bin:/bin\n" in ok(mb(data_root, "run", bb, "env"))
    # -u, -w and -e beat the image's User, WorkingDir and Env.
    out = ok(mb(data_root, "run", "-u", "0", "-w", "/tmp", "-e", "GREETING=bye", "user",
                "sh", "-c", "echo $GREETING; pwd; id -u"))
    assert out.split() == ["bye", "/tmp", "0"]
    # The container sees one overlay as /, made of the image's layer and its own upper.
    mi = ok(mb(data_root, "run", bb, "cat", "/proc/self/mountinfo")).splitlines()[0]
    st = Store(data_root)
    assert " / / " in mi and "overlay" in mi and st.image(bb).layer_dirs()[0] in mi


def test_run_image_with_read_only_and_volume(data_root, bb, tmp_path):
    r = mb(data_root, "run", "--read-only", bb, "touch", "/x")
    assert r.returncode == 1 and "Read-only file system" in r.stderr
    (tmp_path / "vol").mkdir()
    (tmp_path / "vol" / "in").write_text("host\n")
    out = ok(mb(data_root, "run", "-v", f"{tmp_path / 'vol'}:/mnt/vol", bb,
                "sh", "-c", "cat /mnt/vol/in; echo c > /mnt/vol/out"))
    assert out == "host\n" and (tmp_path / "vol" / "out").read_text() == "c\n"


def test_run_image_entrypoint(data_root, bb):
    ok(mb(data_root, "import", ROOTFS, "ep", "-c", 'ENTRYPOINT ["echo", "ep:"]',
          "-c", 'CMD ["default"]'))
    assert ok(mb(data_root, "run", "ep")) == "ep: default\n"
    assert ok(mb(data_root, "run", "ep", "given", "args")) == "ep: given args\n"
    # --entrypoint replaces the Entrypoint and drops the image's Cmd (docker's rule).
    assert ok(mb(data_root, "run", "--entrypoint", "/bin/echo", "ep")) == "\n"
    assert ok(mb(data_root, "run", "--entrypoint", "/bin/echo", "ep", "x")) == "x\n"
    assert ok(mb(data_root, "run", "--entrypoint", "", "ep", "echo", "plain")) == "plain\n"


def test_run_image_writes_stay_in_the_container(data_root, bb):
    st = Store(data_root)
    layer_dir = st.image(bb).layer_dirs()[0]
    before = tree_of(layer_dir)
    ok(mb(data_root, "run", bb, "sh", "-c", "rm /bin/ls; echo x > /etc/hostname; "
                                              "mkdir -p /new/dir"))
    assert tree_of(layer_dir) == before
    assert "from-cmd" in ok(mb(data_root, "run", bb))
    assert ok(mb(data_root, "run", bb, "ls", "/bin/ls")).strip() == "/bin/ls"


def test_run_detached_image_and_rm(data_root, bb):
    cid = ok(mb(data_root, "run", "-d", "--name", "img-d", bb, "sleep", "30")).strip()
    try:
        rw = Path(data_root) / "containers" / cid
        assert (rw / "upper").is_dir() and (rw / "work").is_dir()
        ps = ok(mb(data_root, "ps"))
        assert any(line.startswith(cid[:12]) and " bb " in line for line in ps.splitlines())
        ok(mb(data_root, "exec", "img-d", "sh", "-c", "echo hi > /made-by-exec"))
        assert (rw / "upper" / "made-by-exec").read_text() == "hi\n"
    finally:
        ok(mb(data_root, "rm", "-f", "img-d"))
    assert not (Path(data_root) / "containers" / cid).exists()


def test_run_path_rule_and_errors(data_root, bb, tmp_path):
    # An existing directory named like an image is a rootfs path; so is ./x or x/.
    r = mb(data_root, "run", "rootfs", "echo", "dir")
    assert ok(r) == "dir\n"
    # By short id and by name@digest too (the store's full lookup, not the quick one).
    img = Store(data_root).image(bb)
    assert ok(mb(data_root, "run", img.short_id, "echo", "by-id")) == "by-id\n"
    assert ok(mb(data_root, "run", f"bb@{img.manifest_digest}", "echo", "d")) == "d\n"
    err = one_line_error(mb(data_root, "run", "nosuchimage"))
    assert "Unable to find image 'nosuchimage'" in err
    err = one_line_error(mb(data_root, "run", "Not:Valid:Ref", "true"))
    assert "invalid reference format" in err
    ok(mb(data_root, "import", ROOTFS, "nocmd"))
    assert "No command specified" in one_line_error(mb(data_root, "run", "nocmd"))
    assert "--entrypoint needs an image" in one_line_error(
        mb(data_root, "run", "--entrypoint", "x", ROOTFS, "true"))
    assert "userns" in one_line_error(mb(data_root, "run", "--userns", bb, "true"))


# -- commit, diff, export, history --------------------------------------------------------------

def test_commit_round_trip_with_whiteouts(data_root, bb, tmp_path):
    script = ("rm /etc/passwd.bak 2>/dev/null; rm /etc/group; echo new > /added; "
              "echo changed > /etc/hostname; rm -rf /home; mkdir /home; echo h > /home/only; "
              "mkdir -p /opt/a")
    ok(mb(data_root, "create", "--name", "cm", bb, "sh", "-c", script))
    try:
        ok(mb(data_root, "start", "cm"))
        assert ok(mb(data_root, "wait", "cm")).strip() == "0"
        d = ok(mb(data_root, "diff", "cm")).splitlines()
        for line in ("A /added", "D /etc/group", "C /etc", "A /opt", "A /opt/a", "C /home",
                     "D /home/student", "A /home/only"):
            assert line in d, (line, d)
        new_id = ok(mb(data_root, "commit", "-m", "the change", "-a", "Ann <a@b>",
                       "-c", 'CMD ["cat", "/added"]', "cm", "bb:committed")).strip()
        st = Store(data_root)
        img = st.image("bb:committed")
        assert img.id == new_id and len(img.diff_ids) == 2
        assert img.parent == st.image(bb).manifest_digest
        assert img.config["author"] == "Ann <a@b>"
        # The new layer is a real tar layer with docker/OCI whiteouts in it.
        with st.open_blob(img.layers[1][0]) as f, tarfile.open(fileobj=f, mode="r|gz") as tf:
            names = tf.getnames()
        assert "etc/.wh.group" in names and "home/.wh..wh..opq" in names
        assert "added" in names
        # The layer dir made while writing the blob is what unpacking the blob gives.
        again = tmp_path / "again"
        again.mkdir()
        with st.open_blob(img.layers[1][0]) as f:
            layer.apply(f, str(again))
        assert tree_of(str(again)) == tree_of(img.layer_dirs()[1])
        assert os.getxattr(again / "home", "trusted.overlay.opaque") == b"y"
        # Run it: the changes are there, the deleted file is gone.
        assert ok(mb(data_root, "run", "bb:committed")) == "new\n"
        out = ok(mb(data_root, "run", "bb:committed", "sh", "-c",
                    "cat /etc/hostname; ls /home; test -e /etc/group || echo gone"))
        assert out.split() == ["changed", "only", "gone"]
        hist = ok(mb(data_root, "history", "bb:committed")).splitlines()
        assert hist[0].split()[:2] == ["IMAGE", "CREATED"]
        assert hist[1].startswith(new_id[7:19]) and "the change" in hist[1]
        assert "sh -c rm /etc/passwd.bak" in hist[1]
        assert hist[2].startswith("<missing>") and f"Imported from {ROOTFS}" in hist[2]
        rows = [json.loads(x) for x in
                ok(mb(data_root, "history", "--format", "json", "bb:committed")).splitlines()]
        assert [r["Comment"] for r in rows] == ["the change", f"Imported from {ROOTFS}"]
        # export: the container's whole filesystem, changes included.
        out_tar = tmp_path / "cm.tar"
        ok(mb(data_root, "export", "-o", out_tar, "cm"))
        with tarfile.open(out_tar) as tf:
            names = set(tf.getnames())
        assert "added" in names and "bin/busybox" in names and "etc/group" not in names
        assert "home/only" in names and "home/student" not in names
        assert not list(tmp_path.glob("cm.tar.tmp*"))
    finally:
        ok(mb(data_root, "rm", "-f", "cm"))


def test_commit_and_diff_refuse_rootfs_containers(data_root, bb):
    ok(mb(data_root, "create", "--name", "plain", ROOTFS, "true"))
    try:
        for verb in ("commit", "diff", "export"):
            err = one_line_error(mb(data_root, verb, "plain"))
            assert "not on an image" in err
        assert "No such container" in one_line_error(mb(data_root, "commit", "nope"), 1)
    finally:
        ok(mb(data_root, "rm", "plain"))


# -- rmi, tag, images ---------------------------------------------------------------------------

def test_rmi_refuses_while_a_container_uses_the_image(data_root, bb):
    st = Store(data_root)
    img = st.image(bb)
    cid = ok(mb(data_root, "run", "-d", bb, "sleep", "30")).strip()
    try:
        err = one_line_error(mb(data_root, "rmi", bb), 1)
        assert "must force" in err and cid[:12] in err
        err = one_line_error(mb(data_root, "rmi", "-f", bb), 1)
        assert "running container" in err
        assert st.image(bb).id == img.id
        # Another name for the same image can go: the image stays.
        ok(mb(data_root, "tag", bb, "other:1"))
        assert ok(mb(data_root, "rmi", "other:1")) == "Untagged: other:1\n"
    finally:
        ok(mb(data_root, "rm", "-f", cid))
    out = ok(mb(data_root, "rmi", bb)).splitlines()
    assert out[0] == "Untagged: bb:latest" and out[1] == f"Deleted: {img.id}"
    assert f"Deleted: {img.diff_ids[0]}" in out
    assert os.listdir(st.layers_dir) == [] and os.listdir(st.blobs) == []
    assert st.refs() == {} and os.listdir(st.tmp) == []


def test_rmi_keeps_shared_layers_and_multi_name_rules(data_root, bb):
    st = Store(data_root)
    ok(mb(data_root, "run", "--name", "x", bb, "true"))
    ok(mb(data_root, "create", "--name", "c", bb, "touch", "/f"))
    ok(mb(data_root, "start", "c"))
    ok(mb(data_root, "wait", "c"))
    ok(mb(data_root, "commit", "c", "child"))
    ok(mb(data_root, "rm", "c"))
    base = st.image(bb)
    ok(mb(data_root, "tag", bb, "alias"))
    err = one_line_error(mb(data_root, "rmi", base.short_id), 1)
    assert "referenced in multiple repositories" in err
    ok(mb(data_root, "rmi", "-f", base.short_id))
    # The base layer stays: the child image stands on it.
    child = st.image("child")
    assert all(os.path.isdir(d) for d in child.layer_dirs())
    # It runs on both layers, with the command it was committed with (touch /f).
    assert ok(mb(data_root, "run", "child")) == ""
    assert ok(mb(data_root, "run", "child", "ls", "/f")) == "/f\n"
    assert "No such image" in one_line_error(mb(data_root, "rmi", "nope"), 1)
    ok(mb(data_root, "rmi", "child"))
    assert os.listdir(st.layers_dir) == []


def test_images_listing_filters_and_formats(data_root, bb):
    time_sep = ok(mb(data_root, "import", ROOTFS, "second:v2", "-c", "LABEL team=red"))
    assert time_sep.startswith("sha256:")
    ok(mb(data_root, "tag", "second:v2", "localhost:5000/team/second:v2"))
    lines = ok(mb(data_root, "images")).splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    repos = sorted((line.split()[0], line.split()[1]) for line in lines[1:])
    assert repos == [("bb", "latest"), ("localhost:5000/team/second", "v2"),
                     ("second", "v2")]
    assert len(ok(mb(data_root, "images", "-q")).split()) == 2
    out = ok(mb(data_root, "images", "--filter", "reference=bb")).splitlines()
    assert len(out) == 2 and out[1].startswith("bb ")
    out = ok(mb(data_root, "images", "--filter", "reference=*")).splitlines()
    assert sorted(line.split()[0] for line in out[1:]) == ["bb", "second"]  # * stops at /
    out = ok(mb(data_root, "images", "--filter", "reference=*/*/second")).splitlines()
    assert len(out) == 2 and out[1].startswith("localhost:5000/team/second ")
    out = ok(mb(data_root, "images", "-f", "reference=bb", "-f", "reference=second")).splitlines()
    assert sorted(line.split()[0] for line in out[1:]) == ["bb", "second"]
    out = ok(mb(data_root, "images", "-f", "label=team=red")).splitlines()
    assert {line.split()[0] for line in out[1:]} == {"second", "localhost:5000/team/second"}
    out = ok(mb(data_root, "images", "-f", "label=team")).splitlines()
    assert len(out) == 4
    out = ok(mb(data_root, "images", "-f", "since=bb")).splitlines()
    assert {line.split()[0] for line in out[1:]} == {"second", "localhost:5000/team/second"}
    out = ok(mb(data_root, "images", "-f", "before=second:v2")).splitlines()
    assert [line.split()[0] for line in out[1:]] == ["bb"]
    rows = [json.loads(x) for x in ok(mb(data_root, "images", "--format", "json")).splitlines()]
    assert {r["Repository"] for r in rows} == {"bb", "second", "localhost:5000/team/second"}
    assert all(r["ID"] and r["Size"].endswith("MB") and r["Digest"].startswith("sha256:")
               for r in rows)
    digests = ok(mb(data_root, "images", "--digests")).splitlines()
    assert digests[0].split()[:3] == ["REPOSITORY", "TAG", "DIGEST"]
    # An untagged image is dangling.
    ok(mb(data_root, "rmi", "localhost:5000/team/second:v2"))
    ok(mb(data_root, "tag", "second:v2", "keep:1"))
    ok(mb(data_root, "rmi", "second:v2"))
    assert ok(mb(data_root, "images", "-f", "dangling=true", "-q")) == ""
    ok(mb(data_root, "import", ROOTFS, "keep:1"))  # moves the name: the old image dangles
    dangling = ok(mb(data_root, "images", "-f", "dangling=true")).splitlines()
    assert len(dangling) == 2 and dangling[1].startswith("<none>")
    tree = ok(mb(data_root, "images", "--tree"))
    assert "Tags: bb:latest" in tree and "└─" in tree
    inspect = json.loads(ok(mb(data_root, "inspect", "keep:1")))
    assert inspect[0]["RepoTags"] == ["keep:1"] and inspect[0]["Config"] == {}
    assert json.loads(ok(mb(data_root, "inspect", "--type", "image", bb)))[0][
        "Config"]["Labels"] == {"team": "blue"}
    for bad in (["--filter", "colour=red"], ["--filter", "dangling=maybe"],
                ["--format", "{{.ID}}"]):
        assert one_line_error(mb(data_root, "images", *bad))


# -- more refusals, and what stays ---------------------------------------------------------------

def test_add_image_refuses_a_layer_whose_content_is_not_its_diff_id(data_root):
    st = Store(data_root)
    st.ensure()
    blob = st.put_blob(make_tar([("a", "file", "x")], "gzip"))
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}}).encode()
    cfg_digest = st.put_blob(cfg)
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": cfg_digest, "size": len(cfg)},
                           "layers": [{"mediaType":
                                       "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": blob, "size": 1}]}).encode()
    with pytest.raises(MiniboxError) as exc:
        st.add_image(manifest, "bad:1")
    assert "sha256:" + "0" * 64 in exc.value.message and "refused" in exc.value.message
    assert os.listdir(st.layers_dir) == [] and os.listdir(st.tmp) == []
    assert st.refs() == {} and st.images() == []
    with pytest.raises(MiniboxError) as exc:
        st.add_image(b"{not json", "bad:2")
    assert "not valid JSON" in exc.value.message
    with pytest.raises(MiniboxError) as exc:
        st.image("bad:1")
    assert exc.value.message == "No such image: bad:1"


def test_truncated_import_leaves_the_store_as_it_was(tmp_path, data_root, bb):
    st = Store(data_root)
    before = sorted(os.listdir(st.blobs)), sorted(os.listdir(st.layers_dir)), st.refs()
    data = make_tar([("f", "file", os.urandom(300000))], "gzip")
    bad = tmp_path / "cut.tar.gz"
    bad.write_bytes(data[: len(data) // 2])
    err = one_line_error(mb(data_root, "import", bad, "cut"))
    assert "truncated" in err or "not a valid tar" in err
    assert (sorted(os.listdir(st.blobs)), sorted(os.listdir(st.layers_dir)), st.refs()) == \
        before


def test_rmi_force_with_a_stopped_container_keeps_its_layers(data_root, bb):
    ok(mb(data_root, "create", "--name", "stopped", bb, "true"))
    try:
        out = ok(mb(data_root, "rmi", "-f", bb))
        assert out == "Untagged: bb:latest\n"
        st = Store(data_root)
        (img,) = st.images()
        assert img.refs == [] and all(os.path.isdir(d) for d in img.layer_dirs())
        dangling = ok(mb(data_root, "images", "--filter", "dangling=true", "-q")).split()
        assert dangling == [img.short_id]
        ok(mb(data_root, "start", "stopped"))
        assert ok(mb(data_root, "wait", "stopped")).strip() == "0"
    finally:
        ok(mb(data_root, "rm", "-f", "stopped"))
    ok(mb(data_root, "rmi", img.short_id))
    assert os.listdir(Store(data_root).layers_dir) == []


def test_commit_a_running_container(data_root, bb):
    cid = ok(mb(data_root, "run", "-d", bb, "sh", "-c",
                "echo live > /state; sleep 30")).strip()
    try:
        for _ in range(100):
            if (Path(data_root) / "containers" / cid / "upper" / "state").exists():
                break
            import time

            time.sleep(0.05)
        ok(mb(data_root, "commit", cid, "live:1"))
        assert json.loads(ok(mb(data_root, "inspect", cid)))[0]["State"]["Running"] is True
        assert ok(mb(data_root, "run", "live:1", "cat", "/state")) == "live\n"
    finally:
        ok(mb(data_root, "rm", "-f", cid))


def test_commit_keeps_the_containers_command_and_env(data_root, bb):
    """As docker commit: the new image's Cmd and Env are the container's (-e included),
    without the HOSTNAME/HOME/TERM minibox sets per container; --entrypoint stays split."""
    ok(mb(data_root, "create", "--name", "ce", "-e", "GREETING=hi", "-w", "/tmp",
          "--entrypoint", "/bin/sh", bb, "-c", "echo $GREETING from $(pwd)"))
    try:
        ok(mb(data_root, "start", "ce"))
        assert ok(mb(data_root, "wait", "ce")).strip() == "0"
        ok(mb(data_root, "commit", "ce", "ce:1"))
        cfg = Store(data_root).image("ce:1").config["config"]
        assert cfg["Entrypoint"] == ["/bin/sh"]
        assert cfg["Cmd"] == ["-c", "echo $GREETING from $(pwd)"]
        assert "GREETING=hi" in cfg["Env"]
        assert not [e for e in cfg["Env"] if e.startswith(("HOSTNAME=", "TERM="))]
        assert cfg["WorkingDir"] == "/tmp"
        # Run with no command: the committed one runs, in the committed environment.
        assert ok(mb(data_root, "run", "--rm", "ce:1")) == "hi from /tmp\n"
    finally:
        ok(mb(data_root, "rm", "-f", "ce"))


def test_progress_only_on_a_terminal(data_root, tmp_path):
    """Long work draws a progress line when stdout and stderr are a terminal (a pty
    here), and prints only its result otherwise."""
    import pty

    tarball = tmp_path / "r.tar"
    subprocess.run(["tar", "cf", tarball, "-C", ROOTFS, "."], check=True)
    piped = mb(data_root, "import", tarball, "p:1")
    assert ok(piped).startswith("sha256:") and piped.stderr == ""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([str(MINIBOX), "--data-root", data_root, "import", tarball,
                                 "p:2"], stdin=subprocess.DEVNULL, stdout=slave,
                                stderr=slave, cwd=REPO)
        _launched(proc.pid)
        os.close(slave)
        slave = -1
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    text = out.decode(errors="replace")
    assert "Importing" in text and "\r" in text and "sha256:" in text


def test_umoci_unpacks_a_committed_image(data_root, bb, tmp_path):
    """umoci (a peer that reads OCI layouts) unpacks what commit wrote, whiteouts and
    opaque directory included. The layout is made here from the store's blobs by hand:
    save/load of archives is not what this test is about."""
    ok(mb(data_root, "create", "--name", "um", bb, "sh", "-c",
          "rm /etc/group; rm -rf /home; mkdir /home; echo h > /home/only; echo a > /added"))
    try:
        ok(mb(data_root, "start", "um"))
        assert ok(mb(data_root, "wait", "um")).strip() == "0"
        ok(mb(data_root, "commit", "um", "um:1"))
    finally:
        ok(mb(data_root, "rm", "-f", "um"))
    st = Store(data_root)
    img = st.image("um:1")
    layout = tmp_path / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for d in [img.manifest_digest, img.config_digest] + [d for d, _, _ in img.layers]:
        os.link(st.blob_path(d), layout / "blobs" / "sha256" / d[7:])
    (layout / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": img.manifest_digest, "size": len(img.manifest_bytes),
            "annotations": {"org.opencontainers.image.ref.name": "1"}}]}))
    bundle = tmp_path / "bundle"
    r = subprocess.run(["umoci", "unpack", "--image", f"{layout}:1", str(bundle)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    root = bundle / "rootfs"
    assert (root / "added").read_text() == "a\n" and (root / "bin" / "busybox").is_file()
    assert not (root / "etc" / "group").exists() and (root / "etc" / "passwd").exists()
    assert sorted(os.listdir(root / "home")) == ["only"]


def test_layer_keeps_owners_modes_mtimes_and_xattrs(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        def add(name, kind=tarfile.REGTYPE, mode=0o644, uid=0, gid=0, data=b"", pax=None):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = kind, mode, uid, gid, 1600000000
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            if pax:
                ti.pax_headers = pax
            tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("suid", mode=0o4755, uid=1000, gid=1000, data=b"x")
        add("shared", tarfile.DIRTYPE, mode=0o2775, gid=50)
        add("shared/f", mode=0o640)
        add("ro", mode=0o444, data=b"r")
        add("attr", data=b"a", pax={"SCHILY.xattr.user.colour": "blue"})
    dest = tmp_path / "l"
    dest.mkdir()
    layer.apply(io.BytesIO(buf.getvalue()), str(dest))
    st = os.lstat(dest / "suid")
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o4755, 1000, 1000)
    st = os.lstat(dest / "shared")
    assert (st.st_mode & 0o7777, st.st_gid, int(st.st_mtime)) == (0o2775, 50, 1600000000)
    st = os.lstat(dest / "shared" / "f")
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 0, 0)
    assert os.lstat(dest / "ro").st_mode & 0o7777 == 0o444
    assert int(os.lstat(dest / "ro").st_mtime) == 1600000000
    assert os.getxattr(dest / "attr", "user.colour") == b"blue"


def test_images_all_shows_intermediate_images(data_root, bb):
    ok(mb(data_root, "create", "--name", "mid", bb, "touch", "/f"))
    try:
        ok(mb(data_root, "start", "mid"))
        ok(mb(data_root, "wait", "mid"))
        ok(mb(data_root, "commit", "mid", "child"))
    finally:
        ok(mb(data_root, "rm", "-f", "mid"))
    old = Store(data_root).image(bb).short_id
    ok(mb(data_root, "import", ROOTFS, "bb"))  # the name moves: the old bb is untagged
    assert old not in ok(mb(data_root, "images", "-q"))  # a parent: hidden by default
    assert old in ok(mb(data_root, "images", "-a", "-q")).split()
    rows = ok(mb(data_root, "images", "-a")).splitlines()
    assert any(r.startswith("<none>") and old in r for r in rows)


def test_run_rootfs_loads_nothing_of_images(data_root, bb):
    """`run ROOTFS` stays on the fast path: no image module, no json, no re; `run IMAGE`
    with a plain name loads the lookup it needs but not the store module."""
    def modules(*args):
        code = "from minibox.cli import main; import sys; main.main(sys.argv[1:])"
        r = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-X", "importtime", "-c",
                            code, *args], capture_output=True, text=True, cwd=REPO,
                           env=dict(os.environ, MINIBOX_DATA_ROOT=data_root))
        assert r.returncode == 0, r.stderr[-2000:]
        return {line.split("|")[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    plain = modules("run", str(ROOTFS), "true")
    assert not {m for m in plain if m.startswith("minibox.image") or m in ("json", "re")}
    image = modules("run", bb, "true")
    assert "minibox.cli.imagerun" in image and "minibox.image.store" not in image
    assert "json" not in image and "re" not in image
