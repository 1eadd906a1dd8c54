"""Pull: a manifest (any common type), its config and layers, verified, into the image store.

The steps (distribution-spec v1.1 "Pull"; image-spec v1.1 manifest.md, image-index.md):

1. GET /v2/NAME/manifests/REF with every manifest type in Accept. Without the OCI types a
   tag pushed as OCI is "unknown"; without Docker schema2 the registry converts a Docker
   tag to the old schema1 (another digest). The body's sha256 is the manifest's digest:
   it must equal the digest asked for and the Docker-Content-Digest header.
2. An index (OCI) or manifest list (Docker) names one manifest per platform: take the one
   for this machine (linux/amd64 here) and GET it by digest.
3. The config and every layer the store does not hold yet: GET /v2/NAME/blobs/DIGEST,
   several at once, each hashed while it is written to the store's tmp/ and handed to the
   store only when its sha256 matches. Layers already present are not fetched.
4. The store records the image and tags it. Layers are not unpacked here: the image's
   first run does that (Image.unpack, which also checks each diff_id), so a pull is the
   same work as `skopeo copy` into an oci: layout, and an image only pushed on, saved or
   inspected is never unpacked at all.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from minibox.errors import MiniboxError
from minibox.image.registry.client import Registry, Restart

if TYPE_CHECKING:  # for the type hints only
    from minibox.image.reference import Ref
    from minibox.image.store import Store

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)

# Layers fetched at once. Over loopback one stream already runs at disk speed; more help
# when the latency is real. Each extra stream costs a thread and a connection.
PARALLEL = 3

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def platform_arch() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def get_manifest(reg: Registry, repo: str, reference: str, shown: str) -> tuple[bytes, str, str]:
    """(body, media type, digest) of a manifest, its digest checked."""
    resp = reg.request("GET", f"/v2/{repo}/manifests/{reference}", {"Accept": ACCEPT},
                       scope=f"repository:{repo}:pull",
                       why="fetch the manifest (Accept: OCI and Docker types)")
    if resp.status == 404:
        raise MiniboxError(f"manifest for {shown} not found: {resp.error_text()}")
    if resp.status == 401:
        raise MiniboxError(f"pull access denied for {shown}: {resp.error_text()} "
                           f"(run: minibox login {reg.host})")
    if resp.status != 200:
        raise MiniboxError(f"manifest for {shown}: {resp.error_text()}")
    body = resp.read()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if reference.startswith("sha256:") and digest != reference:
        raise MiniboxError(f"manifest for {shown}: the registry sent content hashing to "
                           f"{digest}, not {reference}; nothing was stored")
    header = resp.header("Docker-Content-Digest")
    if header and header.startswith("sha256:") and header != digest:
        raise MiniboxError(f"manifest for {shown}: Docker-Content-Digest says {header} but "
                           f"the content hashes to {digest}; nothing was stored")
    try:
        doc = json.loads(body)
    except ValueError:
        raise MiniboxError(f"manifest for {shown} is not JSON") from None
    media = (resp.header("Content-Type") or "").split(";")[0].strip()
    if media not in INDEXES + MANIFESTS:
        media = doc.get("mediaType") or (OCI_INDEX if "manifests" in doc else OCI_MANIFEST)
    if doc.get("schemaVersion") == 1 or "schema1" in media:
        raise MiniboxError(f"manifest for {shown} is Docker schema1, which minibox does not "
                           "read (push the image again with a current client)")
    return body, media, digest


def choose(index: dict, shown: str, want: str | None = None) -> str:
    """The digest of the OS/ARCH[/VARIANT] manifest of an index or manifest list
    (image-index.md "platform"); by default linux/<this machine's architecture>."""
    want = want or f"linux/{platform_arch()}"
    found = []
    for m in index.get("manifests") or []:
        plat = m.get("platform") or {}
        name = f"{plat.get('os')}/{plat.get('architecture')}"
        full = name + (f"/{plat['variant']}" if plat.get("variant") else "")
        found.append(full)
        if want in (name, full):
            return m["digest"]
    raise MiniboxError(f"{shown} has no image for {want} (it has: "
                       f"{', '.join(found) or 'none'})")


