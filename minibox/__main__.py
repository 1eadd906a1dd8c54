"""`python -m minibox` is the `minibox` command."""

from minibox.cli.main import entry

entry()
