"""Load images from a docker-archive or an OCI archive into the store (`minibox load`).

Every blob is checked on its way in: a layer and a config against the digest the
archive names them by; a check that fails stops the copy before the blob is renamed into
the store (the store stages in tmp/). A layer must also uncompress to its diff_id (the
config's rootfs.diff_ids): the store checks that while it unpacks the layer, before the
image is recorded, so the layer is decompressed once, not twice; a layer the store has
unpacked already is checked here, while it is copied. Images are added only once all
their blobs are in; if anything fails on the way, the blobs and unpacked layers this
load added are removed again, so a refused archive leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minibox import explain
from minibox.errors import MiniboxError
from minibox.image.archive import docker, oci
from minibox.image.archive.model import OCI_CONFIG, OCI_MANIFEST, Blob, Found
from minibox.image.archive.source import CHUNK, Source, decompressor, open_source

# progress(what, done, total): `what` names the blob being copied.
Progress = Callable[[str, int, "int | None"], None]


@dataclass
class Loaded:
    id: str  # the image id (config digest)
    manifest_digest: str
    refs: list[str]


def read(src: Source) -> list[Found]:
    """The images of an archive, whichever of the two layouts it has."""
    if oci.is_oci_layout(src):
        return oci.read(src)
    if docker.is_docker_archive(src):
        return docker.read(src)
    raise MiniboxError(f"{src.description}: not an image archive: it has neither "
                       "manifest.json (docker save) nor oci-layout and index.json (OCI); "
                       "make one with minibox save, docker save or podman save")


class _Verifying:
    """A layer stream that checks, as it is read, that it uncompresses to its diff_id.

    The store reads it to the end while hashing what it writes to tmp/; at the end this
    raises instead of returning EOF when the diff_id is wrong, so the store drops the
    staged copy and the blob never enters.
    """

    def __init__(self, f: Any, blob: Blob, where: str, progress: Progress | None,
                 check_diff_id: bool) -> None:
        self._f, self._blob, self._where, self._progress = f, blob, where, progress
        kind = _kind_of(blob.media_type)
        self._dec = decompressor(kind) if kind and check_diff_id else None
        self._kind = kind
        self._hash = hashlib.sha256() if self._dec else None
        self._done = 0

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(CHUNK if size is None or size < 0 else size)
        if data:
            self._done += len(data)
            if self._dec is not None:
                try:
                    self._hash.update(self._dec.decompress(data))  # type: ignore[union-attr]
                except Exception as err:  # noqa: BLE001 - zlib and zstd raise their own
                    raise MiniboxError(f"{self._where}: layer {self._blob.name} is not valid "
                                       f"{self._kind} ({err})") from None
            if self._progress:
                self._progress(self._blob.digest or self._blob.name, self._done,
                               self._blob.size)
            return data
        self._finish()
        return b""

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def _finish(self) -> None:
        if self._done != self._blob.size:
            raise MiniboxError(f"{self._where}: layer {self._blob.name} is truncated "
                               f"({self._done} of {self._blob.size} bytes)")
        if self._dec is None:
            return  # uncompressed, its digest is its diff_id; or the store checks it
        if not self._dec.eof:
            raise MiniboxError(f"{self._where}: layer {self._blob.name}: the {self._kind} "
                               "stream ends early (truncated layer)")
        actual = "sha256:" + self._hash.hexdigest()  # type: ignore[union-attr]
        if actual != self._blob.diff_id:
            raise MiniboxError(f"{self._where}: layer {self._blob.name}: digest mismatch: "
                               f"the config says its diff_id is {self._blob.diff_id}, it "
                               f"uncompresses to {actual} (corrupt archive)")


def _kind_of(media_type: str) -> str | None:
    for kind in ("gzip", "zstd"):
        if media_type.endswith(("+" + kind, "." + kind)):
            return kind
    return None


def _digest_of(src: Source, name: str) -> str:
    h = hashlib.sha256()
    with src.open(name) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _refs(found: list[Found]) -> list[list[str]]:
    """Every name in the archive, canonical; a bad one is refused before anything is written."""
    from minibox.image import reference

    out = []
    for image in found:
        names = []
        for name in image.refs:
            try:
                text = _familiar(str(reference.parse(name)))
            except MiniboxError as err:
                raise MiniboxError(f"the archive names an image {name!r}: {err.message}") \
                    from None
            if text not in names:
                names.append(text)
        out.append(names)
    return out


def _familiar(name: str) -> str:
    """docker's familiar form of a Docker Hub name, as `docker load` prints it:
    docker.io/library/busybox:1 -> busybox:1, docker.io/a/b:1 -> a/b:1 (podman and
    containerd write the full form into archives; minibox names Hub images without it)."""
    if not name.startswith("docker.io/"):
        return name
    rest = name.removeprefix("docker.io/")
    path = rest.split("@")[0].split("/")
    path[-1] = path[-1].split(":")[0]
    if path[0] == "library" and len(path) == 2:
        return rest.removeprefix("library/")
    if path[0] != "library":
        return rest
    return name


def _manifest(image: Found) -> bytes:
    """An OCI image manifest for an image from a docker-archive, which carries none."""
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, "digest": image.config.digest,
                      "size": image.config.size},
           "layers": [{"mediaType": layer.media_type, "digest": layer.digest,
                       "size": layer.size} for layer in image.layers]}
    return json.dumps(doc, separators=(",", ":")).encode()


def load(store: Any, path: str | None, progress: Progress | None = None,
         unpacking: Progress | None = None) -> list[Loaded]:
    """Load the archive at `path` (stdin when None); return what was loaded, in order.

    `progress` hears of each blob copied into the store, `unpacking` of the bytes of
    tar the store unpacks into layer directories (per image, total unknown).
    """
    store.ensure()
    with open_source(path, store.tmp_path("load")) as src:
        found = read(src)
        names = _refs(found)
        added: list[str] = []  # blobs this load brought in, removed again on failure
        try:
            for image in found:
                _put_blobs(store, src, image, added, progress)
            # Layers unpacked by this load (add_image unpacks them) go again on failure too.
            new_layers = [d for image in found for d in (layer.diff_id for layer in image.layers)
                          if d and not store.has_layer(d)]
            loaded = []
            for image, refs in zip(found, names, strict=True):
                manifest = image.manifest_bytes or _manifest(image)
                digest = store.add_image(manifest, refs[0] if refs else None,
                                         progress=_unpack_counter(image, unpacking))
                for ref in refs[1:]:
                    store.tag(refs[0], ref)
                loaded.append(Loaded(image.config.digest or "", digest, refs))
            return loaded
        except BaseException:
            _forget(store, added, locals().get("new_layers", []))
            raise


def _unpack_counter(image: Found, unpacking: Progress | None) -> Callable[[int], None] | None:
    if unpacking is None:
        return None
    done = [0]
    what = image.config.digest or "image"

    def count(n: int) -> None:
        done[0] += n
        unpacking(what, done[0], None)

    return count


def _put_blobs(store: Any, src: Source, image: Found, added: list[str],
               progress: Progress | None) -> None:
    where = src.description
    for layer in image.layers:
        if layer.digest is None:
            # A compressed layer in a docker-archive: the archive does not say its digest,
            # and knowing it first tells whether the store has it already.
            layer.digest = _digest_of(src, layer.name)
        if store.has_blob(layer.digest):
            continue
        with src.open(layer.name) as f:
            # Unpacked already (from another image's blob): add_image will not unpack it
            # again, so its diff_id is checked here instead.
            stream = _Verifying(f, layer, where, progress,
                                check_diff_id=store.has_layer(layer.diff_id))
            try:
                # The store narrates its own rename into blobs/ (store.put_blob).
                store.put_blob(stream, expected=layer.digest, media_type=layer.media_type)
            except MiniboxError as err:
                if err.message.startswith(where):
                    raise
                raise MiniboxError(f"{where}: layer {layer.name}: {err.message}") from None
        added.append(layer.digest)
    if image.config.digest and not store.has_blob(image.config.digest):
        store.put_blob(image.config_bytes, expected=image.config.digest,
                       media_type=image.config.media_type)
        added.append(image.config.digest)


def _forget(store: Any, added: list[str], layers: list[str]) -> None:
    for diff_id in layers:
        path = store.layer_dir(diff_id)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            explain.step(f"rmdir({path!r}) [recursive]", 0, "the load failed: a layer it "
                         "unpacked goes again", "unlink(2)")
        try:
            os.unlink(path + ".json")
        except FileNotFoundError:
            pass
    for digest in added:
        path = store.blob_path(digest)
        try:
            os.unlink(path)
            explain.step(f"unlink({path!r})", 0, "the load failed: a blob it brought in "
                         "goes again, leaving the store as it was", "unlink(2)")
        except FileNotFoundError:
            pass
