"""The OCI image layout (image-spec v1.1, image-layout.md), in a directory or a tar.

    oci-layout          {"imageLayoutVersion": "1.0.0"}
    index.json          an image index: one descriptor per image, the name in the
                        org.opencontainers.image.ref.name annotation
    blobs/sha256/<hex>  manifests, configs, layers (as compressed as they were stored)

An index entry may itself be an index (a multi-platform image): the reader descends
into it and picks the manifest for this machine's platform (image-spec image-index.md,
`platform`), as `docker load` and `podman load` do.
"""

from __future__ import annotations

import hashlib
import json
import os

from minibox.errors import MiniboxError
from minibox.image.archive.model import (
    CONTAINERD_NAME,
    INDEXES,
    MANIFESTS,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME,
    Blob,
    Found,
    check_digest,
    diff_ids,
    parse_json,
)
from minibox.image.archive.source import Source

LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
_LAYER_PREFIXES = ("application/vnd.oci.image.layer.v1.tar",
                   "application/vnd.docker.image.rootfs.diff.tar")
_MAX_DEPTH = 4


def host_platform() -> tuple[str, str]:
    machine = os.uname().machine
    return "linux", _ARCH.get(machine, machine)


def is_oci_layout(src: Source) -> bool:
    return src.exists("oci-layout") and src.exists("index.json")


def blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.split(":", 1)[1]


def _read_blob(src: Source, desc: dict, what: str) -> bytes:
    """A small blob (manifest, index, config), checked against its descriptor."""
    digest = check_digest(desc.get("digest"), f"{src.description}: {what}")
    name = blob_name(digest)
    if not src.exists(name):
        raise MiniboxError(f"{src.description}: {what} blob {digest} is missing from the "
                           "archive (incomplete OCI layout)")
    data = src.read(name)
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise MiniboxError(f"{src.description}: {name}: digest mismatch: expected {digest}, "
                           f"the content is {actual} (corrupt archive)")
    size = desc.get("size")
    if isinstance(size, int) and size != len(data):
        raise MiniboxError(f"{src.description}: {name}: the descriptor says {size} bytes, "
                           f"the blob has {len(data)}")
    return data


def _platform_ok(desc: dict, want: tuple[str, str]) -> bool:
    platform = desc.get("platform")
    if not isinstance(platform, dict):
        return True
    return (platform.get("os"), platform.get("architecture")) == want


def _names(desc: dict) -> list[str]:
    notes = desc.get("annotations") or {}
    if not isinstance(notes, dict):
        return []
    name = notes.get(CONTAINERD_NAME) or notes.get(REF_NAME)
    return [name] if isinstance(name, str) and name else []


Manifests = list[tuple[dict, bytes]]  # (manifest descriptor, manifest bytes)


def _manifests(src: Source, desc: dict, want: tuple[str, str], depth: int) -> Manifests:
    """The image manifests a descriptor leads to, descending through nested indexes."""
    media = desc.get("mediaType")
    if media in MANIFESTS:
        return [(desc, _read_blob(src, desc, "manifest"))]
    if media not in INDEXES:
        raise MiniboxError(f"{src.description}: index.json names a {media!r}, not an image "
                           "manifest or index")
    if depth >= _MAX_DEPTH:
        raise MiniboxError(f"{src.description}: indexes nested more than {_MAX_DEPTH} deep")
    index = parse_json(_read_blob(src, desc, "index"), f"{src.description}: index "
                       f"{desc.get('digest')}")
    return _pick(src, index, want, depth + 1, str(desc.get("digest")))


