"""The error minibox reports as one line: what failed, on which object, what to do."""

from __future__ import annotations


class MiniboxError(Exception):
    """A failure to report as `minibox: MESSAGE` and exit with `code` (docker's numbers).

    125 is minibox's own failure, 126 a command that cannot be executed, 127 a command
    that is not found.
    """

    def __init__(self, message: str, code: int = 125) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
