"""`--explain` tells the kernel steps as they really happen: checked against strace(1).

strace sees the syscalls minibox (and its cloned child) really make; the `[explain]`
lines are what minibox says it did. Filtered to the same calls, the two sequences of
(syscall, target, result) must be identical: same calls, same order, same outcome.
"""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path

import pytest

from_strace_list = ("clone", "clone3", "unshare", "mount", "pivot_root", "sethostname",
                    "umount2", "open_tree", "move_mount", "mount_setattr")
NAMESPACE_FLAGS = {"CLONE_NEWNS", "CLONE_NEWUTS", "CLONE_NEWIPC", "CLONE_NEWPID",
                   "CLONE_NEWNET", "CLONE_NEWCGROUP"}


def split_args(text: str) -> list[str]:
    """Split a C-style argument list at top-level commas (strings and braces kept whole)."""
    args, depth, quoted, current = [], 0, False, ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            current += ch
            if ch == "\\":
                current += text[i + 1]
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
            current += ch
        elif ch in "{[(":
            depth += 1
            current += ch
        elif ch in "}])":
            depth -= 1
            current += ch
        elif ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    if current.strip():
        args.append(current.strip())
    return args


def unquote(arg: str) -> str | None:
    if arg == "NULL":
        return None
    return arg[1:-1] if arg.startswith('"') else arg


def ns_flags(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"CLONE_NEW\w+", text))


def normalise(name: str, args: list[str], result: str, *, explain: bool) -> tuple:
    """(syscall, what it acted on, result) in a form both sources can be brought to."""
    if name in ("clone", "clone3", "unshare"):
        return ("clone" if name == "clone3" else name, ns_flags(" ".join(args)), result)
    if name == "mount":
        source = unquote(args[0])
        flags = frozenset(f for f in args[3].split("|") if f != "0")
        return (name, (source if source not in (None, "none") else None, unquote(args[1]),
                       flags), result)
    if name == "umount2":
        return (name, unquote(args[0]), result)
    if name == "pivot_root":
        return (name, (unquote(args[0]), unquote(args[1])), result)
    if name == "sethostname":
        return (name, unquote(args[0]), result)
    if name == "open_tree":
        return (name, unquote(args[0] if explain else args[1]), result)
    if name == "move_mount":
        return (name, unquote(args[1] if explain else args[3]), result)
    if name == "mount_setattr":
        return (name, "MOUNT_ATTR_IDMAP" in " ".join(args), result)
    raise AssertionError(name)


CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\d+)")


def strace_calls(text: str) -> list[tuple]:
    """The traced calls, joining `<unfinished ...>` and `<... resumed>` halves per pid."""
    calls, pending = [], {}
    for line in text.splitlines():
        pid, _, rest = line.partition(" ")
        rest = rest.strip()
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest.removesuffix("<unfinished ...>").rstrip()
            continue
        resumed = re.match(r"^<\.\.\. \w+ resumed>(.*)$", rest)
        if resumed:
            rest = pending.pop(pid, "") + resumed.group(1)
        m = CALL.match(rest)
        if m and m.group(1) in from_strace_list:
            calls.append(normalise(m.group(1), split_args(m.group(2)), m.group(3),
                                   explain=False))
    return calls


def explained_steps(stderr: str) -> list[str]:
    return [line[len("[explain] "):] for line in stderr.splitlines()
            if line.startswith("[explain] ")]


def explain_calls(stderr: str) -> list[tuple]:
    calls = []
    for step in explained_steps(stderr):
        m = CALL.match(step)
        if m and m.group(1) in from_strace_list:
            calls.append(normalise(m.group(1), split_args(m.group(2)), m.group(3),
                                   explain=True))
    return calls


REPO = Path(__file__).resolve().parent.parent
MINIBOX = REPO / ".venv" / "bin" / "minibox"