def pull(store: Store, ref: Ref, reg: Registry, say: Callable[[str], None],
         progress: Callable[[str, int | None], Callable[[int], None]] | None = None,
         platform_name: str | None = None,
         status: Callable[[str, str], None] | None = None) -> str:
    """Pull `ref` (a reference.Ref with a registry) into `store`; returns the manifest digest.

    `progress(digest, size)` gives the callback that is told the bytes of that blob as
    they arrive (the CLI draws one bar per layer with it); `status(digest, text)` is told
    what a layer is doing when no bytes show it ("Download complete")."""
    repo = ref.repository
    reference = ref.digest or ref.tag
    shown = str(ref)
    if not ref.digest:
        say(f"{ref.tag}: Pulling from {repo}")
    body, media, digest = get_manifest(reg, repo, reference, shown)
    top = digest  # what the tag names (an index's digest, as docker prints it)
    if media in INDEXES:
        store.put_blob(body, expected=digest, media_type=media)
        body, media, digest = get_manifest(reg, repo, choose(json.loads(body), shown,
                                                             platform_name), shown)
    manifest = json.loads(body)
    config = manifest.get("config") or {}
    layers = manifest.get("layers") or []
    if not config.get("digest"):
        raise MiniboxError(f"manifest for {shown} names no config blob")

    def fetch(desc: dict, bar: bool = True) -> None:
        # The store streams the blob to its tmp/, hashing, and keeps it only when the
        # sha256 is the digest; a registry that cannot resume makes us read it again.
        for attempt in range(3):
            tick = progress(desc["digest"], desc.get("size")) if progress and bar else None
            reader = reg.blob_reader(repo, desc["digest"], desc.get("size"), tick)
            try:
                store.put_blob(reader, expected=desc["digest"],
                               media_type=desc.get("mediaType"))
                return
            except Restart:
                if attempt == 2:
                    raise MiniboxError(f"blob {desc['digest']}: the connection kept "
                                       "dropping; pull again") from None
            finally:
                if reader.resp is not None:
                    reader.resp.raw.close()

    if not store.has_blob(config["digest"]):
        fetch(config, bar=False)
    with store.open_blob(config["digest"]) as f:
        try:
            diff_ids = (json.load(f).get("rootfs") or {}).get("diff_ids") or []
        except ValueError:
            raise MiniboxError(f"the config of {shown} is not JSON") from None
    if len(diff_ids) != len(layers):
        raise MiniboxError(f"{shown}: the config lists {len(diff_ids)} layers, the manifest "
                           f"{len(layers)}")

    def layer(desc: dict) -> None:
        fetch(desc)
        if status:
            status(desc["digest"], "Download complete")

    todo = []
    for desc in layers:
        short = desc["digest"].split(":")[-1][:12]
        if store.has_blob(desc["digest"]):
            say(f"{short}: Already exists")
        else:
            todo.append(desc)
    if todo:
        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(todo))) as pool:
            futures = [(desc, pool.submit(layer, desc)) for desc in todo]
            error: BaseException | None = None
            for desc, fut in futures:
                try:
                    fut.result()
                except BaseException as err:  # noqa: BLE001 - the first is raised below
                    error = error or err
                    continue
                say(f"{desc['digest'].split(':')[-1][:12]}: Pull complete")
            if error:
                raise error
    before = None
    if not ref.digest:
        try:
            before = store.image(shown).manifest_digest
        except MiniboxError:
            before = None
    store.add_image(body, None if ref.digest else shown, unpack=False)
    say(f"Digest: {top}")
    if before == digest:
        say(f"Status: Image is up to date for {shown}")
    else:
        say(f"Status: Downloaded newer image for {shown}")
    return digest
