"""Run every example in the labs (docs/*.md) and compare its output, so the docs cannot rot.

The convention (docs/README.md, "How the labs are written and tested"):

- Only fenced blocks whose info string is exactly `console` are run.
- A line starting with `$ ` is a command. A command line ending in a backslash goes on
  to the next line (the lines reach `sh -c` as written, so the shell joins them). A
  command line ending in a here-document operator (`<<'EOF'`, `<<EOF`) takes the lines
  up to the terminator line (`EOF`) with it, and the command ends there.
- The lines after a command, up to the next `$ ` line or the end of the block, are its
  expected output: stdout and stderr together, in the order they were written.
- Lines are compared exactly, ignoring trailing whitespace, except that
  `...` alone on a line matches any number of lines (zero included), and
  a line ending in ` (re)` is a Python regular expression the whole line must match.
- The command must exit 0, unless the last expected line is `[N]`: then it must exit N.

Each command runs in a fresh `sh -c` from the repository root, as root, with stdin from
/dev/null, LC_ALL=C and the checkout's .venv/bin first on PATH. Commands share nothing
but the file system. A command must leave nothing behind: every process it started is
gone when it ends (checked here), nothing new is mounted under the repository or a lab
directory (checked), and its scratch files live in `mktemp -d /tmp/minibox-lab.XXXXXX`
directories it removes again, as it removes any `minibox-lab` cgroup it makes (checked).

One test per lab file; a failure shows every failing command with the expected and the
actual output.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
LABS = sorted(DOCS.glob("*.md"))
TIMEOUT = 20  # seconds per command
# What a lab may create for a while, and must remove: scratch directories, cgroups.
SCRATCH = ("/tmp/minibox-lab.*", "/sys/fs/cgroup/minibox-lab*", "/sys/fs/cgroup/*/minibox-lab*")


@dataclasses.dataclass
class Example:
    path: Path
    line: int  # 1-based line of the `$ ` in the file
    command: str
    expected: list[str]
    status: int = 0

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


# -- parsing ------------------------------------------------------------------------------

_FENCE = re.compile(r"^(`{3,}|~{3,})\s*(\S*)\s*$")
_STATUS = re.compile(r"^\[(\d+)\]$")
_HEREDOC = re.compile(r"""<<-?\s*(['"]?)(\w+)\1\s*$""")


def parse(path: Path) -> list[Example]:
    """The examples of one markdown file, in order."""
    examples: list[Example] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        i += 1
        if not fence:
            continue
        marker, info = fence.group(1), fence.group(2)
        body: list[tuple[int, str]] = []
        while i < len(lines) and not lines[i].startswith(marker[0] * len(marker)):
            body.append((i + 1, lines[i]))
            i += 1
        i += 1  # the closing fence
        if info == "console":
            examples.extend(_parse_block(path, body))
    return examples


def _parse_block(path: Path, body: list[tuple[int, str]]) -> list[Example]:
    examples: list[Example] = []
    j = 0
    while j < len(body):
        lineno, text = body[j]
        if not text.startswith("$ "):
            raise ValueError(f"{path.name}:{lineno}: a console block must start with "
                             f"a `$ ` command line, not {text!r}")
        command = [text[2:]]
        while command[-1].endswith("\\") and j + 1 < len(body):
            j += 1
            command.append(body[j][1])
        if heredoc := _HEREDOC.search(command[-1]):
            end = heredoc.group(2)
            while j + 1 < len(body) and command[-1] != end:
                j += 1
                command.append(body[j][1])
            if command[-1] != end:
                raise ValueError(f"{path.name}:{lineno}: here-document without its "
                                 f"terminator line {end!r}")
        j += 1
        expected = []
        while j < len(body) and not body[j][1].startswith("$ "):
            expected.append(body[j][1].rstrip())
            j += 1
        status = 0
        if expected and (m := _STATUS.match(expected[-1])):
            status = int(m.group(1))
            expected.pop()
        examples.append(Example(path, lineno, "\n".join(command), expected, status))
    return examples


# -- matching -----------------------------------------------------------------------------

def line_matches(expected: str, actual: str) -> bool:
    if expected.endswith(" (re)"):
        return re.fullmatch(expected[: -len(" (re)")], actual) is not None
    return expected == actual


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """Whether `actual` fits `expected`, where a `...` line stands for any number of lines.

    ok[i][j]: expected[i:] matches actual[j:] (dynamic programming, no recursion).
    """
    n, m = len(expected), len(actual)
    ok = [[False] * (m + 1) for _ in range(n + 1)]
    ok[n][m] = True
    for i in range(n - 1, -1, -1):
        for j in range(m, -1, -1):
            if expected[i] == "...":
                ok[i][j] = ok[i + 1][j] or (j < m and ok[i][j + 1])
            else:
                ok[i][j] = j < m and line_matches(expected[i], actual[j]) and ok[i + 1][j + 1]
    return ok[0][0]


# -- running ------------------------------------------------------------------------------

def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    env["LC_ALL"] = "C"
    env.pop("LANG", None)
    return env


def _session_members(sid: int) -> dict[int, int]:
    """Processes still in the session the command's shell led (containers included),
    as pid -> parent pid."""
    members = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if fields and fields[0] != "Z" and int(fields[3]) == sid:
            members[int(stat.split("/")[2])] = int(fields[1])
    return members


def _end(sid: int) -> None:
    """SIGKILL what a command left running: children first, so that a minibox sees its
    container end and cleans up after it (cgroups, overlay) before it goes too."""
    deadline = time.monotonic() + 2.0
    while (members := _session_members(sid)) and time.monotonic() < deadline:
        parents = set(members.values())
        for pid in members:
            if pid not in parents:
                _kill(pid)
        time.sleep(0.1)
    for pid in _session_members(sid):
        _kill(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _mount_points() -> set[str]:
    """Host mount points a lab could leave behind: under the repository or a lab dir."""
    points = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith((str(REPO) + "/", "/tmp/minibox-lab.")):
                points.add(point)
    return points


def _scratch() -> set[str]:
    return {path for pattern in SCRATCH for path in glob.glob(pattern)}


def run(example: Example) -> tuple[int, list[str], list[str]]:
    """Run one example; returns its exit status, its output lines and what it left behind.

    The output is read by a thread, so that a process the command forgot in the
    background, which holds the pipe open, is reported (and killed) as soon as the
    shell has exited, instead of hanging the test until the timeout.
    """
    mounts_before = _mount_points()
    scratch_before = _scratch()
    proc = subprocess.Popen(["sh", "-c", example.command], cwd=REPO, env=_environment(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(proc.stdout.read1, b"")))
    reader.start()
    left: list[str] = []
    try:
        proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        _end(proc.pid)
        proc.wait()
        left.append(f"timed out after {TIMEOUT} s (everything it started was killed)")
    # A process being killed takes a moment to go; give stragglers a little time.
    deadline = time.monotonic() + 1.0
    while (stray := _session_members(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if stray:
        left.append(f"processes still running after it: {sorted(stray)} (killed now)")
        _end(proc.pid)
    reader.join()
    proc.stdout.close()
    # Other engineers' tests run at the same time; give a mount of theirs a moment to go.
    deadline = time.monotonic() + 1.0
    while (new := _mount_points() - mounts_before) and time.monotonic() < deadline:
        time.sleep(0.05)
    if new:
        left.append(f"mounts left behind: {sorted(new)}")
    if new := _scratch() - scratch_before:
        left.append(f"left behind: {sorted(new)}")
    lines = [line.rstrip() for line in b"".join(chunks).decode("utf-8", "replace").splitlines()]
    return proc.returncode, lines, left


def _indent(lines: list[str]) -> str:
    return "\n".join("    " + line for line in lines) if lines else "    (nothing)"


def check(example: Example) -> str | None:
    """None when the example holds; else a report of command, expected and actual."""
    status, lines, left = run(example)
    problems = []
    if not output_matches(example.expected, lines):
        problems.append("output differs")
    if status != example.status:
        problems.append(f"exit status {status}, expected {example.status}")
    problems.extend(left)
    if not problems:
        return None
    command = example.command.replace("\n", "\n  ")
    return (f"{example.where()}: {'; '.join(problems)}\n"
            f"  $ {command}\n"
            f"  expected:\n{_indent(example.expected)}\n"
            f"  actual:\n{_indent(lines)}")


# -- the tests ----------------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the labs run containers: needs root")
needs_rootfs = pytest.mark.skipif(not (REPO / "rootfs" / "bin" / "busybox").exists(),
                                  reason="no rootfs/ (build it: minibox mkrootfs rootfs)")


@needs_root
@needs_rootfs
@pytest.mark.parametrize("lab", LABS, ids=[p.name for p in LABS])
def test_lab(lab: Path) -> None:
    examples = parse(lab)
    assert examples, f"{lab.name} has no ```console examples"
    failures = [report for ex in examples if (report := check(ex))]
    if failures:
        pytest.fail(f"{len(failures)} of {len(examples)} examples failed\n\n"
                    + "\n\n".join(failures), pytrace=False)


def test_every_lab_is_listed_in_the_index() -> None:
    index = (DOCS / "README.md").read_text()
    missing = [p.name for p in LABS if p.name != "README.md" and f"({p.name})" not in index]
    assert not missing, f"docs/README.md does not link to {missing}"


# The checker checks itself: a wrong expectation must fail.

def test_parse_commands_output_and_status(tmp_path: Path) -> None:
    md = tmp_path / "lab.md"
    md.write_text("text\n```console\n$ echo a \\\n  b\na b\n$ false\n[1]\n```\n"
                  "```sh\n$ not run\n```\n"
                  "```console\n$ cat <<'EOF'\n$ in\nEOF\nout\n```\n")
    got = parse(md)
    assert [(e.line, e.command, e.expected, e.status) for e in got] == [
        (3, "echo a \\\n  b", ["a b"], 0), (6, "false", [], 1),
        (13, "cat <<'EOF'\n$ in\nEOF", ["out"], 0)]


@pytest.mark.parametrize(("expected", "actual", "result"), [
    (["a", "b"], ["a", "b"], True),
    (["a", "b"], ["a", "c"], False),
    (["a"], ["a", "b"], False),
    (["a", "b"], ["a"], False),
    (["a", "...", "d"], ["a", "b", "c", "d"], True),
    (["a", "...", "d"], ["a", "d"], True),
    (["a", "...", "d"], ["a", "b", "c"], False),
    (["..."], [], True),
    ([r"pid \d+ (re)"], ["pid 42"], True),
    ([r"pid \d+ (re)"], ["pid 42 and more"], False),
    (["pid 1 (re)"], ["pid 1"], True),
])
def test_output_matches(expected: list[str], actual: list[str], result: bool) -> None:
    assert output_matches(expected, actual) is result
