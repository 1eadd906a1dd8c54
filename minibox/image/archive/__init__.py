"""Image archives: the files `docker save` / `podman save` write and `docker load` reads.

Two layouts, both plain tar files (optionally compressed as a whole):

- docker-archive (`source.py`, `docker.py`): `manifest.json`, an array of
  `{"Config": "<file>", "RepoTags": [...], "Layers": ["<file>", ...]}`; `repositories`
  (`{"repo": {"tag": "<legacy id>"}}`); the image config as a JSON file; each layer as an
  uncompressed tar whose sha256 is its diff_id (the config's `rootfs.diff_ids`).
- OCI image layout (`oci.py`; image-spec v1.1, image-layout.md): `oci-layout`,
  `index.json` (an image index whose manifests carry the tag in the
  `org.opencontainers.image.ref.name` annotation), and `blobs/sha256/<hex>` holding every
  manifest, config and layer by its digest.

`load.py` moves images from an archive into the store (every blob checked against its
digest on the way in); `save.py` writes images from the store into an archive.
"""
