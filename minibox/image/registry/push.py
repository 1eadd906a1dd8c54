"""Push: every blob the registry lacks, then the manifest (distribution-spec v1.1 "Push").

For each blob (the layers, then the config):
  HEAD /v2/NAME/blobs/DIGEST                      200: the registry has it, skip
  POST /v2/NAME/blobs/uploads/?mount=D&from=REPO  201: linked from another repository of
                                                  the same registry (no bytes sent)
  POST /v2/NAME/blobs/uploads/                    202 + Location: an upload session
  PATCH LOCATION  (Content-Range: start-end)      one per chunk, for large blobs
  PUT LOCATION?digest=DIGEST                      closes the upload; the registry checks it
Then PUT /v2/NAME/manifests/TAG with the manifest's own media type and its exact bytes,
so that its digest stays the one the store knows.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

from minibox.errors import MiniboxError
from minibox.image.registry.client import Registry, Response, Unreachable

TYPE_CHECKING = False  # typing costs ms at import; the hints below are strings
if TYPE_CHECKING:
    from typing import BinaryIO

    from minibox.image.reference import Ref
    from minibox.image.store import Store

# Blobs up to this size go in one PUT; larger ones in PATCH chunks of this size.
CHUNK = 32 << 20
PARALLEL = 3


def _location(resp: Response, base: str) -> str:
    loc = resp.header("Location")
    if not loc:
        raise MiniboxError(f"the registry answered {resp.status} to an upload without a "
                           "Location to continue at")
    return urllib.parse.urljoin(base, loc)


def _with_digest(url: str, digest: str) -> str:
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    return f"{url}{sep}digest={urllib.parse.quote(digest)}"


def _denied(reg: Registry, repo: str, resp: Response) -> None:
    if resp.status in (401, 403):
        # A HEAD answer has no body to carry the registry's words.
        text = "" if resp.method == "HEAD" else resp.error_text()
        raise MiniboxError(f"push access denied for {reg.host}/{repo}: "
                           f"{text or 'authentication required'} "
                           f"(run: minibox login {reg.host})")


class _Window:
    """Bytes start..start+length of a blob file as a request body (a chunk, or the whole
    blob), telling `tick` of what is read. http.client reads it a block at a time
    (client.CHUNK) while the registry takes the bytes already sent, so the file is never
    held in memory whole and reading overlaps sending."""

    def __init__(self, f: BinaryIO, start: int, length: int,
                 tick: Callable[[int], None] | None) -> None:
        self.f, self.start, self.length, self.tick = f, start, length, tick
        self.left = length

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        if self.tick:
            self.tick(len(data))
        return data

    def seek(self, pos: int) -> None:
        # Sent again after an auth challenge: from the window's start, ticks undone.
        if self.tick and self.left != self.length:
            self.tick(self.left - self.length)
        self.f.seek(self.start + pos)
        self.left = self.length - pos


def upload(reg: Registry, repo: str, digest: str, size: int, open_blob: Callable,
           mount_from: list[str], tick: Callable[[int], None] | None = None) -> str:
    """Send one blob unless the registry has it; returns what happened, in docker's words."""
    scope = f"repository:{repo}:pull,push"
    resp = reg.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=scope,
                       why="does the registry have this blob already?")
    _denied(reg, repo, resp)
    resp.read()
    if resp.status == 200:
        return "Layer already exists"
    location = None
    for other in mount_from:
        q = urllib.parse.urlencode({"mount": digest, "from": other})
        resp = reg.request("POST", f"/v2/{repo}/blobs/uploads/?{q}",
                           scope=f"{scope} repository:{other}:pull",
                           why=f"link the blob from {other} instead of sending it")
        resp.read()
        if resp.status == 201:
            return f"Mounted from {other}"
        if resp.status == 202:
            location = _location(resp, resp.url)  # not mounted: a plain upload session
            break
    if location is None:
        location = _open_session(reg, repo, scope)
    octet = {"Content-Type": "application/octet-stream"}
    with open_blob(digest) as f:
        if size <= CHUNK:
            body = _Window(f, 0, size, tick)
            resp = reg.request("PUT", _with_digest(location, digest),
                               {**octet, "Content-Length": str(size)}, body, scope=scope,
                               why="send the whole blob and close the upload", retry=False)
        else:
            location = _send_chunks(reg, repo, digest, size, f, location, scope, tick)
            resp = reg.request("PUT", _with_digest(location, digest), octet, b"",
                               scope=scope, why="close the upload: the registry checks the "
                               "digest", retry=False)
    text = resp.error_text() if resp.status != 201 else ""
    if resp.status != 201:
        raise MiniboxError(f"push to {reg.host}/{repo}: blob {digest} refused: {text}")
    resp.read()
    return "Pushed"


RESUMES = 3  # dropped connections an upload survives


def _open_session(reg: Registry, repo: str, scope: str,
                  why: str = "open an upload session") -> str:
    resp = reg.request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope, why=why)
    _denied(reg, repo, resp)
    if resp.status != 202:
        raise MiniboxError(f"push to {reg.host}/{repo}: opening an upload answered "
                           f"{resp.error_text()}")
    resp.read()
    return _location(resp, resp.url)


