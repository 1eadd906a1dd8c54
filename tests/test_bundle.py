"""minibox.bundle: the launcher imports minibox's modules from one file, never stale ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import MINIBOX, REPO, run_minibox

from minibox import bundle

PROBE = """
import sys
sys.path[0:0] = [{repo!r}] + [p for p in {path!r} if p]
import minibox.bundle
minibox.bundle.install({bundle!r})
import minibox.runtime.state as state
print(type(state.__spec__.loader).__name__, state.__file__)
"""


def _probe(bundle_path: Path) -> str:
    code = PROBE.format(repo=str(REPO), path=sys.path, bundle=str(bundle_path))
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                       check=True)
    return r.stdout.strip()


def test_modules_come_from_the_bundle_with_their_source_as_file(tmp_path):
    path = tmp_path / "b.bin"
    assert bundle.build(str(path)) > 50
    loader, file = _probe(path).split()
    assert loader == "_Finder"
    assert file == str(REPO / "minibox" / "runtime" / "state.py")


def test_without_a_usable_bundle_the_usual_import(tmp_path):
    assert _probe(tmp_path / "missing.bin").split()[0] == "SourceFileLoader"
    (tmp_path / "other.bin").write_bytes(b"not a bundle" * 10)
    assert _probe(tmp_path / "other.bin").split()[0] == "SourceFileLoader"


def test_an_edited_or_removed_source_is_not_served(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("X = 1\n")
    st = source.stat()
    fd = os.open(source, os.O_RDONLY)
    try:
        entry = (0, 0, str(source), False, st.st_mtime_ns, st.st_size)
        finder = bundle._Finder(fd, {"mod": entry})
        assert finder.find_spec("mod").origin == str(source)
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
        assert finder.find_spec("mod") is None  # edited: mtime differs
        source.write_text("X = 2\n")
        finder.index["mod"] = (0, 0, str(source), False, source.stat().st_mtime_ns, 99)
        assert finder.find_spec("mod") is None  # size differs
        source.unlink()
        assert finder.find_spec("mod") is None
        assert finder.find_spec("other") is None
    finally:
        os.close(fd)


def test_the_minibox_command_reads_no_minibox_pyc(tmp_path):
    # .ci/setup made the bundle: `minibox run` opens the package's own __init__ and
    # bundle.py the usual way, and nothing else of minibox (strace(1) sees each open).
    assert Path(bundle.PATH).is_file(), "no bundle: run bash .ci/setup"
    trace = tmp_path / "trace"
    r = subprocess.run(["strace", "-f", "-e", "trace=openat", "-o", str(trace), str(MINIBOX),
                        "run", str(REPO / "rootfs"), "/bin/true"], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    opened = [line.split('"')[1] for line in trace.read_text().splitlines()
              if '.pyc"' in line and "/minibox/" in line]
    names = sorted(os.path.basename(p).split(".")[0] for p in opened)
    assert names == ["__init__", "bundle"], opened
    assert run_minibox(REPO / "rootfs", "echo", "ok").stdout == "ok\n"
