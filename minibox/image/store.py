"""The image store: content-addressed blobs, unpacked layers, and names.

On disk, under the data root (default /var/lib/minibox, `--data-root` to change):

    blobs/sha256/HEX      every blob by the sha256 of its bytes: layer tarballs (as
                          received), configs, manifests (image-spec descriptor.md)
    layers/HEX/           each layer unpacked once, named by its diff_id: an overlayfs
                          lowerdir, shared by every image that has the layer (import,
                          load and commit unpack at once; a pulled image's layers are
                          unpacked by its first run, so pull does what `skopeo copy`
                          to an oci: layout does: fetch and verify)
    layers/HEX.json       what the layer came from and how big it is uncompressed
    images/HEX.json       one record per image (HEX = manifest digest): when it was
                          added, its parent (for commit), so untagged images are known
    refs.json             {"name:tag": "sha256:<manifest digest>"}
    tmp/                  staging: NAME.PID; nothing here is ever seen as finished
    lock                  flock(2) for changes to refs.json and images/

Everything is written under tmp/ and renamed into place (rename(2) is atomic), so a
half-finished import, load or pull leaves nothing a reader could take for real.
"""

from __future__ import annotations

import os
import time

from minibox import explain
from minibox.errors import MiniboxError
from minibox.image import DEFAULT_ROOT, default_root, reference  # noqa: F401 - re-exported
from minibox.jsonread import load_file, loads

TYPE_CHECKING = False  # typing (and the re it imports) costs ms on the run path
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import IO


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
_CHUNK = 1 << 20


def _hex(digest: str) -> str:
    algo, _, h = digest.partition(":")
    if algo != "sha256" or len(h) != 64 or not all(c in "0123456789abcdef" for c in h):
        raise MiniboxError(f"invalid digest {digest!r}: minibox stores sha256 digests only")
    return h


class Image:
    """One stored image: its manifest, config and layers (lowest first)."""

    def __init__(self, store: Store, manifest_digest: str, record: dict | None = None) -> None:
        self.store = store
        self.manifest_digest = manifest_digest
        with store.open_blob(manifest_digest) as f:
            self.manifest_bytes = f.read()
        self.manifest: dict = loads(self.manifest_bytes, f"manifest {manifest_digest}")
        cfg = self.manifest["config"]
        self.config_digest: str = cfg["digest"]
        with store.open_blob(self.config_digest) as f:
            self.config_bytes = f.read()
        self.config: dict = loads(self.config_bytes, f"config {self.config_digest}")
        self.id = self.config_digest
        self.layers: list[tuple[str, str, int]] = [
            (d["digest"], d.get("mediaType", ""), int(d.get("size", 0)))
            for d in self.manifest.get("layers", [])]
        self.diff_ids: list[str] = list(self.config.get("rootfs", {}).get("diff_ids", []))
        self._record_cache = record

    @property
    def record(self) -> dict:
        """The store's own facts about the image (when added, its parent); read lazily,
        since `run` does not need them."""
        if self._record_cache is None:
            self._record_cache = self.store._record(self.manifest_digest)
        return self._record_cache

    @property
    def refs(self) -> list[str]:
        return sorted(n for n, d in self.store.refs().items() if d == self.manifest_digest)

    @property
    def short_id(self) -> str:
        return _hex(self.id)[:12]

    def layer_dirs(self) -> list[str]:
        """The unpacked layers, lowest first (overlayfs wants them highest first)."""
        return [self.store.layer_dir(d) for d in self.diff_ids]

    def layer_sizes(self) -> list[int]:
        """Per layer, lowest first: its uncompressed size once unpacked; before that (a
        pulled image not run yet) its blob's size, the only size known without
        unpacking, as docker's containerd store shows content size."""
        return [self.store.layer_size(d, size)
                for (_blob, _mt, size), d in zip(self.layers, self.diff_ids, strict=False)]

    def size(self) -> int:
        """Size of all layers, as docker's SIZE column counts it (see layer_sizes)."""
        return sum(self.layer_sizes())

    def unpack(self, progress: Callable[[str], None] | None = None) -> list[str]:
        """Unpack the layers not unpacked yet (pull only fetches; the first run of the
        image unpacks) and return the layer dirs. `progress(blob digest)` is told of
        each layer before it is unpacked."""
        for (blob, media_type, _size), diff_id in zip(self.layers, self.diff_ids,
                                                      strict=True):
            if self.store.has_layer(diff_id):
                continue
            if not self.store.has_blob(blob):
                raise MiniboxError(f"image {self.short_id} is damaged: layer {blob} is "
                                   "neither unpacked nor in the store (remove the image with "
                                   "rmi and pull or load it again)")
            if progress:
                progress(blob)
            self.store.ensure_layer(blob, diff_id, media_type)
        return self.layer_dirs()

    @property
    def created(self) -> str:
        return self.config.get("created") or ""

    @property
    def parent(self) -> str:
        return self.record.get("parent", "")

    def __repr__(self) -> str:
        return f"Image({self.short_id}, {self.refs})"


