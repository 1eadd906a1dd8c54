"""Process steps of the child side: identity (setresuid, setgroups), the terminal, execve."""

from __future__ import annotations

import os

from minibox.kernel.syscall import python


def setresgid(gid: int, why: str) -> None:
    python(os.setresgid, (gid, gid, gid), f"setresgid({gid}, {gid}, {gid})", why, "setresgid(2)")


def setresuid(uid: int, why: str) -> None:
    python(os.setresuid, (uid, uid, uid), f"setresuid({uid}, {uid}, {uid})", why, "setresuid(2)")


def setgroups(groups: list[int]) -> None:
    python(os.setgroups, (groups,), f"setgroups({groups})",
           "drop the supplementary groups minibox itself ran with", "setgroups(2)")


def setsid_and_ctty(fd: int) -> None:
    """Make the container's process a session leader with the pty as its controlling terminal.

    Job control and Ctrl-C need this: the line discipline sends SIGINT to the foreground
    process group of the session whose controlling terminal it is (credentials(7), tty_ioctl(4)).
    """
    import fcntl
    import termios

    python(os.setsid, (), "setsid()", "a new session, so the pty can become its terminal",
           "setsid(2)")
    python(fcntl.ioctl, (fd, termios.TIOCSCTTY, 0), f"ioctl({fd}, TIOCSCTTY)",
           "the pty becomes the controlling terminal: Ctrl-C and job control work",
           "ioctl_tty(2)")


def take_terminal(fd: int) -> None:
    """The pty becomes the controlling terminal and stdin, stdout and stderr."""
    setsid_and_ctty(fd)
    for std in (0, 1, 2):
        os.dup2(fd, std)
    os.close(fd)


def execve(path: str, args: list[str], env: list[str]) -> None:
    from minibox import explain

    explain.step(f'execve("{path}", {args})', "(does not return on success)",
                 "replace minibox's child with the container's command", "execve(2)")
    envd = {}
    for item in env:
        key, _, value = item.partition("=")
        envd[key] = value
    os.execve(path, args, envd)
