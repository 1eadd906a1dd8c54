"""A detached container's life: run -d, create/start, ps, logs, exec, stop, kill, pause,
wait, inspect, stats, top, restart, rm, prune, --restart, --rm, --init; what is left when
the monitor or the CLI is killed half-way; many CLIs at once; and the errors users see.

Every test drives the real `minibox` CLI as root with a private state root (`minibox
--root DIR VERB`, the fixture `box`), so the containers of other engineers on this
machine never show up in `ps` here. The fixture removes every container a test made and
fails the test if `rm -f` left anything of one behind (state, a name, a cgroup, a
process). conftest.py's leak check runs around every test as well.

Every CLI runs in a session of its own: a signal minibox sends to "pid 0" by mistake
must never reach pytest (see test_stop_during_the_restart_back_off).
"""

from __future__ import annotations

import calendar
import fcntl
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from minibox.cgroups.driver import open_group

REPO = Path(__file__).resolve().parent.parent
MINIBOX = REPO / ".venv" / "bin" / "minibox"
HEX64 = re.compile(r"\b[0-9a-f]{64}\b")
STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z")
T = TypeVar("T")


# ---------------------------------------------------------------------------------------
# The host's view of processes, cgroups and mounts
# ---------------------------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state first), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()


def start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def alive(pid: int, start: int | None = None) -> bool:
    """Running (not a zombie), and the same process if its start time is given."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z" and (start is None or int(fields[19]) == start)


def ppid(pid: int) -> int:
    fields = _stat(pid)
    assert fields, f"pid {pid} is gone"
    return int(fields[1])


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat(int(name))
            if fields and int(fields[1]) == pid:
                out.append(int(name))
    return out


def pids() -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def procs_of(group_dir: str) -> list[str]:
    try:
        return (Path(group_dir) / "cgroup.procs").read_text().split()
    except OSError:
        return []


def cgroup_mounts() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] in ("cgroup", "cgroup2"):
                points.append(left.split()[4])
    return list(dict.fromkeys(points))


def cgroup_dirs_named(names: set[str]) -> list[str]:
    """Every directory, in every cgroup hierarchy under /sys/fs/cgroup, named one of `names`."""
    hits = []
    for point in cgroup_mounts():
        for top, dirs, _files in os.walk(point):
            hits += [os.path.join(top, d) for d in dirs if d in names]
    return hits


def host_mounts_mentioning(*words: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.strip() for line in f if any(w in line for w in words)]


def wait_until(probe: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """probe()'s first truthy value, or fail naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s (last: {value!r})", pytrace=False)
        time.sleep(every)


# ---------------------------------------------------------------------------------------
# minibox on a private state root
# ---------------------------------------------------------------------------------------

