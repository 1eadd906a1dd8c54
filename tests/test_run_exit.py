"""Exit codes (docker's), one-line errors, signal forwarding to PID 1, and stdin."""

from __future__ import annotations

import os
import signal
import time

import pytest


def one_line_error(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("minibox: "), lines[0]
    return lines[0]


# --- the command's own code -------------------------------------------------------------

@pytest.mark.parametrize("code", [0, 1, 3, 255])
def test_exit_code_is_the_commands(minibox, rootfs, code):
    r = minibox(rootfs, "sh", "-c", f"exit {code}")
    assert r.returncode == code, r.stderr
    assert r.stderr == ""


def test_true_and_false(minibox, rootfs):
    assert minibox(rootfs, "/bin/true").returncode == 0
    assert minibox(rootfs, "false").returncode == 1


def test_killed_by_a_signal_is_128_plus_n(minibox, rootfs):
    # PID 1 of a PID namespace cannot be killed from inside; with the host's PID
    # namespace the command is an ordinary process and SIGTERM ends it.
    r = minibox("--pid=host", rootfs, "sh", "-c", "kill -TERM $$; sleep 5")
    assert r.returncode == 128 + signal.SIGTERM, r.stderr


def test_pid1_killed_from_the_host_is_137(spawn, rootfs):
    c = spawn(rootfs, "sh", "-c", "while :; do sleep 0.1; done")
    os.kill(c.pid, signal.SIGKILL)
    code, _, err = c.wait()
    assert code == 137, err
    assert not c.running()


# --- 126 and 127 ------------------------------------------------------------------------

def test_not_executable_is_126(minibox, rootfs):
    r = minibox(rootfs, "/etc/passwd")
    assert r.returncode == 126
    assert "/etc/passwd" in one_line_error(r.stderr)


def test_directory_is_126(minibox, rootfs):
    r = minibox(rootfs, "/etc")
    assert r.returncode == 126
    one_line_error(r.stderr)


@pytest.mark.parametrize("command", ["nosuchcmd", "/bin/nosuchcmd"])
def test_not_found_is_127(minibox, rootfs, command):
    r = minibox(rootfs, command)
    assert r.returncode == 127
    assert command in one_line_error(r.stderr)
    assert r.stdout == ""


# --- 125: minibox's own failures, one line, no traceback ------------------------------

def test_missing_rootfs_is_125(minibox, tmp_path):
    r = minibox(tmp_path / "no-such-rootfs", "true")
    assert r.returncode == 125
    assert "no-such-rootfs" in one_line_error(r.stderr)


def test_rootfs_that_is_a_file_is_125(minibox, tmp_path):
    f = tmp_path / "a-file"
    f.write_text("not a directory\n")
    r = minibox(f, "true")
    assert r.returncode == 125
    assert "a-file" in one_line_error(r.stderr)


@pytest.mark.parametrize("args", [
    ["-h", "bad_host!"],
    ["--hostname", "-leading-hyphen"],
    ["-h", "x" * 65],
    ["-e", "=x"],
    ["-e", " SPACE=x"],
    ["--userns", "-u", "70000"],
    ["--userns", "-u", "0:70000"],
    ["-u", "nosuchuser"],
    ["-v", "nocolon"],
    ["-v", "relative/path:/data"],
    ["-v", "/tmp:relative"],
    ["-v", "/tmp:/data:rx"],
    ["-v", "/tmp:/data:ro:extra"],
    ["-v", "/tmp:/"],
    ["-w", "relative/dir"],
    ["--tmpfs", "relative"],
    ["--bogus-flag"],
    ["-Z"],
    ["--net=bogus"],
    ["--env-file", "/nonexistent/env.list"],
    ["--uts=host", "-h", "conflicting"],
])
def test_bad_arguments_are_125_in_one_line(minibox, rootfs, args):
    r = minibox(*args, rootfs, "true")
    assert r.returncode == 125, r.stderr
    one_line_error(r.stderr)
    assert r.stdout == ""


@pytest.mark.parametrize("args, names", [
    (["--tmpfs", "/tmp:no-such-option=1"], "/tmp"),
    (["--overlay", "-v", "/etc/hostname:/etc"], "/etc"),
])
def test_failed_mount_inside_is_125_and_names_it(minibox, rootfs, args, names):
    # The child's setup fails after clone: its one-line report must reach the user.
    r = minibox(*args, rootfs, "true")
    assert r.returncode == 125
    line = one_line_error(r.stderr)
    assert names in line and "mount" in line, line


@pytest.mark.parametrize("shared", ["--pid=host", "--ipc=host"])
def test_userns_with_a_host_namespace_it_cannot_mount_for_is_125(minibox, rootfs, shared):
    # A new user namespace does not own the host's PID (IPC) namespace, so the kernel
    # refuses it a new /proc (/dev/mqueue): one line, no traceback, and nothing left.
    r = minibox("--userns", shared, rootfs, "true")
    assert r.returncode == 125
    one_line_error(r.stderr)


def test_no_command_is_125(minibox, rootfs):
    r = minibox(rootfs)
    assert r.returncode == 125
    one_line_error(r.stderr)


def test_missing_workdir_is_125(minibox, rootfs):
    r = minibox("-w", "/nonexistent/dir", rootfs, "true")
    assert r.returncode == 125
    assert "/nonexistent/dir" in one_line_error(r.stderr)


# --- signals ----------------------------------------------------------------------------

TRAP_LOOP = 'trap "exit 7" {sig}; while :; do sleep 0.1; done'


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                                 signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2],
                         ids=lambda s: s.name)
def test_signal_to_minibox_reaches_pid_1(spawn, rootfs, sig):
    name = sig.name.removeprefix("SIG")
    c = spawn(rootfs, "sh", "-c", TRAP_LOOP.format(sig=name))
    c.wait_for_handler(sig)
    os.kill(c.proc.pid, sig)
    code, out, err = c.wait()
    assert code == 7, err
    assert not c.running()


def test_sigterm_with_children_leaves_nothing(spawn, rootfs):
    c = spawn(rootfs, "sh", "-c",
              'sleep 60 & sleep 60 & trap "exit 7" TERM; while :; do sleep 0.1; done')
    c.wait_for_handler(signal.SIGTERM)
    inside = [p for p in os.listdir("/proc") if p.isdigit()
              and os.path.exists(f"/proc/{p}/ns/pid")
              and _same_ns(int(p), c.pid)]
    assert len(inside) >= 3, inside
    os.kill(c.proc.pid, signal.SIGTERM)
    code, _, err = c.wait()
    assert code == 7, err
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in inside):
        time.sleep(0.02)
    left = [p for p in inside if os.path.exists(f"/proc/{p}")]
    assert not left, f"still running after minibox returned: {left}"


def _same_ns(pid: int, other: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{other}/ns/pid")
    except OSError:
        return False


# --- stdin ------------------------------------------------------------------------------

def test_stdin_is_passed_through(minibox, rootfs):
    r = minibox(rootfs, "cat", input="hi\n")
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr


def test_stdin_large_and_binary_safe(minibox, rootfs):
    data = "".join(f"line {i}\n" for i in range(20000))
    r = minibox(rootfs, "wc", "-l", input=data)
    assert (r.returncode, r.stdout.strip()) == (0, "20000"), r.stderr


def test_stdout_and_stderr_are_separate(minibox, rootfs):
    r = minibox(rootfs, "sh", "-c", "echo out; echo err >&2")
    assert (r.returncode, r.stdout, r.stderr) == (0, "out\n", "err\n")
