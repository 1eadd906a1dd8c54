"""`minibox run IMAGE`: an image's layers and config -> the container's spec.

The layers become the overlay's lowerdirs, an upper and a work dir per container live
in the image store (<data root>/containers/ID), and the image config gives the
command (Entrypoint + Cmd), Env, WorkingDir and User (image-spec config.md; docker's
rules for --entrypoint and a command given on the command line). The overlay itself is
mounted by the container's init, in its own mount namespace, so nothing is mounted on
the host and nothing stays mounted if minibox is killed.
"""

from __future__ import annotations

import os
import stat

from minibox.cli.flags import Options
from minibox.errors import MiniboxError
from minibox.runtime import spec as S

# mount(2) copies at most one page of option data: the lowerdir list must fit in it.
_PAGE = 4096


class ImageSpec:
    def __init__(self, spec: dict, lookup_root: str, user: str, workdir: str) -> None:
        self.spec = spec
        self.lookup_root = lookup_root  # where /etc/passwd is read for --user names
        self.user = user
        self.workdir = workdir


class _Found:
    """What `run` needs of an image: its id, config, layer dirs and the store's root."""

    def __init__(self, root: str, image_id: str, config: dict, diff_ids: list[str]) -> None:
        self.root = root
        self.id = image_id
        self.config = config
        self.diff_ids = diff_ids

    def layer_dirs(self) -> list[str]:
        return [os.path.join(self.root, "layers", d.partition(":")[2]) for d in self.diff_ids]


def _quick(root: str, name: str) -> _Found | None:
    """The common case without the store module (about a millisecond of imports): a
    plain name that refs.json holds as written (or with ":latest"). Anything else, ids
    and digests and errors included, goes through Store.image()."""
    from minibox.jsonread import load_file, loads

    if "@" in name or not name:
        return None
    key = name if ":" in name.rpartition("/")[2] else name + ":latest"
    try:
        digest = load_file(os.path.join(root, "refs.json")).get(key)  # type: ignore[union-attr]
        if not digest or not digest.startswith("sha256:"):
            return None
        blobs = os.path.join(root, "blobs", "sha256")
        manifest = load_file(os.path.join(blobs, digest[7:]))
        cfg_digest = manifest["config"]["digest"]  # type: ignore[index]
        with open(os.path.join(blobs, cfg_digest.partition(":")[2]), "rb") as f:
            config = loads(f.read(), f"config {cfg_digest}")
        return _Found(root, cfg_digest, config,  # type: ignore[arg-type]
                      list(config.get("rootfs", {}).get("diff_ids", [])))  # type: ignore
    except (OSError, MiniboxError, KeyError, TypeError, AttributeError):
        return None


def image_spec(opts: Options, cid: str) -> ImageSpec:
    from minibox.image import default_root

    root = os.path.abspath(default_root())
    img = _quick(root, opts.rootfs)
    if img is None:
        from minibox.image.store import Store

        try:
            img = Store(root).image(opts.rootfs)  # type: ignore[assignment]
        except MiniboxError as err:
            if err.message.startswith("No such image"):
                raise MiniboxError(f"Unable to find image '{opts.rootfs}' locally (minibox "
                                   "does not pull: import or load it, or give a rootfs "
                                   "directory path such as ./rootfs)") from None
            raise
    assert img is not None
    cfg = img.config.get("config") or {}
    entrypoint = list(cfg.get("Entrypoint") or [])
    cmd = list(cfg.get("Cmd") or [])
    if opts.entrypoint is not None:
        # docker: --entrypoint replaces the Entrypoint and drops the image's Cmd.
        entrypoint = [opts.entrypoint] if opts.entrypoint else []
        cmd = []
    if opts.command:
        cmd = list(opts.command)
    args = entrypoint + cmd
    if not args:
        raise MiniboxError(f"No command specified: image {opts.rootfs} has no Entrypoint or "
                           f"Cmd (give one: minibox run {opts.rootfs} CMD [ARG...])")
    rwdir = os.path.join(root, "containers", cid)
    dirs = img.layer_dirs()
    if not all(os.path.isdir(d) for d in dirs):
        dirs = _unpack(root, opts.rootfs)
    data = (f"lowerdir={':'.join(reversed(dirs))},upperdir={rwdir}/upper,"
            f"workdir={rwdir}/work")
    if len(data) >= _PAGE:
        raise MiniboxError(f"image {opts.rootfs} has too many layers ({len(dirs)}) for one "
                           "overlay mount option page; use a shorter --data-root")
    # The mount point is in the container's state directory (under /run/minibox, a
    # tmpfs): one directory fewer to make and remove on the store's disk.
    from minibox.cli.main import ROOT

    spec = S.new_spec(os.path.join(ROOT, "containers", cid, "rootfs"), args)
    env = list(cfg.get("Env") or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, f"PATH={S.DEFAULT_PATH}")
    spec["process"]["env"] = env
    spec["annotations"].update({
        "minibox.image": img.id,
        # How many of args are the Entrypoint: commit splits them back as docker does.
        "minibox.entrypointLen": str(len(entrypoint)),
        "minibox.imageRef": opts.rootfs,
        "minibox.layers": ",".join(img.diff_ids),
        "minibox.rwdir": rwdir,
        "minibox.overlay": data,
    })
    return ImageSpec(spec, _passwd_layer(dirs), cfg.get("User") or "",
                     cfg.get("WorkingDir") or "")


def _unpack(root: str, name: str) -> list[str]:
    """The first run of a pulled image unpacks its layers (pull only fetched and
    verified the blobs); on a terminal it says so, as this can take seconds."""
    from minibox.image.store import Store

    img = Store(root).image(name)
    tell = None
    if os.isatty(2) and not os.environ.get("MINIBOX_NO_PROGRESS"):
        def tell(blob: str) -> None:
            os.write(2, f"{blob.split(':')[-1][:12]}: Extracting (the first run of "
                        f"{name} unpacks it)\n".encode())
    return img.unpack(tell)


def _passwd_layer(dirs: list[str]) -> str:
    """The highest layer holding /etc/passwd: where --user names are looked up (the
    merged tree exists only inside the container's mount namespace)."""
    for d in reversed(dirs):
        try:
            st = os.lstat(os.path.join(d, "etc", "passwd"))
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            break  # a whiteout: deleted in this layer
        return d
    return dirs[-1] if dirs else "/nonexistent"