class Box:
    """`minibox --root ROOT VERB ...`, remembering every container id it was told of."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ids: set[str] = set()
        self.groups_before: set[str] = set()
        root.mkdir(mode=0o700)

    def argv(self, *args: object) -> list[str]:
        return [str(MINIBOX), "--root", str(self.root), *map(str, args)]

    def __call__(self, *args: object, input: str | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(*args), input=input, capture_output=True, text=True,
                           timeout=timeout, cwd=REPO, start_new_session=True,
                           stdin=None if input is not None else subprocess.DEVNULL)
        assert "Traceback" not in r.stderr, f"minibox {args} crashed:\n{r.stderr}"
        if args and args[0] in ("run", "create", "ps"):
            self.ids.update(HEX64.findall(r.stdout))
        return r

    def ok(self, *args: object, timeout: float = 60) -> str:
        r = self(*args, timeout=timeout)
        assert r.returncode == 0, f"minibox {' '.join(map(str, args))} -> {r.returncode}: " \
                                  f"{r.stderr}{r.stdout}"
        return r.stdout

    def run_d(self, *args: object) -> str:
        out = self.ok("run", "-d", *args)
        assert re.fullmatch(r"[0-9a-f]{64}\n", out), f"run -d printed {out!r}"
        return out.strip()

    def create(self, *args: object) -> str:
        out = self.ok("create", *args)
        assert re.fullmatch(r"[0-9a-f]{64}\n", out), f"create printed {out!r}"
        return out.strip()

    def inspect(self, ref: str) -> dict:
        return json.loads(self.ok("inspect", ref))[0]

    def ps(self, *args: object) -> list[dict]:
        """`ps --format json ARGS` (add "-a" for all), one dict a container."""
        return [json.loads(line) for line in self.ok("ps", "--format", "json", *args)
                .splitlines()]

    def ps_state(self, name: str) -> str | None:
        rows = [r for r in self.ps("-a", "--filter", f"name={name}") if r["Names"] == name]
        assert len(rows) <= 1, rows
        return rows[0]["State"] if rows else None

    def logs(self, ref: str, *args: object) -> str:
        return self.ok("logs", *args, ref)

    def dirs(self) -> list[str]:
        try:
            return sorted(os.listdir(self.root / "containers"))
        except FileNotFoundError:
            return []

    def names(self) -> list[str]:
        try:
            return sorted(os.listdir(self.root / "names"))
        except FileNotFoundError:
            return []


def _group_parents() -> list[str]:
    """The directories this session's containers' cgroups are made in (`.../minibox`)."""
    return sorted({os.path.dirname(d) for d in open_group("0" * 64).dirs})


def _group_children() -> set[str]:
    found = set()
    for parent in _group_parents():
        try:
            found.update(os.path.join(parent, n) for n in os.listdir(parent)
                         if os.path.isdir(os.path.join(parent, n)))
        except FileNotFoundError:
            pass
    return found


@pytest.fixture
def box(tmp_path: Path, rootfs: str) -> Iterator[Box]:
    """A private state root; at the end `rm -f` of every container, and nothing may stay."""
    groups_before = _group_children()
    b = Box(tmp_path / "state")
    b.groups_before = groups_before
    yield b
    refs = sorted(b.ids | set(b.dirs()))
    if refs:
        b("rm", "-f", *refs, timeout=120)
    new_groups: set[str] = set()

    def settled() -> bool:
        nonlocal new_groups
        new_groups = _group_children() - groups_before
        return not (b.dirs() or b.names() or new_groups)

    deadline = time.monotonic() + 5
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.1)
    if settled():
        return
    # Something of a container survived `rm -f`: report it, then clear it by hand (its
    # processes are this test's containers), so the machine stays clean for the others.
    report = [f"state: {b.root}/containers/{d}" for d in b.dirs()]
    report += [f"name: {b.root}/names/{n}" for n in b.names()]
    for d in sorted(new_groups):
        report.append(f"cgroup: {d} (processes: {[cmdline(int(p)) for p in procs_of(d)]})")
    for d in sorted(new_groups):
        open_group(os.path.basename(d)).remove()
    shutil.rmtree(b.root, ignore_errors=True)
    pytest.fail("`minibox rm -f` of every container left behind:\n  " + "\n  ".join(report),
                pytrace=False)


def one_error(r: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """The command failed with `code` and said so on one line of stderr naming `fragments`."""
    lines = r.stderr.strip().splitlines()
    assert (r.returncode, len(lines)) == (code, 1), \
        f"{r.args[3:]}: want exit {code} and one line, got {r.returncode}: {r.stderr!r}"
    line = lines[0]
    assert line.startswith("minibox: "), line
    for frag in fragments:
        assert frag.lower() in line.lower(), f"{frag!r} not in {line!r}"
    return line


def proc_rows(procs: list[dict], name: str) -> list[dict]:
    return [p for p in procs if p["Names"] == name]


# ---------------------------------------------------------------------------------------
# run -d, ps, logs
# ---------------------------------------------------------------------------------------

def test_run_d_prints_an_id_and_ps_lists_it(box, rootfs):
    cid = box.run_d("--name", "web", rootfs, "sleep", "1000")
    done = box.run_d("--name", "done", rootfs, "sh", "-c", "exit 3")
    assert box.ok("wait", "done") == "3\n"

    table = box.ok("ps").splitlines()
    assert table[0].split()[:3] == ["CONTAINER", "ID", "IMAGE"]
    assert len(table) == 2 and table[1].startswith(cid[:12] + " "), table
    assert table[1].split()[-1] == "web" and " Up " in table[1], table[1]
    assert box.ok("ps", "-q") == cid[:12] + "\n"
    assert box.ok("ps", "-q", "--no-trunc") == cid + "\n"
    assert set(box.ok("ps", "-a", "-q").split()) == {cid[:12], done[:12]}

    assert box.ok("ps", "-q", "--filter", "status=running") == cid[:12] + "\n"
    assert box.ok("ps", "-q", "--filter", "status=exited") == done[:12] + "\n"
    assert box.ok("ps", "-q", "--filter", "name=web") == cid[:12] + "\n"
    assert box.ok("ps", "-q", "-a", "--filter", "name=done") == done[:12] + "\n"
    assert box.ok("ps", "-q", "-a", "--filter", "name=nothing-is-called-this") == ""
    assert box.ok("ps", "-q", "--filter", f"id={cid[:5]}") == cid[:12] + "\n"

    rows = box.ps("-a")
    assert [r["Names"] for r in rows] == ["done", "web"]  # newest first, as docker
    web, = proc_rows(rows, "web")
    assert (web["ID"], web["State"], web["Image"]) == (cid[:12], "running", rootfs)
    assert web["Status"].startswith("Up ") and web["Command"] == '"sleep 1000"'
    pid = box.inspect("web")["State"]["Pid"]
    assert web["Pid"] == pid and cmdline(pid) == "sleep 1000"
    exited, = proc_rows(rows, "done")
    assert (exited["State"], exited["ExitCode"]) == ("exited", 3)
    assert exited["Status"].startswith("Exited (3) ")


def test_logs_streams_tail_and_timestamps(box, rootfs):
    before = time.time()
    box.run_d("--name", "talk", rootfs, "sh", "-c",
              "echo to-stderr >&2; sleep 0.2; for i in 1 2 3 4 5; do echo line $i; done; "
              "exec sleep 1000")
    wait_until(lambda: "line 5" in box.logs("talk"), 15, "all five lines in the log")
    r = box("logs", "talk")
    assert r.stdout == "".join(f"line {i}\n" for i in range(1, 6))
    assert r.stderr == "to-stderr\n"  # the stream a line came on is kept

    assert box.logs("talk", "--tail", "2") == "line 4\nline 5\n"
    assert box.logs("talk", "-n", "1") == "line 5\n"
    assert box.logs("talk", "--tail", "0") == ""
    assert box.logs("talk", "--tail", "all").count("\n") == 5

    stamped = box.logs("talk", "-t", "--tail", "3").splitlines()
    assert len(stamped) == 3
    for i, line in zip((3, 4, 5), stamped, strict=True):
        stamp, _, text = line.partition(" ")
        m = STAMP.fullmatch(stamp)
        assert m and text == f"line {i}", line
        t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
        assert before - 5 <= t <= time.time() + 5, f"{stamp} is not the time of the run"


class Lines:
    """Lines from a child's stdout pipe, each waited for with a timeout."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.fd = proc.stdout.fileno()
        self.buf = b""
        self.eof = False

    def next(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                data = os.read(self.fd, 65536)
                self.buf += data
                self.eof = not data
        if b"\n" not in self.buf:
            return None
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()


def _follow(box: Box, ref: str) -> subprocess.Popen:
    return subprocess.Popen(box.argv("logs", "-f", ref), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=REPO,
                            start_new_session=True)


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()


def test_logs_follow_prints_new_lines(box, rootfs):
    box.run_d("--name", "fol", rootfs, "sh", "-c", "echo one; echo two; exec sleep 1000")
    wait_until(lambda: "two" in box.logs("fol"), 15, "the first lines in the log")
    follower = _follow(box, "fol")
    try:
        lines = Lines(follower)
        assert [lines.next(15), lines.next(15)] == ["one", "two"]
        assert lines.next(0.5) is None and follower.poll() is None  # still following
        # A line the container writes later: an exec'd shell writes to PID 1's stdout.
        box.ok("exec", "fol", "sh", "-c", "echo three > /proc/1/fd/1")
        assert lines.next(15) == "three"
        assert follower.poll() is None
        os.kill(follower.pid, signal.SIGTERM)  # ended by us, by its pid
        assert follower.wait(timeout=15) == -signal.SIGTERM
    finally:
        _end(follower)

    # A follower ends by itself once the container's end is recorded.
    follower = _follow(box, "fol")
    try:
        lines = Lines(follower)
        assert [lines.next(15) for _ in range(3)] == ["one", "two", "three"]
        box.ok("kill", "fol")
        assert lines.next(20) is None and lines.eof, "logs -f did not end with the container"
        assert follower.wait(timeout=15) == 0
    finally:
        _end(follower)


# ---------------------------------------------------------------------------------------
# exec
# ---------------------------------------------------------------------------------------

def test_exec_joins_the_containers_namespaces_and_sees_its_files(box, rootfs):
    cid = box.run_d("--name", "ex", "--tmpfs", "/tmp", rootfs, "sh", "-c",
                    "hostname > /tmp/host; echo from-init > /tmp/proof; exec sleep 1000")
    # The file lives on a tmpfs mounted in the container's mount namespace only.
    wait_until(lambda: box("exec", "ex", "cat", "/tmp/proof").stdout == "from-init\n", 15,
               "exec sees the file the init wrote")
    host = box.ok("exec", "ex", "hostname")
    assert host == box.ok("exec", "ex", "cat", "/tmp/host") == cid[:12] + "\n"
    assert box.inspect("ex")["Config"]["Hostname"] == cid[:12]
    assert not (Path(rootfs) / "tmp" / "proof").exists()

    assert int(box.ok("exec", "ex", "sh", "-c", "echo $$")) > 1
    ps = [line.split(None, 2) for line in box.ok("exec", "ex", "ps").splitlines()[1:]]
    assert ["1", "root", "sleep 1000"] in ps, ps  # PID 1 is the container's init

    pid = box.inspect("ex")["State"]["Pid"]
    out = box.ok("exec", "ex", "sh", "-c",
                 "for n in cgroup ipc mnt net pid uts; do echo $n $(readlink /proc/self/ns/$n); "
                 "done")
    seen = dict(line.split() for line in out.splitlines())
    for ns, link in seen.items():
        assert link == os.readlink(f"/proc/{pid}/ns/{ns}"), ns
        assert link != os.readlink(f"/proc/self/ns/{ns}"), f"{ns} is the host's"
    # It joined the container's cgroup, the root of its cgroup namespace, everywhere.
    groups = box.ok("exec", "ex", "cat", "/proc/self/cgroup").splitlines()
    assert groups and all(g.endswith(":/") for g in groups), groups
    # Nothing of the exec'd commands stays in the container.
    assert wait_until(lambda: open_group(cid).pids() == [pid], 10,
                      "only the init left in the group")


def test_exec_env_workdir_user_and_exit_code(box, rootfs):
    box.run_d("--name", "ew", "-e", "FROM_RUN=run", rootfs, "sleep", "1000")
    out = box.ok("exec", "-e", "FOO=bar baz", "-e", "FROM_RUN=exec", "-w", "/tmp", "-u",
                 "1000:1000", "ew", "sh", "-c", 'echo "$FOO|$FROM_RUN"; pwd; id -u; id -g')
    assert out.splitlines() == ["bar baz|exec", "/tmp", "1000", "1000"]
    out = box.ok("exec", "ew", "sh", "-c", 'echo "$FROM_RUN"; pwd; id -u')
    assert out.splitlines() == ["run", "/", "0"]  # the container's own defaults
    assert box("exec", "ew", "sh", "-c", "exit 7").returncode == 7
    assert box("exec", "ew", "sh", "-c", "kill -9 $$").returncode == 137
    one_error(box("exec", "ew", "no-such-command"), 127, "no-such-command")
    one_error(box("exec", "-w", "/no/such/dir", "ew", "true"), 126, "/no/such/dir")


def test_exec_t_gets_a_terminal(box, rootfs):
    box.run_d("--name", "tt", rootfs, "sleep", "1000")
    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))

    def controlling_tty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        box.argv("exec", "-t", "tt", "sh", "-c",
                 "[ -t 0 ] && [ -t 1 ] && echo both-ttys; echo TERM=$TERM; stty size; tty; "
                 "exit 4"),
        stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_tty, cwd=REPO)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the last slave is closed
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    assert b"Traceback" not in out, out
    lines = out.decode(errors="replace").split("\r\n")
    assert lines[:3] == ["both-ttys", "TERM=xterm", "33 101"], out
    assert code == 4, out
    # The terminal has a name inside the container, as with docker exec -t (/dev/pts/N).
    assert re.fullmatch(r"/dev/pts/\d+", lines[3]), f"`tty` in exec -t said {lines[3]!r}"


