"""What a reader finds in an archive: images as lists of blobs, before anything is stored."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from minibox.errors import MiniboxError

# Media types (image-spec media-types.md; Docker's image manifest v2 schema 2).
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
REF_NAME = "org.opencontainers.image.ref.name"
# containerd and Docker 25+ keep the full name here and only the tag in REF_NAME.
CONTAINERD_NAME = "io.containerd.image.name"

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass
class Blob:
    """One file of an image inside an archive.

    `digest` is what the archive promises its sha256 is (None when the layout does not
    say: a docker-archive layer that turns out to be compressed). `diff_id` (layers only)
    is the sha256 of the uncompressed tar, from the image config.
    """

    name: str
    digest: str | None
    size: int
    media_type: str
    diff_id: str | None = None


@dataclass
class Found:
    """One image of an archive: its config, its layers (lowest first), its names."""

    config: Blob
    config_bytes: bytes
    layers: list[Blob]
    refs: list[str] = field(default_factory=list)
    # The manifest as the archive holds it (OCI layout), kept byte for byte so the image
    # keeps its digest; None for docker-archive, which has none (one is made on load).
    manifest_bytes: bytes | None = None


def check_digest(digest: object, where: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise MiniboxError(f"{where}: {digest!r} is not a sha256 digest "
                           "(sha256:<64 hex digits>) minibox can check")
    return digest


def parse_json(data: bytes, where: str) -> object:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise MiniboxError(f"{where} is not valid JSON ({err})") from None


def diff_ids(config: object, where: str) -> list[str]:
    """The config's rootfs.diff_ids (image-spec config.md), checked."""
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list):
        raise MiniboxError(f"{where}: the image config has no rootfs.diff_ids "
                           "(is it an image config?)")
    return [check_digest(d, f"{where}: rootfs.diff_ids") for d in ids]
