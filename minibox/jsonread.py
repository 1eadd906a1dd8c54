"""Read JSON without the json package.

`import json` pulls in `re` (and `enum` through it): about 9 ms, more than creating a
container's namespaces. The C scanner behind json (`_json.make_scanner`) needs only
an object carrying the decoder's settings, so the paths that start containers (`run
IMAGE` reads refs.json, a manifest and a config) read JSON with it directly.
Writing JSON without json is `minibox.runtime.state.dumps`.
"""

from __future__ import annotations

import _json

from minibox.errors import MiniboxError


def _constant(name: str) -> float:
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


class _Settings:
    # The attributes _json's scanner reads (CPython Modules/_json.c, scanner_new).
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: dict = {}


_scan = _json.make_scanner(_Settings())
_SPACE = " \t\n\r"


def loads(text: str | bytes, what: str = "JSON") -> object:
    """Parse a whole JSON document; a damaged one raises MiniboxError naming `what`."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    i = 0
    n = len(text)
    while i < n and text[i] in _SPACE:
        i += 1
    try:
        value, end = _scan(text, i)
    except (StopIteration, ValueError) as err:
        raise MiniboxError(f"{what} is not valid JSON (at offset {err})") from None
    while end < n and text[end] in _SPACE:
        end += 1
    if end != n:
        raise MiniboxError(f"{what} is not valid JSON (extra data at offset {end})")
    return value


def load_file(path: str, what: str | None = None) -> object:
    with open(path, "rb") as f:
        return loads(f.read(), what or path)
