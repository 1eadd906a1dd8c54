"""minibox: a Linux container runtime that shows every kernel step it takes."""

__version__ = "0.1.0"