class Store:
    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or default_root())
        self.blobs = os.path.join(self.root, "blobs", "sha256")
        self.layers_dir = os.path.join(self.root, "layers")
        self.images_dir = os.path.join(self.root, "images")
        self.tmp = os.path.join(self.root, "tmp")
        self.refs_path = os.path.join(self.root, "refs.json")

    def ensure(self) -> None:
        for d in (self.blobs, self.layers_dir, self.images_dir, self.tmp):
            os.makedirs(d, mode=0o711, exist_ok=True)
        self._sweep_tmp()

    def _sweep_tmp(self) -> None:
        """Remove what a minibox killed while writing left in tmp/ (NAME.PID entries)."""
        try:
            entries = list(os.scandir(self.tmp))
        except FileNotFoundError:
            return
        for entry in entries:
            pid = entry.name.rpartition(".")[2]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                _rm(entry.path)

    def tmp_path(self, name: str) -> str:
        """A fresh staging path under tmp/ (NAME.PID; swept if this process dies)."""
        self.ensure()
        base = os.path.join(self.tmp, f"{name}-{os.urandom(4).hex()}.{os.getpid()}")
        return base

    # -- locking ----------------------------------------------------------------------

    def locked(self) -> _Lock:
        """`with store.locked():` exclusive over refs.json and images/ (flock(2))."""
        self.ensure()
        return _Lock(os.path.join(self.root, "lock"))

    # -- blobs ------------------------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        return os.path.join(self.blobs, _hex(digest))

    def has_blob(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def open_blob(self, digest: str) -> IO[bytes]:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise MiniboxError(f"blob {digest} is not in the store {self.root} "
                               "(was the image removed, or its load interrupted?)") from None

    def blob_size(self, digest: str) -> int:
        return os.stat(self.blob_path(digest)).st_size

    def put_blob(self, data: bytes | IO[bytes], expected: str | None = None,
                 media_type: str | None = None) -> str:
        """Store a blob while hashing it; with `expected`, refuse bytes that do not match.

        Streams to tmp/ and renames into blobs/sha256/HEX only once the digest is known
        and checked, so a blob is never visible under a name its bytes do not have.
        """
        if expected is not None:
            _hex(expected)
        tmp = self.tmp_path("blob")
        import hashlib

        sha = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    sha.update(data)
                    out.write(data)
                else:
                    while chunk := data.read(_CHUNK):
                        sha.update(chunk)
                        out.write(chunk)
            digest = "sha256:" + sha.hexdigest()
            if expected is not None and digest != expected:
                kind = f" ({media_type})" if media_type else ""
                raise MiniboxError(f"blob{kind} digest mismatch: expected {expected}, "
                                   f"its content is {digest}; nothing was stored")
            os.chmod(tmp, 0o644)
            _rename(tmp, self.blob_path(digest), f"the bytes hash to {digest[:19]}…: the "
                    "blob enters the store under the name of its own digest")
        except BaseException:
            _rm(tmp)
            raise
        return digest

    # -- layers -----------------------------------------------------------------------

    def layer_dir(self, diff_id: str) -> str:
        return os.path.join(self.layers_dir, _hex(diff_id))

    def has_layer(self, diff_id: str) -> bool:
        return os.path.isdir(self.layer_dir(diff_id))

    def layer_info(self, diff_id: str) -> dict:
        try:
            return load_file(self.layer_dir(diff_id) + ".json")
        except (OSError, MiniboxError):
            return {}

    def layer_size(self, diff_id: str, default: int = 0) -> int:
        """The unpacked size of a layer; `default` when it is not unpacked (yet)."""
        if not self.has_layer(diff_id):
            return default
        return int(self.layer_info(diff_id).get("size", 0))

    def ensure_layer(self, blob_digest: str, diff_id: str, media_type: str | None = None,
                     progress: object = None) -> str:
        """Unpack the layer blob into layers/<diff_id> unless it is there; return the dir.

        Unpacked under tmp/ first, then renamed: a layer directory that exists is whole.
        The unpacked tar's sha256 must equal `diff_id` (image-spec config.md), or the
        layer is refused and nothing stays. `progress(n)` hears of each n uncompressed
        bytes unpacked.
        """
        from minibox.image import layer

        dest = self.layer_dir(diff_id)
        if os.path.isdir(dest):
            return dest
        # By the bytes, not the media type: some writers label gzip layers as plain tar.
        compression = "auto"
        stage = self.tmp_path("layer")
        try:
            os.mkdir(stage, 0o755)
            with self.open_blob(blob_digest) as f:
                applied = layer.apply(f, stage, compression,
                                      what=f"layer {blob_digest[:19]}", progress=progress)
            if applied.diff_id != diff_id:
                raise MiniboxError(f"layer {blob_digest}: its content is {applied.diff_id}, "
                                   f"but the image config says {diff_id}; refused")
            info = {"blob": blob_digest, "media_type": media_type or "", "size": applied.size}
            return self._adopt_layer(stage, diff_id, info)
        except BaseException:
            _rm(stage)
            raise

    def import_layer(self, src: str | IO[bytes], progress: object = None,
                     what: str = "layer") -> tuple[str, str, int]:
        """A tar stream (gzip, zstd or plain) -> a gzip layer blob and its unpacked dir,
        in one pass: the tar is unpacked while a gzip copy is written and hashed.
        Returns (blob digest, diff_id, blob size)."""
        from minibox.image import layer

        stage = self.tmp_path("layer")
        blob = self.tmp_path("blob")
        try:
            os.mkdir(stage, 0o755)
            with open(blob, "wb") as out:
                hw = layer.HashingWriter(out)
                gz = layer.GzipMembers(hw, layer.GZIP_LEVEL)
                try:
                    applied = layer.apply(src, stage, what=what, tee=gz,  # type: ignore
                                          progress=progress)
                finally:
                    gz.close()
            digest = "sha256:" + hw.sha.hexdigest()
            os.chmod(blob, 0o644)
            _rename(blob, self.blob_path(digest), f"the layer's gzip blob, written while the "
                    f"tar was unpacked, is {digest[:19]}…")
            self._adopt_layer(stage, applied.diff_id,
                              {"blob": digest, "media_type": OCI_LAYER_GZIP,
                               "size": applied.size})
        except BaseException:
            _rm(stage)
            _rm(blob)
            raise
        return digest, applied.diff_id, hw.size

    def layer_from_dir(self, src: str, progress: object = None) -> tuple[str, str, int]:
        """A directory (a rootfs, or an overlay upper dir with its whiteouts) -> a gzip
        layer blob and its unpacked dir. Returns (blob digest, diff_id, blob size)."""
        from minibox.image import layer

        blob = self.tmp_path("blob")
        stage = self.tmp_path("layer")
        try:
            os.mkdir(stage, 0o755)
            with open(blob, "wb") as out:
                stats: dict = {}
                digest, diff_id, size = layer.write_layer(src, out, progress, mirror=stage,
                                                          stats=stats)
            os.chmod(blob, 0o644)
            _rename(blob, self.blob_path(digest), f"the new layer's gzip blob (whiteouts as "
                    f".wh. files) is {digest[:19]}…")
            st = os.stat(src)
            os.chown(stage, st.st_uid, st.st_gid)
            os.chmod(stage, st.st_mode & 0o7777)
            self._adopt_layer(stage, diff_id, {"blob": digest, "media_type": OCI_LAYER_GZIP,
                                               "size": stats["tar_size"]})
        except BaseException:
            _rm(blob)
            _rm(stage)
            raise
        return digest, diff_id, size

    def _adopt_layer(self, stage: str, diff_id: str, info: dict) -> str:
        dest = self.layer_dir(diff_id)
        if os.path.isdir(dest):
            _rm(stage)
            return dest
        _write_atomic(dest + ".json", _dumps(dict(info, diff_id=diff_id)).encode(), self)
        try:
            _rename(stage, dest, f"layer {diff_id[:19]}… unpacked whole, its whiteouts made "
                    "overlayfs whiteouts (char 0/0, trusted.overlay.opaque): a ready lowerdir")
        except OSError as err:
            if not os.path.isdir(dest):  # not "someone else unpacked it meanwhile"
                _rm(dest + ".json")
                raise MiniboxError(f"cannot store layer {diff_id}: {err}") from None
            _rm(stage)
        return dest

    # -- images -----------------------------------------------------------------------

    def _record_path(self, manifest_digest: str) -> str:
        return os.path.join(self.images_dir, _hex(manifest_digest) + ".json")

    def _record(self, manifest_digest: str) -> dict:
        try:
            return load_file(self._record_path(manifest_digest))
        except (OSError, MiniboxError):
            return {}

    def add_image(self, manifest_bytes: bytes, ref: str | None = None, *,
                  parent: str = "", progress: object = None, unpack: bool = True) -> str:
        """Record an image whose config and layer blobs are in the store already.

        The manifest is stored byte for byte (its digest is its identity); missing
        layers are unpacked (unless `unpack` is false: pull leaves that to the image's
        first run, Image.unpack); then `ref` (if any) is pointed at it. Returns the
        manifest digest.
        """
        manifest = loads(manifest_bytes, "image manifest")
        if not isinstance(manifest, dict):
            raise MiniboxError("image manifest is not a JSON object")
        mt = manifest.get("mediaType")
        if manifest.get("schemaVersion") != 2 or (mt and mt not in MANIFEST_TYPES) or \
                not isinstance(manifest.get("config"), dict):
            raise MiniboxError(f"unsupported manifest (schemaVersion "
                               f"{manifest.get('schemaVersion')}, mediaType {mt}): minibox "
                               "reads OCI image manifests and Docker schema 2 manifests")
        config_digest = manifest["config"].get("digest", "")
        if not self.has_blob(config_digest):
            raise MiniboxError(f"image config {config_digest} is not in the store")
        with self.open_blob(config_digest) as f:
            config = loads(f.read(), f"image config {config_digest}")
        if not isinstance(config, dict):
            raise MiniboxError(f"image config {config_digest} is not a JSON object")
        layers = manifest.get("layers") or []
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(layers) != len(diff_ids):
            raise MiniboxError(f"image config {config_digest[:19]} lists {len(diff_ids)} "
                               f"diff_ids for {len(layers)} layers in the manifest")
        for desc in layers:
            if not self.has_blob(desc.get("digest", "")):
                raise MiniboxError(f"layer {desc.get('digest')} is not in the store")
        if ref is not None:
            ref = str(reference.parse(ref))
        for desc, diff_id in zip(layers, diff_ids, strict=True):
            if unpack:
                self.ensure_layer(desc["digest"], diff_id, desc.get("mediaType"), progress)
        digest = self.put_blob(manifest_bytes, media_type=mt or OCI_MANIFEST)
        with self.locked():
            path = self._record_path(digest)
            if not os.path.exists(path):
                record = {"manifest": digest, "added": time.time(), "parent": parent}
                _write_atomic(path, _dumps(record).encode(), self)
            if ref is not None:
                refs = self.refs()
                refs[ref] = digest
                self._write_refs(refs)
        return digest

    def has_image(self, manifest_digest: str) -> bool:
        return os.path.exists(self._record_path(manifest_digest))

    def image(self, ref_or_id: str) -> Image:
        """Resolve a name ("busybox", "a/b:1", "name@sha256:…") or an image id (full or
        a unique prefix, with or without "sha256:"), in docker's order."""
        text = ref_or_id
        if not text:
            raise MiniboxError("No such image: (empty name)")
        refs = self.refs()
        parsed = None
        try:
            parsed = reference.parse(text)
        except MiniboxError:
            if not reference.looks_like_id(text):
                raise
        if parsed is not None:
            if parsed.digest:
                if self.has_image(parsed.digest):
                    return Image(self, parsed.digest)
            elif str(parsed) in refs:
                return Image(self, refs[str(parsed)])
        if reference.looks_like_id(text):
            want = text.removeprefix("sha256:")
            found: dict[str, str] = {}
            for d in self.image_digests():
                img = Image(self, d)
                if _hex(img.id).startswith(want):
                    found.setdefault(img.id, d)
            if len(found) == 1:
                return Image(self, next(iter(found.values())))
            if len(found) > 1 and len(want) < 64:
                raise MiniboxError(f"multiple images found with provided prefix: {want}")
        raise MiniboxError(f"No such image: {text}")

    def image_digests(self) -> list[str]:
        try:
            return sorted("sha256:" + n[:-5] for n in os.listdir(self.images_dir)
                          if n.endswith(".json") and len(n) == 69)
        except FileNotFoundError:
            return []

    def images(self) -> list[Image]:
        out = []
        for d in self.image_digests():
            try:
                out.append(Image(self, d))
            except (MiniboxError, OSError, ValueError):
                continue  # removed meanwhile
        return out

    # -- names ------------------------------------------------------------------------

    def refs(self) -> dict[str, str]:
        try:
            return load_file(self.refs_path)
        except FileNotFoundError:
            return {}

    def _write_refs(self, refs: dict[str, str]) -> None:
        data = _dumps(dict(sorted(refs.items())), indent=1).encode()
        _write_atomic(self.refs_path, data, self)

    def tag(self, src: str, dst: str) -> str:
        """Point the name `dst` at the image `src` names; returns the canonical `dst`."""
        img = self.image(src)
        ref = reference.parse(dst)
        if ref.digest:
            raise MiniboxError(f'refusing to create a tag with a digest reference: "{dst}"')
        name = str(ref)
        with self.locked():
            refs = self.refs()
            refs[name] = img.manifest_digest
            self._write_refs(refs)
        return name

    def untag(self, ref: str) -> str:
        name = str(reference.parse(ref))
        with self.locked():
            refs = self.refs()
            if name not in refs:
                raise MiniboxError(f"No such image: {ref}")
            del refs[name]
            self._write_refs(refs)
        return name

    # -- removal ----------------------------------------------------------------------

    def remove(self, image: Image, force: bool = False,
               keep_layers: Iterable[str] = ()) -> list[str]:
        """Forget the image: its names, its record, then whatever only it used.

        An image with several names is refused unless `force` (docker: "must be
        forced"). Layers in `keep_layers` (diff_ids some container stands on) stay.
        Returns what was deleted: the image id, then the diff_ids of freed layers.
        """
        names = image.refs
        if len(names) > 1 and not force:
            raise MiniboxError(f"conflict: unable to delete {image.short_id} (must be forced) - "
                               "image is referenced in multiple repositories")
        with self.locked():
            refs = {n: d for n, d in self.refs().items() if d != image.manifest_digest}
            self._write_refs(refs)
            _forget(self._record_path(image.manifest_digest), "the image's record goes: "
                    "no name points at it")
            return [image.id] + self._free(image, set(keep_layers))

    def _free(self, image: Image, keep_layers: set[str]) -> list[str]:
        """Delete blobs and layers of a forgotten image that no other image uses."""
        used_blobs: set[str] = set()
        used_layers: set[str] = set(keep_layers)
        for other in self.images():
            used_blobs.update([other.manifest_digest, other.config_digest])
            used_blobs.update(d for d, _, _ in other.layers)
            used_layers.update(other.diff_ids)
        for blob in [image.manifest_digest, image.config_digest] + \
                [d for d, _, _ in image.layers]:
            if blob not in used_blobs:
                _forget(self.blob_path(blob), "no image uses this blob any more")
        freed = []
        for diff_id in image.diff_ids:
            if diff_id not in used_layers and self.has_layer(diff_id):
                _forget(self.layer_dir(diff_id), "no image or container stands on this "
                        "layer any more")
                _rm(self.layer_dir(diff_id) + ".json")
                freed.append(diff_id)
        return freed

    def gc(self, keep_layers: Iterable[str] = (), grace: float = 3600.0) -> list[str]:
        """Delete layers no image uses, and blobs no image uses that are older than
        `grace` seconds (a load or pull in progress stores its blobs before its image)."""
        removed = []
        with self.locked():
            used_blobs: set[str] = set()
            used_layers: set[str] = {_hex(d) for d in keep_layers}
            for img in self.images():
                used_blobs.update(_hex(d) for d in
                                  [img.manifest_digest, img.config_digest] +
                                  [d for d, _, _ in img.layers])
                used_layers.update(_hex(d) for d in img.diff_ids)
            limit = time.time() - grace
            for entry in _scan(self.blobs):
                if entry.name not in used_blobs and entry.stat().st_mtime < limit:
                    _rm(entry.path)
                    removed.append("sha256:" + entry.name)
            for entry in _scan(self.layers_dir):
                name = entry.name.removesuffix(".json")
                if len(name) == 64 and name not in used_layers:
                    _rm(entry.path)
                    if not entry.name.endswith(".json"):
                        removed.append("sha256:" + name)
        return removed


def _scan(path: str) -> list[os.DirEntry]:
    try:
        return list(os.scandir(path))
    except FileNotFoundError:
        return []


class _Lock:
    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _rename(src: str, dst: str, why: str) -> None:
    """rename(2), told to the narrator: how everything enters the store, whole or not at
    all (a reader sees the old name or the new one, never half a file)."""
    os.rename(src, dst)
    explain.step(f'rename("{src}", "{dst}")', 0, why, "rename(2)")


def _write_atomic(path: str, data: bytes, store: Store) -> None:
    tmp = store.tmp_path(os.path.basename(path))
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        _rename(tmp, path, f"{os.path.basename(path)} written whole under tmp/, then "
                           "renamed into place (over the old one, if any)")
    except BaseException:
        _rm(tmp)
        raise


def _forget(path: str, why: str) -> None:
    """Remove a blob or a layer directory, told to the narrator."""
    is_dir = os.path.isdir(path) and not os.path.islink(path)
    _rm(path)
    explain.step(f'{"rmdir" if is_dir else "unlink"}("{path}"){" [recursive]" if is_dir else ""}',
                 0, why, "rmdir(2)" if is_dir else "unlink(2)")


def _rm(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    import stat

    if stat.S_ISDIR(st.st_mode):
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def digest_bytes(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _dumps(obj: object, indent: int | None = None) -> str:
    import json

    return json.dumps(obj, indent=indent)


def new_config(diff_ids: list[str], config: dict | None = None, history: list | None = None,
               created: str | None = None, author: str = "") -> dict:
    """An OCI image config (image-spec config.md) for the running platform."""
    import platform

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    out: dict = {"created": created or now(), "architecture": arch, "os": "linux"}
    if author:
        out["author"] = author
    out["config"] = config or {}
    out["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    out["history"] = history or []
    return out


def new_manifest(config_digest: str, config_size: int,
                 layers: list[tuple[str, int]], annotations: dict | None = None) -> bytes:
    """An OCI image manifest (image-spec manifest.md) with gzip layers."""
    m: dict = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                          "size": config_size},
               "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": d, "size": s}
                          for d, s in layers]}
    if annotations:
        m["annotations"] = annotations
    return _dumps(m, indent=2).encode()


def now() -> str:
    """RFC 3339 in UTC with nanoseconds, as docker writes `created`."""
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 10**9)) + f".{t % 10**9:09d}Z"
