"""A pseudo-terminal for the container, relayed to the user's terminal (pty(7)).

The container gets the pty's slave side as its controlling terminal; minibox keeps the
master, puts the user's terminal in raw mode so every key (Ctrl-C included) reaches the
container's line discipline, and copies the window size on SIGWINCH.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import termios
import tty


class Pty:
    def __init__(self, master: int | None = None) -> None:
        """A new pty; or, given `master`, the master side of one opened elsewhere (exec
        opens it inside the container, so the container can name its terminal)."""
        if master is None:
            self.master, self.slave = os.openpty()
            os.set_inheritable(self.slave, False)
        else:
            self.master, self.slave = master, None
        self._saved: list | None = None
        self.copy_winsize()

    def copy_winsize(self, *_args: object) -> None:
        for fd in (0, 1):
            if os.isatty(fd):
                size = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
                return

    def start(self) -> None:
        """After the child has the slave: close our copy, go raw, follow the window size."""
        if self.slave is not None:
            os.close(self.slave)
        if os.isatty(0):
            self._saved = termios.tcgetattr(0)
            tty.setraw(0)
        signal.signal(signal.SIGWINCH, self.copy_winsize)

    def restore(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self._saved)
            self._saved = None

    def relay(self) -> None:
        """Copy stdin to the container and its output to stdout until it closes the pty."""
        inputs = [0, self.master]
        while True:
            try:
                ready, _, _ = select.select(inputs, [], [])
            except InterruptedError:
                continue
            if self.master in ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError as err:
                    if err.errno == errno.EIO:  # every slave fd is closed: the container ended
                        break
                    raise
                if not data:
                    break
                _write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    inputs.remove(0)
                    _write_all(self.master, b"\x04")  # end of input reaches the container as ^D
                else:
                    _write_all(self.master, data)
        os.close(self.master)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]