def _pick(src: Source, index: object, want: tuple[str, str], depth: int,
          where: str) -> Manifests:
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise MiniboxError(f"{src.description}: {where} has no manifests list")
    if depth > 0:
        # Inside a multi-platform index: exactly this machine's platform.
        fitting = [e for e in entries if _platform_ok(e, want) and e.get("mediaType") in
                   MANIFESTS + INDEXES]
        if not fitting:
            raise MiniboxError(f"{src.description}: {where} has no {want[0]}/{want[1]} "
                               "image (it was saved for other platforms)")
        entries = fitting[:1]
    found = []
    for entry in entries:
        for desc, data in _manifests(src, entry, want, depth):
            # A name on the outer descriptor names whatever it leads to.
            found.append(({**desc, "annotations": {**(desc.get("annotations") or {}),
                                                   **(entry.get("annotations") or {})}}
                          if entry is not desc else desc, data))
    return found


def read(src: Source) -> list[Found]:
    layout = parse_json(src.read("oci-layout"), f"{src.description}: oci-layout")
    version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
    if not isinstance(version, str) or not version.startswith("1."):
        raise MiniboxError(f"{src.description}: oci-layout has imageLayoutVersion "
                           f"{version!r}; minibox reads 1.x")
    index = parse_json(src.read("index.json"), f"{src.description}: index.json")
    want = host_platform()
    entries = _pick(src, index, want, 0, "index.json")
    # A flat index.json may list one manifest per platform (no nested index): keep ours.
    if any("platform" in d for d, _ in entries):
        ours = [(d, b) for d, b in entries if _platform_ok(d, want)]
        if not ours:
            raise MiniboxError(f"{src.description}: index.json has no {want[0]}/{want[1]} "
                               "image")
        entries = ours
    images: dict[str, Found] = {}
    for desc, data in entries:
        digest = desc["digest"]
        if digest in images:  # the same image under a second name
            images[digest].refs.extend(n for n in _names(desc)
                                       if n not in images[digest].refs)
            continue
        images[digest] = _image(src, desc, data)
    return list(images.values())


def _image(src: Source, desc: dict, data: bytes) -> Found:
    where = f"{src.description}: manifest {desc['digest']}"
    manifest = parse_json(data, where)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict) \
            or not isinstance(manifest.get("layers"), list):
        raise MiniboxError(f"{where} has no config or layers (not an image manifest)")
    config_desc = manifest["config"]
    config_bytes = _read_blob(src, config_desc, "config")
    config = parse_json(config_bytes, f"{where}: config")
    ids = diff_ids(config, f"{where}: config")
    layer_descs = manifest["layers"]
    if len(ids) != len(layer_descs):
        raise MiniboxError(f"{where} lists {len(layer_descs)} layers but its config has "
                           f"{len(ids)} diff_ids")
    layers = []
    for layer, diff_id in zip(layer_descs, ids, strict=True):
        if not isinstance(layer, dict):
            raise MiniboxError(f"{where}: a layer descriptor is not an object")
        media = str(layer.get("mediaType", ""))
        if not media.startswith(_LAYER_PREFIXES) or "nondistributable" in media \
                or "foreign" in media:
            raise MiniboxError(f"{where}: layer media type {media!r} is not a tar layer "
                               "minibox can load (non-distributable layers are not "
                               "carried in archives)")
        digest = check_digest(layer.get("digest"), f"{where}: layer")
        name = blob_name(digest)
        if not src.exists(name):
            raise MiniboxError(f"{src.description}: layer blob {digest} is missing from the "
                               "archive (incomplete OCI layout)")
        size = src.size(name)
        if isinstance(layer.get("size"), int) and layer["size"] != size:
            raise MiniboxError(f"{src.description}: {name}: the manifest says "
                               f"{layer['size']} bytes, the blob has {size}")
        layers.append(Blob(name, digest, size, media, diff_id))
    return Found(Blob(blob_name(config_desc["digest"]), config_desc["digest"],
                      len(config_bytes), str(config_desc.get("mediaType", ""))),
                 config_bytes, layers, _names(desc), data)


def index_json(entries: list[dict]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries},
                      separators=(",", ":")).encode()


def descriptor(media_type: str, digest: str, size: int, name: str | None) -> dict:
    desc: dict = {"mediaType": media_type or OCI_MANIFEST, "digest": digest, "size": size}
    if name:
        desc["annotations"] = {REF_NAME: name}
    return desc