def _send_chunks(reg: Registry, repo: str, digest: str, size: int, f: BinaryIO,
                 location: str, scope: str, tick: Callable[[int], None] | None) -> str:
    """PATCH the blob in CHUNK pieces (Content-Range); returns where to PUT. When the
    connection drops, ask the registry how much it has (GET on the upload: 204 with
    `Range: 0-LAST`, distribution-spec "Resuming an upload") and go on from there; a
    registry that has forgotten the upload by then (404: the distribution registry drops
    one whose last chunk broke off) gets it again from the start, in a new session."""
    octet = {"Content-Type": "application/octet-stream"}
    start = 0
    drops = 0
    while start < size:
        n = min(CHUNK, size - start)
        window = _Window(f, start, n, tick)
        try:
            resp = reg.request("PATCH", location, {**octet,
                               "Content-Range": f"{start}-{start + n - 1}",
                               "Content-Length": str(n)}, window,
                               scope=scope, why=f"send bytes {start}-{start + n - 1}",
                               retry=False)
        except Unreachable:
            drops += 1
            if drops > RESUMES:
                raise
            sent = start + n - window.left
            point = _resume_point(reg, location, scope)
            if point is None:
                point = 0, _open_session(reg, repo, scope, why="the registry forgot the "
                                         "broken upload: send the blob again, from byte 0")
            start, location = point
            if tick:
                tick(start - sent)  # the bar goes back to what the registry has
            continue
        if resp.status != 202:
            raise MiniboxError(f"push to {reg.host}/{repo}: chunk of {digest} "
                               f"refused: {resp.error_text()}")
        resp.read()
        location = _location(resp, resp.url)
        start += n
    return location


def _resume_point(reg: Registry, location: str, scope: str) -> tuple[int, str] | None:
    """(the next byte the registry wants, the URL to send it to) of an upload; None
    when the registry no longer knows the upload."""
    resp = reg.request("GET", location, scope=scope,
                       why="the connection dropped: how much of the upload has the registry?")
    resp.read()
    if resp.status == 404:
        return None
    last = (resp.header("Range") or "").rpartition("-")[2]
    if resp.status != 204 or not last.isdigit():
        raise MiniboxError(f"the upload to {reg.host} was cut and the registry cannot say "
                           f"how much it has ({resp.status} {resp.reason}); push again")
    # "0-0" is both "nothing" and "one byte" (the registry answers 0-(size-1), and 0-0
    # for an empty upload); a blob of one chunk or less never gets here.
    have = int(last) + 1 if last != "0" else 0
    return have, _location(resp, resp.url) if resp.header("Location") else location


def push(store: Store, ref: Ref, reg: Registry, say: Callable[[str], None],
         progress: Callable[[str, int | None], Callable[[int], None]] | None = None) -> str:
    """Push the store's image named `ref` to its registry; returns the manifest digest.
    `progress(digest, size)` gives a callback told the bytes of that blob as they go."""
    shown = str(ref)
    try:
        img = store.image(shown)
    except MiniboxError:
        raise MiniboxError(f"An image does not exist locally with the tag: {shown} "
                           f"(tag one first: minibox tag IMAGE {shown})") from None
    repo = ref.repository
    say(f"The push refers to repository [{reg.host}/{repo}]")
    # Other repositories of this registry that hold the same blobs (from the store's
    # names): a cross-repository mount saves sending the bytes again.
    others: dict[str, list[str]] = {}
    prefix = f"{reg.host}/"
    for name in store.refs():
        if not name.startswith(prefix):
            continue
        other = name[len(prefix):].split("@")[0].rsplit(":", 1)[0]
        if other == repo:
            continue
        try:
            for d, _mt, _size in store.image(name).layers:
                others.setdefault(d, []).append(other)
        except MiniboxError:
            continue
    blobs = [(d, size) for d, _mt, size in img.layers]

    def one(item: tuple[str, int]) -> str:
        d, size = item
        return upload(reg, repo, d, size, store.open_blob, sorted(set(others.get(d, []))),
                      progress(d, size) if progress else None)

    if len(blobs) == 1:
        results = [one(blobs[0])]
    else:
        # Loaded only when there is more than one blob: concurrent.futures imports
        # logging, several ms of a push's start.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            results = list(pool.map(one, blobs))
    for (d, _size), what in zip(blobs, results, strict=True):
        say(f"{d.split(':')[-1][:12]}: {what}")
    upload(reg, repo, img.config_digest, store.blob_size(img.config_digest), store.open_blob,
           [])
    media = img.manifest.get("mediaType") or "application/vnd.oci.image.manifest.v1+json"
    target = ref.digest or ref.tag
    resp = reg.request("PUT", f"/v2/{repo}/manifests/{target}", {"Content-Type": media},
                       img.manifest_bytes, scope=f"repository:{repo}:pull,push",
                       why="publish the manifest under the tag")
    if resp.status != 201:
        _denied(reg, repo, resp)
        raise MiniboxError(f"push to {reg.host}/{repo}: manifest refused: {resp.error_text()}")
    resp.read()
    digest = img.manifest_digest
    header = resp.header("Docker-Content-Digest")
    if header and header != digest:
        raise MiniboxError(f"push to {reg.host}/{repo}: the registry stored the manifest as "
                           f"{header}, not {digest}")
    say(f"{ref.digest or ref.tag}: digest: {digest} size: {len(img.manifest_bytes)}")
    return digest