def traced_run(tmp_path: Path, *args: object) -> tuple[subprocess.CompletedProcess, str]:
    out = tmp_path / "strace.out"
    proc = subprocess.run(
        ["strace", "-f", "-qq", "-s", "4096", "-e", "trace=" + ",".join(from_strace_list),
         "-o", str(out), str(MINIBOX), "run", "--explain", *map(str, args)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, out.read_text()


@pytest.fixture
def strace_run(tmp_path):
    return lambda *args: traced_run(tmp_path, *args)


CASES = {
    "default": ["-h", "explained"],
    "userns": ["--userns", "-h", "explained"],
    "options": ["--overlay", "--read-only", "--tmpfs", "/tmp", "-v", "{vol}:/data", "-u",
                "1000", "-w", "/tmp"],
    "host-namespaces": ["--net=host", "--pid=host", "--ipc=host", "--uts=host"],
}


@pytest.mark.parametrize("case", CASES)
def test_explain_matches_strace(strace_run, rootfs, tmp_path, case):
    args = [a.format(vol=tmp_path) for a in CASES[case]]
    proc, trace = strace_run(*args, rootfs, "echo", "hi")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hi\n"
    traced = strace_calls(trace)
    told = explain_calls(proc.stderr)
    assert traced, trace
    assert told == traced, (
        "explain and strace disagree:\n"
        + "\n".join(f"{'==' if a == b else '!='} explain {a}\n   strace  {b}"
                    for a, b in itertools.zip_longest(told, traced)))


def test_explain_names_every_namespace(minibox, rootfs):
    r = minibox("--explain", "-h", "named", rootfs, "true")
    assert r.returncode == 0, r.stderr
    steps = explained_steps(r.stderr)
    created = set()
    for step in steps:
        if step.startswith(("clone(", "unshare(")):
            created |= ns_flags(step)
    assert created == NAMESPACE_FLAGS
    assert any(s.startswith("pivot_root(") for s in steps)
    assert any(s.startswith('sethostname("named")') for s in steps)
    for point in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"):
        assert any(re.match(rf'mount\("[^"]*", "[^"]*{re.escape(point)}"', s) for s in steps), \
            point


def test_explain_userns_names_the_maps(minibox, rootfs):
    r = minibox("--explain", "--userns", rootfs, "true")
    assert r.returncode == 0, r.stderr
    steps = explained_steps(r.stderr)
    clone = next(s for s in steps if s.startswith("clone(CLONE_NEW"))
    assert ns_flags(clone) >= NAMESPACE_FLAGS - {"CLONE_NEWCGROUP"} | {"CLONE_NEWUSER"}
    pid = clone.rpartition(" = ")[2]
    maps = [s for s in steps if s.startswith("write /proc/")]
    assert maps[:3] == [f'write /proc/{pid}/uid_map "0 100000 65536" = 0',
                        f'write /proc/{pid}/setgroups "deny" = 0',
                        f'write /proc/{pid}/gid_map "0 100000 65536" = 0'], maps
    # The maps are written before anything happens inside the new namespaces.
    first_mount = next(i for i, s in enumerate(steps) if s.startswith("mount("))
    assert steps.index(maps[2]) < first_mount


def test_explain_goes_to_stderr_only(minibox, rootfs):
    r = minibox("--explain", rootfs, "echo", "hello")
    assert (r.returncode, r.stdout) == (0, "hello\n")
    lines = r.stderr.splitlines()
    assert len(lines) > 20 and len(lines) % 2 == 0, r.stderr
    for first, second in zip(lines[::2], lines[1::2], strict=True):
        assert first.startswith("[explain] "), first
        # every step says why, and which man page to read
        assert re.match(r"^ +why: .+ \[[\w.-]+\(\d\)\]$", second), second


def test_explain_shows_a_refused_step(minibox, rootfs):
    r = minibox("--explain", "--tmpfs", "/tmp:no-such-option=1", rootfs, "true")
    assert r.returncode == 125, r.stderr
    lines = r.stderr.splitlines()
    refused = [s for s in explained_steps(r.stderr) if " = -1 " in s]
    assert len(refused) == 1, r.stderr
    assert refused[0].startswith('mount("tmpfs", ') and "/tmp" in refused[0]
    assert re.search(r" = -1 E[A-Z]+ \(.+\)$", refused[0]), refused[0]
    # After the story, the one-line error; nothing else.
    assert lines[-1].startswith("minibox: ") and "/tmp" in lines[-1], lines[-1]
    assert all(line.startswith(("[explain] ", "          why: ")) for line in lines[:-1])
