"""Write images from the store into a docker-archive or an OCI archive (`minibox save`).

The archive is written under a temporary name beside the target and renamed into place
at the end (rename(2) is atomic within a directory): a failed or interrupted save never
leaves a half archive under the name asked for.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from minibox import explain
from minibox.errors import MiniboxError
from minibox.image.archive import docker, oci
from minibox.image.archive.model import OCI_MANIFEST
from minibox.image.archive.source import CHUNK, compression_of, decompressor
from minibox.image.archive.tarwriter import TarWriter, file_chunks, seekable

FORMATS = ("docker-archive", "oci-archive")
# progress(what, done, total): `what` names the blob, total is None when unknown.
Progress = Callable[[str, int, "int | None"], None]


@dataclass
class _Chosen:
    image: Any  # minibox.image.store.Image
    tags: list[str] = field(default_factory=list)


def _choose(store: Any, names: list[str]) -> list[_Chosen]:
    """Each named image once, with the names it was asked for by (never by id or digest)."""
    from minibox.image import reference

    chosen: dict[str, _Chosen] = {}
    for name in names:
        image = store.image(name)
        entry = chosen.setdefault(image.id, _Chosen(image))
        if reference.looks_like_id(name) and \
                image.id.removeprefix("sha256:").startswith(name.removeprefix("sha256:")):
            continue  # asked for by id: docker writes no name for it
        ref = reference.parse(name)
        if ref.digest is None and str(ref) not in entry.tags:
            entry.tags.append(str(ref))
    return list(chosen.values())


def save(store: Any, names: list[str], out: str | None, fmt: str = "docker-archive",
         progress: Progress | None = None) -> None:
    """Save `names` into the file `out` (stdout when None) in format `fmt`."""
    if fmt not in FORMATS:
        raise MiniboxError(f"unknown format {fmt!r} for save (use docker-archive or "
                           "oci-archive)")
    images = _choose(store, names)
    if out is None:
        _save_stdout(store, images, fmt, progress)
        return
    target = os.path.abspath(out)
    if os.path.isdir(target):
        raise MiniboxError(f"save -o {out}: is a directory (give a file name)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp",
                                   dir=os.path.dirname(target))
    except OSError as err:
        raise MiniboxError(f"save -o {out}: cannot create a file in "
                           f"{os.path.dirname(target)}: {err.strerror}") from None
    explain.step(f"open({tmp!r}, O_RDWR|O_CREAT|O_EXCL)", fd,
                 "the archive is written under a temporary name and renamed when whole",
                 "open(2)")
    try:
        with os.fdopen(fd, "w+b", buffering=CHUNK) as f:
            _write(store, images, fmt, f, progress)
            os.fchmod(f.fileno(), 0o644)
        os.rename(tmp, target)
        explain.step(f"rename({tmp!r}, {target!r})", 0,
                     "the finished archive appears under its name in one step", "rename(2)")
    except BaseException:
        os.unlink(tmp)
        raise


def _save_stdout(store: Any, images: list[_Chosen], fmt: str,
                 progress: Progress | None) -> None:
    if os.isatty(1):
        # docker's own words (cli/command/image/save.go).
        raise MiniboxError("cowardly refusing to save to a terminal. Use the -o flag or "
                           "redirect")
    out = os.fdopen(os.dup(1), "wb", buffering=CHUNK)
    with out:
        if seekable(out):
            _write(store, images, fmt, out, progress)
            return
        # A pipe cannot be seeked back to patch a layer's size: build the archive in the
        # store's tmp/ first, then copy it out.
        store.ensure()
        with tempfile.TemporaryFile(dir=store.tmp) as f:
            _write(store, images, fmt, f, progress)
            f.seek(0)
            for chunk in file_chunks(f):
                out.write(chunk)


def _write(store: Any, images: list[_Chosen], fmt: str, out: BinaryIO,
           progress: Progress | None) -> None:
    tar = TarWriter(out)
    if fmt == "docker-archive":
        _write_docker(store, images, tar, progress)
    else:
        _write_oci(store, images, tar, progress)
    tar.close()
    out.flush()


def _uncompressed(store: Any, digest: str, diff_id: str) -> Iterator[bytes]:
    """A stored layer blob as its uncompressed tar, checked against its diff_id."""
    with store.open_blob(digest) as f:
        first = f.read(CHUNK)
        kind = compression_of(first)
        dec = decompressor(kind) if kind else None
        h = hashlib.sha256()
        chunk = first
        while chunk:
            data = dec.decompress(chunk) if dec else chunk
            if data:
                h.update(data)
                yield data
            chunk = f.read(CHUNK)
        if dec is not None and not dec.eof:
            raise MiniboxError(f"stored layer {digest} is truncated (the store is damaged: "
                               "remove the image and load or pull it again)")
    if "sha256:" + h.hexdigest() != diff_id:
        raise MiniboxError(f"stored layer {digest} does not uncompress to its diff_id "
                           f"{diff_id} (the store is damaged: remove the image and load or "
                           "pull it again)")


def _counting(what: str, total: int | None,
              progress: Progress | None) -> Callable[[int], None] | None:
    if progress is None:
        return None
    return lambda done: progress(what, done, total)


def _write_docker(store: Any, images: list[_Chosen], tar: TarWriter,
                  progress: Progress | None) -> None:
    entries, tagged, written = [], {}, set()
    for chosen in images:
        image = chosen.image
        config_bytes = image.config_bytes
        layer_ids = docker.legacy_ids(image.diff_ids)
        for n, ((digest, _media, _size), diff_id, layer_id) in enumerate(
                zip(image.layers, image.diff_ids, layer_ids, strict=True)):
            if layer_id in written:
                continue
            written.add(layer_id)
            tar.add_bytes(f"{layer_id}/VERSION", b"1.0")
            tar.add_stream(f"{layer_id}/layer.tar", _uncompressed(store, digest, diff_id), None,
                           _counting(diff_id, None, progress))
            top = n == len(layer_ids) - 1
            tar.add_bytes(f"{layer_id}/json",
                          docker.layer_json(layer_id, layer_ids[n - 1] if n else None,
                                            image.config if top else None))
        tar.add_bytes(f"{image.config_digest.split(':', 1)[1]}.json", config_bytes)
        entries.append(docker.manifest_entry(image.config_digest, chosen.tags, layer_ids))
        for tag in chosen.tags:
            tagged[tag] = layer_ids[-1] if layer_ids else image.id.split(":", 1)[1]
    tar.add_bytes("manifest.json", json.dumps(entries, separators=(",", ":")).encode())
    tar.add_bytes("repositories", docker.repositories(tagged))


def _write_oci(store: Any, images: list[_Chosen], tar: TarWriter,
               progress: Progress | None) -> None:
    written: set[str] = set()
    index = []

    def blob(digest: str, size: int | None = None) -> None:
        if digest in written:
            return
        written.add(digest)
        size = store.blob_size(digest) if size is None else size
        with store.open_blob(digest) as f:
            tar.add_stream(oci.blob_name(digest), file_chunks(f), size,
                           _counting(digest, size, progress))

    tar.add_bytes("oci-layout", oci.LAYOUT)
    for chosen in images:
        image = chosen.image
        for digest, _media, size in image.layers:
            blob(digest, size)
        blob(image.config_digest)
        blob(image.manifest_digest)
        media = image.manifest.get("mediaType") or OCI_MANIFEST
        size = len(image.manifest_bytes)
        for name in chosen.tags or [None]:
            index.append(oci.descriptor(media, image.manifest_digest, size, name))
    tar.add_bytes("index.json", oci.index_json(index))

