"""Containers leave nothing behind on the host, and the leak check can see a leak.

Every test of the suite already runs under the autouse leak check of conftest.py; these
tests make many runs in a row, and prove that the check notices each kind of leak.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest


def test_hundred_runs_leave_the_host_as_it_was(minibox, rootfs, host_snapshot, host_leaks):
    before = host_snapshot()
    for i in range(100):
        r = minibox(rootfs, "/bin/true")
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), f"run {i}: {r.stderr}"
    assert host_leaks(before) == []
    # exactly the mounts it had before, not one more or less (in the places a minibox
    # run can touch: podman and runc of other engineers mount elsewhere meanwhile)
    after = host_snapshot().watched_mounts()
    assert after == before.watched_mounts() and len(after) > 10


def test_runs_with_every_option_leave_nothing(minibox, rootfs, tmp_path, host_snapshot,
                                              host_leaks, userns_dir, userns_rootfs_copy):
    before = host_snapshot()
    variants = [
        ["--overlay", rootfs],
        ["--userns", "-v", f"{userns_dir}:/data", userns_rootfs_copy],
        ["--overlay", "--read-only", "--tmpfs", "/tmp", "-v", f"{tmp_path}:/data:ro", rootfs],
        ["--net=host", "--pid=host", "--ipc=host", "--uts=host", rootfs],
        ["-t", "-u", "1000:1000", "-w", "/tmp", rootfs],
    ]
    for _ in range(4):
        for args in variants:
            r = minibox(*args, "sh", "-c", "sleep 0.01 & exit 0")
            assert r.returncode == 0, f"{args}: {r.stderr}"
    assert host_leaks(before) == []


def test_a_process_left_running_is_killed_through_the_group(minibox, rootfs, host_snapshot,
                                                            host_leaks):
    # With the host's PID namespace nothing kills the command's children when it ends:
    # its group cannot be removed while they live (EBUSY), so minibox kills them.
    before = host_snapshot()
    started = time.monotonic()
    r = minibox("--pid=host", rootfs, "sh", "-c", "sleep 60 & echo $!")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started < 30
    pid = int(r.stdout)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2][0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z"), f"sleep {pid} still runs ({state})"
    assert host_leaks(before) == []


def test_failed_runs_leave_nothing(minibox, rootfs, host_snapshot, host_leaks):
    before = host_snapshot()
    for args, code in ([[rootfs, "nosuchcmd"], 127], [[rootfs, "/etc/passwd"], 126],
                       [["-w", "/nonexistent", rootfs, "true"], 125],
                       [["--overlay", "-w", "/nonexistent", rootfs, "true"], 125],
                       [["--userns", "-u", "70000", rootfs, "true"], 125]):
        for _ in range(3):
            assert minibox(*args).returncode == code
    assert host_leaks(before) == []


def test_interrupted_runs_leave_nothing(spawn, rootfs, host_snapshot, host_leaks):
    before = host_snapshot()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        c = spawn("--overlay", rootfs, "sh", "-c",
                  f'sleep 60 & trap "exit 9" {sig.name[3:]}; while :; do sleep 0.1; done')
        c.wait_for_handler(sig)
        os.kill(c.proc.pid, sig)
        assert c.wait()[0] == 9
    c = spawn("--overlay", rootfs, "sh", "-c", "sleep 60 & while :; do sleep 0.1; done")
    os.kill(c.pid, signal.SIGKILL)
    assert c.wait()[0] == 137
    assert host_leaks(before) == []


# --- the leak check itself --------------------------------------------------------------

@pytest.fixture
def leaks_made_on_purpose(tmp_path, rootfs):
    """One leak of each kind the check knows, made by the test itself; undone after."""
    undo = []
    made = {}

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "leaktest", str(mnt)], check=True)
    undo.append(lambda: subprocess.run(["umount", str(mnt)], check=True))
    made["mount"] = str(mnt)

    child = subprocess.Popen(["sleep", "60"])
    undo.append(lambda: (child.kill(), child.wait()))
    made["child"] = f"pid {child.pid} "

    # A container process nobody waits for: PID 1 of a new PID namespace, chrooted into
    # the rootfs, whose parent (unshare) was disowned by setsid -f.
    subprocess.run(["setsid", "-f", "unshare", "--pid", "--fork", "chroot", rootfs,
                    "/bin/sleep", "61"], check=True)
    orphan = None
    for _ in range(250):
        orphan = next((p for p in os.listdir("/proc") if p.isdigit()
                       and _cmdline(p) == b"/bin/sleep\x0061\x00"), None)
        if orphan:
            break
        time.sleep(0.02)
    assert orphan, "could not make an orphaned container process"
    undo.append(lambda: os.kill(int(orphan), signal.SIGKILL))
    made["orphan"] = f"pid {orphan} "

    scratch = Path("/run/minibox") / f"overlay-leaktest-{os.getpid()}"
    scratch.mkdir(parents=True)
    undo.append(scratch.rmdir)
    made["scratch"] = str(scratch)

    subprocess.run(["ip", "link", "add", "mbxleak0", "type", "veth", "peer", "name",
                    "mbxleak1"], check=True)
    undo.append(lambda: subprocess.run(["ip", "link", "del", "mbxleak0"], check=True))
    made["link"] = "mbxleak0"

    own = next(line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text()
               .splitlines() if "pids" in line.split(":")[1].split(","))
    parent = Path(f"/sys/fs/cgroup/pids{own.rstrip('/')}/minibox")
    group = parent / ("ab" * 32)
    group.mkdir(parents=True)
    undo.append(lambda: (group.rmdir(), _rmdir_if_empty(parent)))
    made["cgroup"] = str(group)

    yield made
    for step in reversed(undo):
        step()


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass  # another engineer's minibox has a container in there


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_leak_check_sees_each_kind_of_leak(host_snapshot, host_leaks, request):
    before = host_snapshot()
    made = request.getfixturevalue("leaks_made_on_purpose")
    problems = host_leaks(before, settle=0.3)
    text = "\n".join(problems)
    for kind, needle in made.items():
        assert needle in text, f"the leak check missed the {kind} leak:\n{text}"
    assert any(p.startswith("new host mount") for p in problems)
    assert any(p.startswith("process left behind") and made["orphan"] in p for p in problems)
    assert any(p.startswith("left behind in /run/minibox") for p in problems)
    assert any(p.startswith("host network link new: mbxleak0") for p in problems)
    assert any(p.startswith("cgroup left behind") for p in problems)
