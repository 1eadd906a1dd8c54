"""Image references: `[registry/]repository[:tag][@digest]`, parsed as docker does.

The grammar is distribution's reference grammar (distribution/reference, regexp.go):
path components are lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`;
the first component is a registry host when it contains `.` or `:` or is `localhost`;
a tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; a digest is `algorithm:hex`. Written by
hand rather than with `re`, which costs import time on the paths that parse names.
"""

from __future__ import annotations

from minibox.errors import MiniboxError

_ALNUM_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_HEX = frozenset("0123456789abcdef")
_TAG_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_TAG_REST = _TAG_FIRST | frozenset(".-")
NAME_TOTAL_MAX = 255


class Ref:
    """A parsed reference. `registry` is None for a local name."""

    __slots__ = ("registry", "repository", "tag", "digest")

    def __init__(self, registry: str | None, repository: str, tag: str | None,
                 digest: str | None) -> None:
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest

    @property
    def name(self) -> str:
        """registry/repository (or just repository): the part before `:tag`."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def __repr__(self) -> str:
        return f"Ref({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def _bad(text: str, why: str = "") -> MiniboxError:
    return MiniboxError(f'invalid reference format{": " + why if why else ""} ("{text}")')


def _component_ok(c: str) -> bool:
    """[a-z0-9]+ (separator [a-z0-9]+)*, separator = . | _ | __ | -+"""
    if not c or c[0] not in _ALNUM_LOWER or c[-1] not in _ALNUM_LOWER:
        return False
    i = 0
    while i < len(c):
        ch = c[i]
        if ch in _ALNUM_LOWER:
            i += 1
            continue
        j = i
        while j < len(c) and c[j] not in _ALNUM_LOWER:
            j += 1
        sep = c[i:j]
        if not (sep in (".", "_", "__") or set(sep) == {"-"}):
            return False
        i = j
    return True


def _host_ok(host: str) -> bool:
    name, _, port = host.partition(":")
    if port and not port.isdigit():
        return False
    for label in name.split("."):
        if not label or not all(ch.isalnum() or ch == "-" for ch in label) \
                or label[0] == "-" or label[-1] == "-" or not label.isascii():
            return False
    return True


def check_digest(digest: str, text: str | None = None) -> str:
    algo, sep, hexpart = digest.partition(":")
    if not sep or not algo or not hexpart:
        raise _bad(text or digest, "invalid digest")
    if algo == "sha256":
        if len(hexpart) != 64 or not set(hexpart) <= _HEX:
            raise _bad(text or digest, "invalid checksum digest length or format")
    elif not algo.replace("+", "").replace(".", "").replace("_", "").replace("-", "").isalnum() \
            or not hexpart.isalnum():
        raise _bad(text or digest, "invalid digest")
    return digest


def parse(text: str) -> Ref:
    """Parse `text`; a bad reference raises MiniboxError("invalid reference format...")."""
    if not text:
        raise _bad(text, "empty reference")
    rest, at, digest = text.partition("@")
    if at:
        check_digest(digest, text)
    # The tag follows the last ':' that comes after the last '/' (a host may have a port).
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag = None
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not tag or tag[0] not in _TAG_FIRST or len(tag) > 128 or \
                not all(ch in _TAG_REST for ch in tag):
            raise _bad(text)
    parts = rest.split("/")
    registry = None
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry = parts[0]
        if not _host_ok(registry):
            raise _bad(text)
        parts = parts[1:]
    for c in parts:
        if not _component_ok(c):
            if c and _component_ok(c.lower()):
                raise _bad(text, "repository name must be lowercase")
            raise _bad(text)
    repository = "/".join(parts)
    if len(repository) + len(registry or "") + (1 if registry else 0) > NAME_TOTAL_MAX:
        raise _bad(text, f"repository name must not be more than {NAME_TOTAL_MAX} characters")
    if tag is None and not digest:
        tag = "latest"
    return Ref(registry, repository, tag, digest or None)


def looks_like_id(text: str) -> bool:
    """A full or short image id (hex, optionally with "sha256:")."""
    h = text.removeprefix("sha256:")
    return bool(h) and len(h) <= 64 and set(h) <= _HEX
