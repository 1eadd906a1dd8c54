"""The docker-archive layout: what `docker save` and `podman save` (the default) write.

    manifest.json   [{"Config": "<hex>.json", "RepoTags": ["name:tag"],
                      "Layers": ["<id>/layer.tar", ...]}]        (one entry per image)
    repositories    {"name": {"tag": "<legacy id of the top layer>"}}  (docker < 1.10 reads it)
    <hex>.json      the image config; <hex> is its sha256, which is the image id
    <id>/layer.tar  each layer, an uncompressed tar: its sha256 is the layer's diff_id
    <id>/VERSION, <id>/json   the legacy (v1) layer metadata older loaders want

Docker 25 and later put the same manifest.json beside an OCI layout (Config and Layers
then name `blobs/sha256/<hex>`); podman writes `<hex>.tar` layers with legacy symlinks.
The reader only follows manifest.json, so it reads all of them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable

from minibox.errors import MiniboxError
from minibox.image.archive.model import (
    OCI_CONFIG,
    OCI_LAYER,
    Blob,
    Found,
    diff_ids,
    parse_json,
)
from minibox.image.archive.source import Source, compression_of

_HEX_NAME = re.compile(r"(?:^|/)(?:sha256[:/])?([0-9a-f]{64})(?:\.json|\.tar)?$")


def is_docker_archive(src: Source) -> bool:
    return src.exists("manifest.json")


def _named_digest(name: str) -> str | None:
    """The digest a file's name promises (`<hex>.json`, `blobs/sha256/<hex>`), if any."""
    m = _HEX_NAME.search(name)
    return f"sha256:{m.group(1)}" if m else None


def read(src: Source) -> list[Found]:
    where = f"{src.description}: manifest.json"
    doc = parse_json(src.read("manifest.json"), where)
    if not isinstance(doc, list) or not doc or not all(isinstance(e, dict) for e in doc):
        raise MiniboxError(f"{where} is not a list of images (Config, RepoTags, Layers)")
    images = []
    for n, entry in enumerate(doc):
        config_name, layer_names = entry.get("Config"), entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layer_names, list) \
                or not all(isinstance(x, str) for x in layer_names):
            raise MiniboxError(f"{where}: image {n} has no Config file or Layers list")
        config_bytes = src.read(config_name)
        digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        promised = _named_digest(config_name)
        if promised and promised != digest:
            raise MiniboxError(f"{src.description}: {config_name}: digest mismatch: the "
                               f"name says {promised}, the content is {digest} (corrupt "
                               "archive)")
        config = parse_json(config_bytes, f"{src.description}: {config_name}")
        ids = diff_ids(config, f"{src.description}: {config_name}")
        if len(ids) != len(layer_names):
            raise MiniboxError(f"{where}: image {n} lists {len(layer_names)} layers but its "
                               f"config has {len(ids)} diff_ids")
        layers = []
        for name, diff_id in zip(layer_names, ids, strict=True):
            with src.open(name) as f:
                kind = compression_of(f.read(8))
            media_type = OCI_LAYER if kind is None else f"{OCI_LAYER}+{kind}"
            if kind == "bzip2" or kind == "xz":
                # The OCI layer types name gzip and zstd only (image-spec layer.md).
                raise MiniboxError(f"{src.description}: layer {name} is {kind}-compressed; "
                                   "an image layer must be plain, gzip or zstd")
            # An uncompressed layer's digest is its diff_id; a compressed one's is learnt
            # while it is copied (the diff_id is still checked, by decompressing).
            layers.append(Blob(name, diff_id if kind is None else None, src.size(name),
                               media_type, diff_id))
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise MiniboxError(f"{where}: image {n} has a RepoTags that is not a list of names")
        images.append(Found(Blob(config_name, digest, len(config_bytes), OCI_CONFIG),
                            config_bytes, layers, list(tags)))
    return images


def legacy_ids(diff_id_list: Iterable[str]) -> list[str]:
    """Stable v1 layer ids for the legacy directories: each hashes its parent and diff_id.

    Docker derives them from the chain of layers too (image/v1/imagev1.go); any value
    unique per layer chain does, since loaders that read manifest.json ignore them.
    """
    ids, parent = [], ""
    for diff_id in diff_id_list:
        parent = hashlib.sha256(f"{parent}\n{diff_id}".encode()).hexdigest()
        ids.append(parent)
    return ids


def manifest_entry(config_digest: str, tags: list[str], layer_ids: list[str]) -> dict:
    return {"Config": f"{config_digest.split(':', 1)[1]}.json",
            "RepoTags": tags or None,
            "Layers": [f"{i}/layer.tar" for i in layer_ids]}


def layer_json(layer_id: str, parent: str | None, config: dict | None) -> bytes:
    """The legacy <id>/json: the id and parent; the top layer also carries the config."""
    doc: dict = {"id": layer_id}
    if parent:
        doc["parent"] = parent
    if config is not None:
        for key in ("created", "architecture", "os", "config", "author"):
            if key in config:
                doc[key] = config[key]
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def repositories(tagged: dict[str, str]) -> bytes:
    """`repositories`: {"repo": {"tag": top layer id}} for every name:tag saved."""
    doc: dict[str, dict[str, str]] = {}
    for name, top in tagged.items():
        repo, _, tag = name.rpartition(":")
        if "/" in tag or not repo:
            repo, tag = name, "latest"
        doc.setdefault(repo, {})[tag] = top
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