# ---------------------------------------------------------------------------------------
# stop, kill, pause
# ---------------------------------------------------------------------------------------

def test_stop_waits_the_grace_time_then_kills(box, rootfs):
    box.run_d("--name", "slp", rootfs, "sleep", "1000")
    ins = box.inspect("slp")["State"]
    pid, mon = ins["Pid"], ins["MonitorPid"]
    started = time.monotonic()
    assert box.ok("stop", "-t", "1", "slp") == "slp\n"
    took = time.monotonic() - started
    # sleep as PID 1 has no SIGTERM handler, so only the SIGKILL after 1 s ends it.
    assert 0.9 <= took < 8, took
    state = box.inspect("slp")["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 137, False)
    assert box.ps("-a")[0]["Status"].startswith("Exited (137) ")
    assert wait_until(lambda: not alive(pid) and not alive(mon), 10, "init and monitor gone")
    assert box.ok("stop", "slp") == "slp\n"  # stopping a stopped container succeeds

    # With --init, minibox-init forwards the SIGTERM: the command ends at once.
    box.run_d("--name", "ini", "--init", rootfs, "sleep", "1000")
    started = time.monotonic()
    assert box.ok("stop", "ini") == "ini\n"  # the default grace is 10 s
    took = time.monotonic() - started
    assert took < 5, took
    assert box.inspect("ini")["State"]["ExitCode"] == 143


def test_kill_delivers_the_signal_to_the_init(box, rootfs):
    box.run_d("--name", "sig", rootfs, "sh", "-c",
              'trap "echo got-usr1" USR1; trap "echo got-term; exit 9" TERM; echo ready; '
              "while :; do sleep 0.1; done")
    wait_until(lambda: "ready" in box.logs("sig"), 15, "the traps set")
    assert box.ok("kill", "-s", "USR1", "sig") == "sig\n"
    wait_until(lambda: box.logs("sig").count("got-usr1") == 1, 15, "the trap ran")
    # One at a time: a second SIGUSR1 sent while one is pending merges with it (signal(7)).
    box.ok("kill", "--signal", "SIGUSR1", "sig")
    wait_until(lambda: box.logs("sig").count("got-usr1") == 2, 15, "the second USR1 seen")
    box.ok("kill", "-s", "10", "sig")
    wait_until(lambda: box.logs("sig").count("got-usr1") == 3, 15, "the third USR1 seen")
    assert box.inspect("sig")["State"]["Status"] == "running"
    box.ok("kill", "-s", "TERM", "sig")
    assert box.ok("wait", "sig") == "9\n"
    assert box.logs("sig").endswith("got-term\n")

    box.run_d("--name", "k9", rootfs, "sleep", "1000")
    assert box.ok("kill", "k9") == "k9\n"  # SIGKILL unless told otherwise
    assert box.ok("wait", "k9") == "137\n"


def test_pause_stops_cpu_use_and_unpause_resumes_it(box, rootfs):
    cid = box.run_d("--name", "spin", rootfs, "sh", "-c", "while :; do :; done")
    group = open_group(cid)

    def cpu() -> int:
        return group.stats()["cpu_usage_ns"]

    def cpu_over(seconds: float) -> int:
        first = cpu()
        time.sleep(seconds)
        return cpu() - first

    assert cpu_over(0.5) > 0
    assert box.ok("pause", "spin") == "spin\n"
    assert group.frozen()
    state = box.inspect("spin")["State"]
    assert (state["Status"], state["Paused"], state["Running"]) == ("paused", True, True)
    row, = box.ps()  # a paused container is listed without -a
    assert row["State"] == "paused" and row["Status"].endswith("(Paused)"), row
    assert box.ok("ps", "-q", "--filter", "status=paused") == cid[:12] + "\n"
    assert box.ok("ps", "-q", "--filter", "status=running") == ""
    time.sleep(0.2)  # the last tick of accounting
    assert cpu_over(1.0) == 0, "a frozen container used CPU"
    stats = json.loads(box.ok("stats", "--no-stream", "--format", "json", "spin"))
    assert stats["CPUPerc"] == "0.00%", stats

    one_error(box("pause", "spin"), 1, "already paused")
    one_error(box("exec", "spin", "true"), 1, "paused")

    assert box.ok("unpause", "spin") == "spin\n"
    assert not group.frozen()
    assert box.inspect("spin")["State"]["Status"] == "running"
    assert cpu_over(1.0) > 20_000_000, "the thawed loop did not run"
    stats = json.loads(box.ok("stats", "--no-stream", "--format", "json", "spin"))
    assert float(stats["CPUPerc"].rstrip("%")) > 0, stats
    one_error(box("unpause", "spin"), 1, "not paused")

    # A paused container can still be killed and removed.
    box.ok("pause", "spin")
    assert box.ok("rm", "-f", "spin") == "spin\n"
    assert box.dirs() == [] and not any(os.path.exists(d) for d in group.dirs)


# ---------------------------------------------------------------------------------------
# wait, inspect, stats, top
# ---------------------------------------------------------------------------------------

def test_wait_prints_the_exit_code_also_for_rm(box, rootfs):
    box.run_d("--name", "w3", rootfs, "sh", "-c", "sleep 0.5; exit 3")
    box.run_d("--name", "w0", rootfs, "true")
    assert box.ok("wait", "w3", "w0") == "3\n0\n"
    assert box.ok("wait", "w3") == "3\n"  # again, once it has ended

    cid = box.run_d("--rm", "--name", "gone", rootfs, "sh", "-c", "sleep 0.5; exit 5")
    assert box.ok("wait", cid) == "5\n"
    wait_until(lambda: cid not in box.dirs() and box.names() == ["w0", "w3"], 10,
               "the --rm container removed")
    one_error(box("inspect", "gone"), 1, "No such container: gone")
    assert not any(os.path.exists(d) for d in open_group(cid).dirs)


def test_rm_flag_removes_the_container_when_it_ends(box, rootfs):
    cid = box.run_d("--rm", rootfs, "sh", "-c", "sleep 0.3")
    assert box.ps_state(box.inspect(cid)["Name"][1:]) == "running"
    wait_until(lambda: box.dirs() == [] and box.names() == [], 15, "--rm removed it")
    assert box.ok("ps", "-a", "-q") == ""
    assert cgroup_dirs_named({cid}) == []


def test_inspect_stats_and_top_tell_the_truth(box, rootfs):
    cid = box.run_d("--name", "insp", "-e", "A=1", rootfs, "sh", "-c",
                    "sleep 1000 & exec sleep 1001")
    wait_until(lambda: len(open_group(cid).pids()) == 2, 15, "two processes in the container")
    ins = box.inspect("insp")
    assert (ins["Id"], ins["Name"], ins["Path"], ins["Args"]) == \
        (cid, "/insp", "sh", ["-c", "sleep 1000 & exec sleep 1001"])
    assert "A=1" in ins["Config"]["Env"] and ins["RestartCount"] == 0
    state = ins["State"]
    pid, mon = state["Pid"], state["MonitorPid"]
    assert (state["Status"], state["Running"], state["Paused"]) == ("running", True, False)
    assert pid > 0 and cmdline(pid) == "sleep 1001"
    assert ppid(pid) == mon and comm(mon) == "minibox-monitor"
    assert STAMP.fullmatch(state["StartedAt"]) and state["FinishedAt"] is None

    spaces = ins["Namespaces"]
    assert {"cgroup", "ipc", "mnt", "net", "pid", "uts"} <= set(spaces), spaces
    for ns, link in spaces.items():
        assert link == os.readlink(f"/proc/{pid}/ns/{ns}"), ns
    for ns in ("cgroup", "ipc", "mnt", "net", "pid", "uts"):
        assert spaces[ns] != os.readlink(f"/proc/self/ns/{ns}"), f"{ns} is the host's"
    assert ins["CgroupPaths"], ins
    for d in ins["CgroupPaths"]:
        assert str(pid) in (Path(d) / "cgroup.procs").read_text().split(), d

    stats = json.loads(box.ok("stats", "--no-stream", "--format", "json", "insp"))
    assert (stats["ID"], stats["Name"], stats["PIDs"]) == (cid[:12], "insp", "2"), stats
    used = re.fullmatch(r"([\d.]+)(B|KiB|MiB|GiB) / [\d.]+(B|KiB|MiB|GiB|TiB)",
                        stats["MemUsage"])
    assert used and float(used.group(1)) > 0, stats
    raw = open_group(cid).stats()
    assert raw["memory_usage"] > 0 and raw["pids"] == 2 and raw["cpu_usage_ns"] > 0, raw
    # Without a name, stats lists the running containers only.
    box.run_d("--name", "short", rootfs, "true")
    box.ok("wait", "short")
    listed = [json.loads(line)["Name"] for line in
              box.ok("stats", "--no-stream", "--format", "json").splitlines()]
    assert listed == ["insp"]

    rows = [line.split(None, 3) for line in box.ok("top", "insp").splitlines()]
    assert rows[0][:3] == ["UID", "PID", "CONTAINER"] and rows[0][3].split() == ["PID", "CMD"]
    by_ns_pid = {r[2]: (int(r[1]), r[3]) for r in rows[1:]}
    assert by_ns_pid["1"] == (pid, "sleep 1001")
    assert by_ns_pid["2"][1] == "sleep 1000" and ppid(by_ns_pid["2"][0]) == pid

    box.ok("kill", "insp")
    box.ok("wait", "insp")
    done = box.inspect("insp")
    assert (done["State"]["Pid"], done["State"]["ExitCode"]) == (0, 137)
    assert done["Namespaces"] == {} and done["CgroupPaths"] == []
    assert STAMP.fullmatch(done["State"]["FinishedAt"])
    one_error(box("top", "insp"), 1, "is not running")


# ---------------------------------------------------------------------------------------
# create, start, restart
# ---------------------------------------------------------------------------------------

def test_create_runs_nothing_until_start_and_start_runs_it_again(box, rootfs, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    cid = box.create("--name", "cs", "-v", f"{vol}:/data", rootfs, "sh", "-c",
                     "echo ran >> /data/runs; echo said-so")
    time.sleep(1)  # time enough for a command that had been let run
    assert not (vol / "runs").exists(), "the command ran before start"
    assert box.inspect("cs")["State"]["Status"] == "created"
    assert box.ok("ps", "-q") == ""  # not running: only with -a
    assert box.ok("ps", "-q", "--filter", "status=created") == cid[:12] + "\n"
    assert box.ps("-a")[0]["Status"] == "Created"
    assert box.logs("cs") == ""

    assert box.ok("start", "cs") == "cs\n"
    assert box.ok("wait", "cs") == "0\n"
    assert (vol / "runs").read_text() == "ran\n"
    assert box.logs("cs") == "said-so\n"

    assert box.ok("start", "cs") == "cs\n"  # a stopped container runs again
    assert box.ok("wait", "cs") == "0\n"
    assert (vol / "runs").read_text() == "ran\nran\n"
    assert box.logs("cs") == "said-so\nsaid-so\n"
    assert box.inspect("cs")["State"]["Status"] == "exited"


def test_restart_stops_then_starts_again(box, rootfs, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    box.run_d("--name", "rs", "-v", f"{vol}:/data", rootfs, "sh", "-c",
              'trap "exit 0" TERM; echo up >> /data/ups; while :; do sleep 0.1; done')
    wait_until(lambda: (vol / "ups").exists(), 15, "the first start")
    first = box.inspect("rs")["State"]["Pid"]
    started = time.monotonic()
    assert box.ok("restart", "-t", "10", "rs") == "rs\n"
    assert time.monotonic() - started < 8  # the init's trap ended it, no SIGKILL needed
    state = box.inspect("rs")["State"]
    assert state["Status"] == "running" and state["Pid"] != first and alive(state["Pid"])
    assert not alive(first)
    wait_until(lambda: (vol / "ups").read_text() == "up\nup\n", 15, "the second start")

    box.ok("stop", "rs")
    assert box.inspect("rs")["State"]["ExitCode"] == 0
    box.ok("restart", "rs")  # restart of a stopped container starts it
    assert box.inspect("rs")["State"]["Status"] == "running"
    wait_until(lambda: (vol / "ups").read_text() == "up\nup\nup\n", 15, "the third start")


# ---------------------------------------------------------------------------------------
# Leaving nothing behind
# ---------------------------------------------------------------------------------------

def test_rm_f_of_a_running_container_leaves_nothing(box, rootfs, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    cid = box.run_d("--name", "full", "--overlay", "--tmpfs", "/scratch", "-v",
                    f"{vol}:/data", rootfs, "sh", "-c", "sleep 1000 & exec sleep 1001")
    group = open_group(cid)
    wait_until(lambda: len(group.pids()) == 2, 15, "both processes up")
    state = box.inspect(cid)["State"]
    procs = [(p, start_time(p)) for p in [*group.pids(), state["MonitorPid"]]]
    assert state["Pid"] in dict(procs) and all(alive(p, s) for p, s in procs)
    assert cgroup_dirs_named({cid}), "the container has no cgroup to check"

    assert box.ok("rm", "-f", "full") == "full\n"
    assert [p for p, s in procs if alive(p, s)] == [], "a process of it lived on"
    assert box.dirs() == [] and box.names() == []
    assert cgroup_dirs_named({cid}) == []
    assert host_mounts_mentioning(cid, str(box.root), str(vol)) == []
    one_error(box("inspect", "full"), 1, "No such container: full")
    assert vol.is_dir()  # a volume is the user's: it stays


def test_killed_monitor_leaves_the_container_running_and_ps_truthful(box, rootfs):
    cid = box.run_d("--name", "orphan", rootfs, "sleep", "1000")
    state = box.inspect("orphan")["State"]
    pid, mon = state["Pid"], state["MonitorPid"]
    init = (pid, start_time(pid))
    assert comm(mon) == "minibox-monitor" and ppid(pid) == mon
    os.kill(mon, signal.SIGKILL)
    wait_until(lambda: not alive(mon), 10, "the monitor gone")

    assert alive(*init), "killing the monitor killed the container"
    assert box.ok("ps", "-q", "--filter", "status=running") == cid[:12] + "\n"
    assert box.inspect("orphan")["State"]["Running"] is True
    assert box.ok("exec", "orphan", "echo", "still-here") == "still-here\n"

    assert box.ok("kill", "orphan") == "orphan\n"
    wait_until(lambda: not alive(*init), 10, "the init gone")
    wait_until(lambda: box.ps_state("orphan") == "exited", 10, "ps says exited")
    assert box.ok("ps", "-q") == ""
    assert box.inspect("orphan")["State"]["Running"] is False
    assert box.ok("rm", "orphan") == "orphan\n"  # stopped: no -f needed
    assert box.dirs() == [] and box.names() == []
    assert cgroup_dirs_named({cid}) == []


def _kill_cli_when(box: Box, name: str, rootfs: str, ready: Callable[[], bool] | None,
                   delay: float = 0.0) -> subprocess.Popen:
    """Start `run -d --name NAME`, SIGKILL it after `delay` or as soon as ready() holds."""
    cli = subprocess.Popen(box.argv("run", "-d", "--name", name, rootfs, "sleep", "1000"),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, cwd=REPO, start_new_session=True)
    if ready is None:
        time.sleep(delay)
    else:
        deadline = time.monotonic() + 30
        while cli.poll() is None and not ready() and time.monotonic() < deadline:
            pass  # busy: the moment matters
    try:
        os.kill(cli.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    out, _err = cli.communicate(timeout=30)
    box.ids.update(HEX64.findall(out.decode()))
    return cli


def _honest(box: Box, names: list[str]) -> list[str]:
    """What ps -a says of each container that does not match the processes on the host."""
    problems = []
    rows = {r["Names"]: r for r in box.ps("-a", "--no-trunc")}
    for name in names:
        row = rows.get(name)
        if row is None:
            continue
        group = open_group(row["ID"]).pids()
        if row["State"] == "running":
            pid = box.inspect(name)["State"]["Pid"]
            if not alive(pid) or cmdline(pid) != "sleep 1000" or group != [pid]:
                problems.append(f"{name}: ps says running, but its pid {pid} is "
                                f"{cmdline(pid)!r}, its group holds {group}")
        elif row["State"] == "exited" and group:
            problems.append(f"{name}: ps says exited, but its group holds "
                            f"{[cmdline(p) for p in group]}")
    return problems


def _everything_removed(box: Box, names: list[str]) -> list[str]:
    """rm -f of all ps -a lists, then prune: what of the containers is still there."""
    listed = box.ok("ps", "-a", "-q", "--no-trunc").split()
    if listed:
        box.ok("rm", "-f", *listed)
    box.ok("prune", "-f")
    time.sleep(0.5)
    problems = [f"{box.root}/containers/{d} (not in ps -a: {d not in listed})"
                for d in box.dirs()]
    problems += [f"{box.root}/names/{n} -> {os.readlink(box.root / 'names' / n)}"
                 for n in box.names()]
    groups = set(cgroup_dirs_named(box.ids | set(box.dirs())))
    groups |= _group_children() - box.groups_before
    problems += [f"cgroup {d} holding {[cmdline(int(p)) for p in procs_of(d)]}"
                 for d in sorted(groups)]
    problems += [f"process {p}: {cmdline(p)}" for p in pids()
                 if p != os.getpid() and str(box.root) in cmdline(p)]
    return problems



def test_cli_killed_during_run_d_at_any_moment(box, rootfs):
    names = [f"k{i}" for i in range(6)]
    history: dict[str, list[str | None]] = {}
    for name, delay in zip(names, (0.01, 0.02, 0.03, 0.04, 0.05, 0.035), strict=True):
        _kill_cli_when(box, name, rootfs, None, delay)
        box.ids.update(box.dirs())
        history[name] = [box.ps_state(name)]
    time.sleep(1)  # what the killed CLI had forked has finished by now
    for name in names:
        history[name].append(box.ps_state(name))
    # Once exited, a container stays exited until someone starts it.
    flips = {n: h for n, h in history.items() if h[0] == "exited" and h[1] != "exited"}
    problems = [f"{n}: ps said {h[0]}, then {h[1]}" for n, h in flips.items()]
    problems += _honest(box, names)
    problems += _everything_removed(box, names)
    assert not problems, "\n".join([f"ps -a states, then 1 s later: {history}", *problems])
    for name in names:  # every name is free again
        box.run_d("--name", name, rootfs, "true")


def test_cli_killed_while_writing_the_state_leaves_no_hidden_container(box, rootfs):
    cdir = box.root / "containers"

    def made() -> bool:
        try:
            return bool(os.listdir(cdir))
        except FileNotFoundError:
            return False

    names = ["half0", "half1", "half2"]
    for name in names:
        _kill_cli_when(box, name, rootfs, made)  # the moment its directory appears
        time.sleep(0.5)
        box.ids.update(box.dirs())
        listed = box.ok("ps", "-a", "-q", "--no-trunc").split()
        hidden = {d: sorted(os.listdir(cdir / d)) for d in box.dirs() if d not in listed}
        assert hidden == {}, f"{name}: container directories that ps -a does not show"
        assert _everything_removed(box, [name]) == []
        assert box.run_d("--name", name, rootfs, "true")  # the name can be used again


def _settled(box: Box, name: str) -> str | None:
    state = box.ps_state(name)
    return state if state in ("running", "exited") else None


def test_ps_is_honest_while_a_killed_clis_container_is_still_being_made(box, rootfs):
    """The CLI is SIGKILLed after it forked the monitor-to-be, which carries on making the
    container. While it does (held with SIGSTOP, as a slow machine would), ps must not
    call the container exited, for it runs a moment later."""
    seen: dict[str, tuple[str | None, str | None, int]] = {}
    # The maker may finish before it is caught (it takes milliseconds, fewer as minibox
    # gets faster): try up to twenty containers until two were caught while being made.
    for name in (f"slow{i}" for i in range(20)):
        if sum(1 for _d, _a, c in seen.values() if c > 0) >= 2:
            break
        before = set(box.dirs())
        tail = " ".join(box.argv("run", "-d", "--name", name, rootfs, "sleep", "1000")[1:])

        def forked(before: set[str] = before, tail: str = tail) -> bool:
            """The container's directory exists and the CLI has forked its maker."""
            if not set(box.dirs()) - before:
                return False
            return len([p for p in pids() if cmdline(p).endswith(tail)]) >= 2

        cli = _kill_cli_when(box, name, rootfs, forked)
        tail = " ".join(cli.args[1:])
        creators = [p for p in pids() if p != cli.pid and cmdline(p).endswith(tail)]
        for p in creators:
            os.kill(p, signal.SIGSTOP)
        try:
            during = box.ps_state(name)
        finally:
            for p in creators:
                os.kill(p, signal.SIGCONT)
        after = wait_until(lambda n=name: _settled(box, n), 15, f"{name} settled")
        seen[name] = (during, after, len(creators))
    assert sum(1 for _d, _a, c in seen.values() if c > 0) >= 2, \
        f"fewer than two creators caught in twenty tries: {seen}"
    assert not [n for n, (d, a, _c) in seen.items() if d == "exited" and a == "running"], \
        f"ps said exited while the container was being made, then running: {seen}"
    assert _honest(box, list(seen)) == []


def test_fifty_containers_from_parallel_clis(box, rootfs):
    names = [f"p{i}" for i in range(50)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(
            lambda n: box("run", "-d", "--name", n, rootfs, "sleep", "1000", timeout=180),
            names))
    failed = [(n, r.returncode, r.stderr) for n, r in zip(names, results, strict=True)
              if r.returncode]
    assert failed == []
    ids = [r.stdout.strip() for r in results]
    assert all(HEX64.fullmatch(i) for i in ids) and len(set(ids)) == 50

    listed = box.ok("ps", "-a", "-q", "--no-trunc").split()
    assert len(listed) == 50 and set(listed) == set(ids)
    rows = box.ps("-a", "--no-trunc")
    assert sorted(r["Names"] for r in rows) == sorted(names)
    assert {r["State"] for r in rows} == {"running"}
    assert {r["Names"]: r["ID"] for r in rows} == dict(zip(names, ids, strict=True))
    inits = [(r["Pid"], start_time(r["Pid"])) for r in rows]
    assert all(alive(p, s) for p, s in inits) and len({p for p, _s in inits}) == 50

    with ThreadPoolExecutor(max_workers=10) as pool:
        removed = list(pool.map(lambda i: box("rm", "-f", i, timeout=180), ids))
    assert [(r.returncode, r.stderr) for r in removed if r.returncode] == []
    assert box.ok("ps", "-a", "-q") == ""
    assert box.dirs() == [] and box.names() == []
    assert [p for p, s in inits if alive(p, s)] == []
    assert cgroup_dirs_named(set(ids)) == []


# ---------------------------------------------------------------------------------------
# --restart, --init
# ---------------------------------------------------------------------------------------

def test_restart_on_failure_runs_the_command_three_times(box, rootfs):
    box.run_d("--name", "flaky", "--restart", "on-failure:2", rootfs, "sh", "-c",
              "echo run; exit 1")
    assert box.ok("wait", "flaky") == "1\n"
    ins = box.inspect("flaky")
    assert (ins["State"]["Status"], ins["State"]["ExitCode"], ins["RestartCount"]) == \
        ("exited", 1, 2)
    assert ins["HostConfig"]["RestartPolicy"] == {"name": "on-failure", "max": 2}
    assert box.logs("flaky") == "run\n" * 3
    time.sleep(1)  # and no fourth run
    assert box.logs("flaky") == "run\n" * 3
    assert box.ps("-a")[0]["Status"].startswith("Exited (1) ")

    box.run_d("--name", "fine", "--restart", "on-failure", rootfs, "sh", "-c", "echo ok")
    assert box.ok("wait", "fine") == "0\n"
    assert box.inspect("fine")["RestartCount"] == 0


def test_stop_during_the_restart_back_off(box, rootfs):
    """Between two runs of a --restart container (the back-off), `stop` must end it for
    good, and act on the container only."""
    box.run_d("--name", "loop", "--restart", "always", rootfs, "sh", "-c",
              "echo tick; exit 1")
    # After 4 restarts the back-off is 1.6 s: time enough to stop it in the middle.
    wait_until(lambda: box.inspect("loop")["RestartCount"] >= 4
               and box.inspect("loop")["State"]["Restarting"], 20, "restarting, 4 runs done")
    ticks = box.logs("loop").count("tick")
    r = box("stop", "-t", "1", "loop")  # in its own session: see the module docstring
    time.sleep(4)  # past the back-off that was pending
    status = box.inspect("loop")["State"]["Status"]
    more = box.logs("loop").count("tick") - ticks
    assert (r.returncode, r.stdout, status, more) == (0, "loop\n", "exited", 0), \
        f"stop -> {r.returncode} {r.stderr!r}; then {status}, {more} more runs"


def _zombies_in(box: Box, ref: str) -> tuple[int, list[str]]:
    pid = box.inspect(ref)["State"]["Pid"]
    return pid, [(_stat(c) or ["?"])[0] for c in children(pid)]


def test_init_reaps_zombies(box, rootfs):
    # The subshell's background sleep is orphaned to PID 1, which then is `sleep 1000`:
    # nobody waits for it, and it stays a zombie, unless PID 1 is minibox-init.
    script = "(sleep 0.1 &); exec sleep 1000"
    box.run_d("--name", "plain", rootfs, "sh", "-c", script)
    box.run_d("--name", "reaped", "--init", rootfs, "sh", "-c", script)
    time.sleep(1)
    pid, kids = _zombies_in(box, "plain")
    assert cmdline(pid) == "sleep 1000" and kids == ["Z"], kids
    pid, kids = _zombies_in(box, "reaped")
    assert cmdline(pid).startswith("/dev/init ")
    assert kids == ["S"] and cmdline(children(pid)[0]) == "sleep 1000", kids


# ---------------------------------------------------------------------------------------
# Bad input: one clear line, docker's exit code, never a traceback
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["start"], ["stop"], ["restart"], ["kill"], ["pause"], ["unpause"], ["wait"], ["rm"],
    ["logs"], ["inspect"], ["top"], ["stats", "--no-stream"], ["exec", "nosuch", "true"],
], ids=lambda a: a[0])
def test_unknown_container(box, args):
    r = box(*args) if "nosuch" in args else box(*args, "nosuch")
    one_error(r, 1, "No such container: nosuch")
    if args[0] != "inspect":
        assert r.stdout == ""


def test_ambiguous_id_prefix(box, rootfs):
    first: dict[str, str] = {}
    for _ in range(17):  # 16 hex digits: two of 17 ids must share their first one
        cid = box.create(rootfs, "true")
        if cid[0] in first:
            break
        first[cid[0]] = cid
    prefix, other = cid[0], first[cid[0]]
    one_error(box("inspect", prefix), 1, f"multiple IDs found with provided prefix: {prefix}")
    one_error(box("rm", "-f", prefix), 1, "multiple IDs")
    assert {cid, other} <= set(box.ok("ps", "-a", "-q", "--no-trunc").split())
    common = os.path.commonprefix([cid, other])
    assert box.inspect(cid[:len(common) + 1])["Id"] == cid  # one more digit: unique


def test_duplicate_name(box, rootfs):
    groups = _group_children()
    cid = box.run_d("--name", "dup", rootfs, "sleep", "1000")
    for verb in (["run", "-d"], ["create"], ["run"]):
        r = box(*verb, "--name", "dup", rootfs, "true")
        one_error(r, 125, 'Conflict. The container name "/dup" is already in use by '
                          f'container "{cid}"')
        assert r.stdout == ""
    assert box.ok("ps", "-a", "-q", "--no-trunc") == cid + "\n"
    # Nothing half-made stays of the refused ones: no cgroup but the first container's.
    assert {os.path.basename(d) for d in _group_children() - groups} == {cid}
    box.ok("rm", "-f", "dup")
    box.run_d("--name", "dup", rootfs, "true")  # free once the first is gone


def test_acting_on_a_container_in_the_wrong_state(box, rootfs):
    box.run_d("--name", "over", rootfs, "true")
    box.ok("wait", "over")
    one_error(box("exec", "over", "true"), 1, "is not running")
    one_error(box("pause", "over"), 1, "is not running")
    one_error(box("kill", "over"), 1, "is not running")

    box.run_d("--name", "busy", rootfs, "sleep", "1000")
    one_error(box("rm", "busy"), 1, "cannot remove a running container")
    assert box.ps_state("busy") == "running"
    box.ok("pause", "busy")
    one_error(box("pause", "busy"), 1, "is already paused")
    one_error(box("rm", "busy"), 1, "cannot remove a running container")
    one_error(box("kill", "-s", "NOPE", "busy"), 1, "invalid signal: NOPE")
    assert box.ps_state("busy") == "paused"
    one_error(box("--bogus-flag"), 125, "unknown command")
