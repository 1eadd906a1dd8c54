"""argparse with docker's manners: a bad flag is one line on stderr and exit 125."""

from __future__ import annotations

import argparse

from minibox.errors import MiniboxError


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise MiniboxError(f"{self.prog}: {message} (see: {self.prog} --help)")
