"""`minibox run -t`: a pseudo-terminal for the container, driven from a real outer pty."""

from __future__ import annotations

import re
import time


def test_tty_shell_session(terminal, rootfs, find_process):
    t = terminal("-t", rootfs, "sh", rows=33, cols=111)
    t.expect(rb"# ")
    t.send(b"tty; echo tty-rc=$?\n")
    tty = t.expect(rb"\r\n(/dev/\S+)\r\ntty-rc=0\r\n").group(1)
    assert re.fullmatch(rb"/dev/(console|pts/\d+|tty\d*)", tty), tty
    t.send(b"echo TERM=$TERM\n")
    t.expect(rb"TERM=xterm\r\n")
    t.send(b"stty size\n")
    t.expect(rb"\r\n33 111\r\n")
    t.send(b"exit 5\n")
    assert t.wait() == 5


def test_ctrl_c_interrupts_the_foreground_command_only(terminal, rootfs, find_process):
    t = terminal("-t", rootfs, "sh")
    t.expect(rb"# ")
    t.send(b"sleep 30\n")
    t.expect(rb"sleep 30\r\n")
    sleep = find_process(t.proc.pid, "sleep 30")
    assert sleep is not None, "sleep never started"
    started = time.monotonic()
    t.send(b"\x03")
    # ash reports a child killed by SIGINT as 130; the shell itself is still there.
    t.send(b"echo alive-$?\n")
    t.expect(rb"alive-130\r\n")
    assert time.monotonic() - started < 10
    assert t.proc.poll() is None
    t.send(b"exit 0\n")
    assert t.wait() == 0


def test_window_size_follows_the_outer_terminal(terminal, rootfs):
    t = terminal("-t", rootfs, "sh", rows=33, cols=111)
    t.expect(rb"# ")
    t.send(b"stty size\n")
    t.expect(rb"\r\n33 111\r\n")
    t.resize(44, 122)  # the kernel sends SIGWINCH to minibox, which copies the size
    for _ in range(30):
        t.send(b"stty size\n")
        size = t.expect(rb"\r\n(\d+ \d+)\r\n").group(1)
        if size == b"44 122":
            break
        time.sleep(0.1)
    assert size == b"44 122"
    t.send(b"exit\n")
    assert t.wait() == 0


def test_terminal_seen_from_the_host(terminal, rootfs, find_process):
    t = terminal("-t", rootfs, "sleep", "30")
    init = find_process(t.proc.pid, "sleep 30")
    assert init is not None
    stat = open(f"/proc/{init.pid}/stat").read()
    fields = stat[stat.rindex(")") + 2:].split()
    session, tty_nr = int(fields[3]), int(fields[4])
    # PID 1 leads its own session, and the pty is its controlling terminal.
    assert session == init.pid
    assert tty_nr != 0


def test_terminal_on_both_ends_implies_t(terminal, rootfs):
    t = terminal(rootfs, "sh", "-c", "tty; echo TERM=$TERM")
    t.expect(rb"/dev/\S+\r\nTERM=xterm\r\n")
    assert t.wait() == 0


def test_exit_code_through_the_tty(terminal, rootfs):
    t = terminal("-t", rootfs, "sh", "-c", "exit 3")
    assert t.wait() == 3


def test_t_without_an_outer_terminal(minibox, rootfs):
    r = minibox("-t", rootfs, "sh", "-c", "tty; echo TERM=$TERM")
    assert r.returncode == 0, r.stderr
    assert re.match(r"/dev/\S+\r?\nTERM=xterm\r?\n$", r.stdout), r.stdout


def test_no_tty_without_t(minibox, rootfs):
    r = minibox(rootfs, "sh", "-c", "tty; echo rc=$?")
    assert r.stdout.splitlines() == ["not a tty", "rc=1"], r.stdout + r.stderr
