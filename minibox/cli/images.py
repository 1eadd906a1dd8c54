"""Image verbs: images, import, history, tag, rmi, commit, export, diff (docker's shapes)."""

from __future__ import annotations

import json
import os
import sys
import time

from minibox.cli.flags import FlagParser
from minibox.cli.main import die_unless_root
from minibox.cli.units import human_duration, human_size
from minibox.errors import MiniboxError
from minibox.image.store import Image, Store


def _explain(opts: object) -> None:
    from minibox import explain

    if getattr(opts, "explain", False):
        explain.enable()
    else:
        explain.settle()


def image_store() -> Store:
    return Store()  # the data root: --data-root, MINIBOX_DATA_ROOT, or /var/lib/minibox


def _containers() -> list[dict]:
    """Every container's state (with its annotations: the image it was made from)."""
    from minibox.cli.main import store

    try:
        return store().all()
    except OSError:
        return []


def containers_using(img: Image) -> list[dict]:
    return [st for st in _containers()
            if (st.get("annotations") or {}).get("minibox.image") == img.id]


def layers_in_use() -> set[str]:
    """diff_ids that some container's overlay stands on (rmi and gc keep them)."""
    out: set[str] = set()
    for st in _containers():
        layers = (st.get("annotations") or {}).get("minibox.layers")
        if layers:
            out.update(layers.split(","))
    return out


# -- formatting (sizes and durations: cli/units.py) ------------------------------------

def parse_time(text: str) -> float:
    """RFC 3339 (nanoseconds allowed) -> seconds since the epoch; 0 when absent."""
    from datetime import datetime

    if not text:
        return 0.0
    t = text.strip().replace("Z", "+00:00")
    main, dot, rest = t.partition(".")
    if dot:
        frac = "".join(c for c in rest if c.isdigit())
        tz = rest[len(frac):]
        t = f"{main}.{frac[:6]}{tz}"
    try:
        return datetime.fromisoformat(t).timestamp()
    except ValueError:
        return 0.0


def since(created: str) -> str:
    t = parse_time(created)
    if not t:
        return "N/A"
    return human_duration(time.time() - t) + " ago"


def _table(rows: list[list[str]], header: list[str]) -> None:
    """Columns padded to the widest cell plus three spaces, as docker's tabwriter."""
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        cells = [c.ljust(widths[i] + 3) if i < len(r) - 1 else c for i, c in enumerate(r)]
        print("".join(cells).rstrip())


def _split_ref(name: str) -> tuple[str, str]:
    repo, _, tag = name.rpartition(":")
    if "/" in tag:  # "host:port/repo" without a tag: never stored, but be safe
        return name, "<none>"
    return repo, tag


# -- import ------------------------------------------------------------------------------

def import_(argv: list[str]) -> int:
    p = FlagParser("minibox import", "minibox import [OPTIONS] FILE|DIR|- [REPOSITORY[:TAG]]",
                   "Make a one-layer image from a root filesystem tarball (plain, gzip or "
                   "zstd) or directory.", positionals=("SOURCE",), rest="ref", interspersed=True)
    p.add("-c", "--change", kind="append", metavar="INSTRUCTION",
          help='Dockerfile instruction for the config, e.g. -c "CMD [\\"sh\\"]"')
    p.add("-m", "--message", default="", help="commit message for the history row")
    p.add("--platform", help="accepted for docker compatibility (linux/<this machine>)")
    p.add("--explain", kind="bool", help="tell each step that changes the store")
    o = p.parse(argv)
    _explain(o)
    die_unless_root("import")
    if len(o.ref) > 1:
        raise MiniboxError(f"import takes at most one reference, got {' '.join(o.ref)}")
    ref = o.ref[0] if o.ref else None
    from minibox.image import changes, reference
    from minibox.image import store as S

    if ref is not None:
        parsed = reference.parse(ref)
        if parsed.digest:
            raise MiniboxError(f'refusing to create a tag with a digest reference: "{ref}"')
    config = changes.apply({}, o.change)
    st = image_store()
    st.ensure()
    from minibox.cli.progress import Progress

    src = o.source
    if "://" in src:
        raise MiniboxError(f"import from a URL ({src}) is not supported: download the "
                           "tarball first, then minibox import FILE")
    if src == "-":
        prog = Progress("Importing")
        digest, diff_id, size = st.import_layer(sys.stdin.buffer, prog,
                                                what="import from stdin")
    elif os.path.isdir(src):
        prog = Progress("Importing")
        digest, diff_id, size = st.layer_from_dir(src, prog)
    elif os.path.exists(src):
        total = os.path.getsize(src)
        prog = Progress("Importing", total)
        with open(src, "rb") as f:
            digest, diff_id, size = st.import_layer(_Counting(f, prog), None,
                                                    what=f"import from {src}")
    else:
        raise MiniboxError(f"import source {src} does not exist (give a rootfs tarball, a "
                           "directory, or - for stdin)")
    prog.done()
    created = S.now()
    comment = o.message or f"Imported from {src}"
    cfg = S.new_config([diff_id], config, [{"created": created, "comment": comment}],
                       created=created)
    cfg_bytes = json.dumps(cfg).encode()
    cfg_digest = st.put_blob(cfg_bytes)
    manifest = S.new_manifest(cfg_digest, len(cfg_bytes), [(digest, size)])
    st.add_image(manifest, ref)
    print(cfg_digest)
    return 0


class _Counting:
    """A file wrapper that tells a Progress how many bytes were read."""

    def __init__(self, f: object, progress: object) -> None:
        self.f = f
        self.progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)  # type: ignore[attr-defined]
        self.progress(len(data))  # type: ignore[operator]
        return data


# -- images --------------------------------------------------------------------------------

def _intermediates(imgs: list[Image]) -> set[str]:
    """Manifest digests of images that another image was committed on (docker -a)."""
    return {img.parent for img in imgs if img.parent}


def _path_match(pattern: str, name: str) -> bool:
    """Go's path.Match: shell patterns where * and ? never cross a "/"."""
    import fnmatch

    pp, np = pattern.split("/"), name.split("/")
    return len(pp) == len(np) and all(fnmatch.fnmatchcase(n, p)
                                      for p, n in zip(pp, np, strict=True))


def _match_filters(img: Image, name: str | None, filters: dict[str, list[str]],
                   st: Store) -> bool:
    patterns = filters.get("reference", [])
    if patterns:
        # docker matches the familiar name, with and without the tag (path.Match); several
        # reference filters are alternatives (label filters, below, must all hold).
        if name is None:
            return False
        repo, _ = _split_ref(name)
        if not any(_path_match(p, repo) or _path_match(p, name) for p in patterns):
            return False
    for value in filters.get("dangling", []):
        if (value == "true") != (not img.refs):
            return False
    created = parse_time(img.created)
    for ref in filters.get("before", []):
        if not created < parse_time(st.image(ref).created):
            return False
    for ref in filters.get("since", []):
        if not created > parse_time(st.image(ref).created):
            return False
    labels = (img.config.get("config") or {}).get("Labels") or {}
    for want in filters.get("label", []):
        key, eq, value = want.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def _parse_filters(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or key not in ("reference", "dangling", "before", "since", "label"):
            raise MiniboxError(f'invalid filter "{item}": use reference=, dangling=, '
                               "before=, since= or label=")
        if key == "dangling" and value not in ("true", "false", "1", "0"):
            raise MiniboxError(f'invalid filter "{item}": dangling is true or false')
        out.setdefault(key, []).append({"1": "true", "0": "false"}.get(value, value))
    return out


def images(argv: list[str]) -> int:
    p = FlagParser("minibox images", "minibox images [OPTIONS] [REPOSITORY[:TAG]]",
                   "List images.", rest="repo", interspersed=True)
    p.add("-a", "--all", kind="bool", help="show all images (including intermediate ones)")
    p.add("-q", "--quiet", kind="bool", help="only show image IDs")
    p.add("--digests", kind="bool", help="show digests")
    p.add("--no-trunc", kind="bool", help="don't truncate output")
    p.add("-f", "--filter", kind="append", metavar="KEY=VALUE",
          help="reference=, dangling=true|false, before=IMAGE, since=IMAGE, label=K[=V]")
    p.add("--format", metavar="FORMAT", help="json: one JSON object per line")
    p.add("--tree", kind="bool", help="a tree of images by shared layers (dockviz -t)")
    o = p.parse(argv)
    if len(o.repo) > 1:
        raise MiniboxError('"minibox images" requires at most 1 argument')
    if o.format not in (None, "json", "table"):
        raise MiniboxError(f'unsupported --format "{o.format}": minibox knows json and table')
    filters = _parse_filters(o.filter)
    if o.repo:
        filters.setdefault("reference", []).append(o.repo[0])
    st = image_store()
    imgs = st.images()
    if o.tree:
        return _tree(imgs, st)
    hidden = set() if o.all or filters.get("dangling") else _intermediates(imgs)
    rows = []
    for img in sorted(imgs, key=lambda i: parse_time(i.created), reverse=True):
        names = img.refs or [None]
        if img.refs == [] and img.manifest_digest in hidden:
            continue
        for name in names:
            if _match_filters(img, name, filters, st):
                rows.append((img, name))
    used = {}
    for c in _containers():
        iid = (c.get("annotations") or {}).get("minibox.image")
        if iid:
            used[iid] = used.get(iid, 0) + 1
    if o.quiet:
        seen = []
        for img, _ in rows:
            text = img.id if o.no_trunc else img.short_id
            if text not in seen:
                seen.append(text)
        for text in seen:
            print(text)
        return 0
    if o.format == "json":
        for img, name in rows:
            repo, tag = _split_ref(name) if name else ("<none>", "<none>")
            size = human_size(img.size())
            print(json.dumps({
                "Containers": str(used.get(img.id, 0)), "CreatedAt": _created_at(img.created),
                "CreatedSince": since(img.created), "Digest": img.manifest_digest,
                "ID": img.id if o.no_trunc else img.short_id, "Repository": repo,
                "SharedSize": "N/A", "Size": size, "Tag": tag, "UniqueSize": "N/A",
                "VirtualSize": size}))
        return 0
    header = ["REPOSITORY", "TAG"] + (["DIGEST"] if o.digests else []) + \
        ["IMAGE ID", "CREATED", "SIZE"]
    table = []
    for img, name in rows:
        repo, tag = _split_ref(name) if name else ("<none>", "<none>")
        row = [repo, tag]
        if o.digests:
            row.append(img.manifest_digest)
        row += [img.id if o.no_trunc else img.short_id, since(img.created),
                human_size(img.size())]
        table.append(row)
    _table(table, header)
    return 0


def _created_at(created: str) -> str:
    t = parse_time(created)
    if not t:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(t))


def _tree(imgs: list[Image], st: Store) -> int:
    """Images as a tree of shared layers, drawn as `dockviz images -t` draws it: one node
    per layer chain, labelled with the image ending there (if any), its virtual size (all
    layers up to it) and its tags."""
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    ends: dict[tuple[str, ...], list[Image]] = {}
    sizes: dict[str, int] = {}
    for img in imgs:
        chain = tuple(img.diff_ids)
        sizes.update(zip(chain, img.layer_sizes(), strict=False))
        ends.setdefault(chain, []).append(img)
        for k in range(1, len(chain) + 1):
            node, parent = chain[:k], chain[:k - 1]
            kids = children.setdefault(parent, [])
            if node not in kids:
                kids.append(node)

    def label(node: tuple[str, ...]) -> str:
        size = human_size(sum(sizes.get(d, 0) for d in node))
        here = ends.get(node, [])
        if not here:
            return f"<layer {node[-1][7:19]}> Virtual Size: {size}"
        parts = []
        for img in here:
            tags = ", ".join(img.refs) if img.refs else ""
            parts.append(f"{img.short_id} Virtual Size: {size}" +
                         (f" Tags: {tags}" if tags else ""))
        return " | ".join(parts)

    def draw(node: tuple[str, ...], prefix: str) -> None:
        kids = sorted(children.get(node, []))
        for i, kid in enumerate(kids):
            last = i == len(kids) - 1
            print(f"{prefix}{'└─' if last else '├─'}{label(kid)}")
            draw(kid, prefix + ("  " if last else "│ "))

    draw((), "")
    return 0


# -- inspect, history, tag -------------------------------------------------------------------

def describe(img: Image) -> dict:
    """docker image inspect's shape, plus the manifest as stored."""
    cfg = img.config
    return {
        "Id": img.id,
        "RepoTags": img.refs,
        "RepoDigests": [f"{_split_ref(r)[0]}@{img.manifest_digest}" for r in img.refs],
        "Parent": img.parent,
        "Comment": (cfg.get("history") or [{}])[-1].get("comment", "")
        if cfg.get("history") else "",
        "Created": img.created,
        "Author": cfg.get("author", ""),
        "Config": cfg.get("config") or {},
        "Architecture": cfg.get("architecture", ""),
        "Variant": cfg.get("variant", ""),
        "Os": cfg.get("os", ""),
        "Size": img.size(),
        "RootFS": {"Type": "layers", "Layers": img.diff_ids},
        "Metadata": {"LastTagTime": ""},
        "Descriptor": {"mediaType": img.manifest.get("mediaType", ""),
                       "digest": img.manifest_digest, "size": len(img.manifest_bytes)},
        "Manifest": img.manifest,
        "GraphDriver": {"Name": "overlay", "Data": {
            "LowerDir": ":".join(reversed(img.layer_dirs()))}},
    }


def inspect_images(refs: list[str]) -> tuple[list[dict], list[str]]:
    st = image_store()
    out, errors = [], []
    for ref in refs:
        try:
            out.append(describe(st.image(ref)))
        except MiniboxError as err:
            errors.append(err.message)
    return out, errors


def history(argv: list[str]) -> int:
    p = FlagParser("minibox history", "minibox history [OPTIONS] IMAGE",
                   "Show the history of an image: one row per step, newest first.",
                   positionals=("IMAGE",), interspersed=True)
    p.add("-H", "--human", default=True, help="sizes and dates in human form (true|false)")
    p.add("-q", "--quiet", kind="bool", help="only show image IDs")
    p.add("--no-trunc", kind="bool", help="don't truncate output")
    p.add("--format", metavar="FORMAT", help="json: one JSON object per line")
    o = p.parse(argv)
    human = str(o.human).lower() not in ("false", "0")
    st = image_store()
    img = _image_or_1(st, o.image)
    hist = list(img.config.get("history") or [])
    if not hist:
        hist = [{"created": img.created, "created_by": ""} for _ in img.diff_ids]
    layer_sizes = img.layer_sizes()
    rows = []
    for h in hist:
        size = 0
        if not h.get("empty_layer") and layer_sizes:
            size = layer_sizes.pop(0)
        rows.append((h, size))
    rows.reverse()
    out = []
    for k, (h, size) in enumerate(rows):
        iid = (img.id if o.no_trunc else img.short_id) if k == 0 else "<missing>"
        by = h.get("created_by", "")
        if not o.no_trunc and len(by) > 45:
            by = by[:44] + "…"
        created = since(h.get("created", "")) if human else h.get("created", "")
        out.append((iid, created, by, human_size(size) if human else str(size),
                    h.get("comment", ""), h, size))
    if o.quiet:
        for r in out:
            print(r[0])
        return 0
    if o.format == "json":
        for r in out:
            print(json.dumps({"Comment": r[4], "CreatedAt": r[5].get("created", ""),
                              "CreatedBy": r[5].get("created_by", ""),
                              "CreatedSince": since(r[5].get("created", "")), "ID": r[0],
                              "Size": r[3]}))
        return 0
    _table([list(r[:5]) for r in out], ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"])
    return 0


def _image_or_1(st: Store, ref: str) -> Image:
    try:
        return st.image(ref)
    except MiniboxError as err:
        raise MiniboxError(f"Error response from daemon: {err.message}", 1) from None


def tag(argv: list[str]) -> int:
    p = FlagParser("minibox tag", "minibox tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
                   "Give an image another name.", positionals=("SOURCE", "TARGET"))
    o = p.parse(argv)
    st = image_store()
    _image_or_1(st, o.source)
    st.tag(o.source, o.target)
    return 0


# -- rmi ---------------------------------------------------------------------------------------

def rmi(argv: list[str]) -> int:
    from minibox.image import reference
    from minibox.runtime.state import refresh

    p = FlagParser("minibox rmi", "minibox rmi [OPTIONS] IMAGE [IMAGE...]",
                   "Remove images: untag a name, and delete the image and the layers only it "
                   "used once no name points at it.", positionals=("IMAGE",), rest="more",
                   interspersed=True)
    p.add("-f", "--force", kind="bool",
          help="untag every name and delete, even if a stopped container uses it")
    p.add("--no-prune", kind="bool", help="accepted for docker compatibility")
    p.add("--explain", kind="bool", help="tell each step that changes the store")
    o = p.parse(argv)
    _explain(o)
    st = image_store()
    code = 0
    for ref in [o.image] + o.more:
        try:
            img = st.image(ref)
            users = containers_using(img)
            by_name = None
            try:
                parsed = reference.parse(ref)
                if not parsed.digest and str(parsed) in img.refs:
                    by_name = str(parsed)
            except MiniboxError:
                pass
            if by_name and len(img.refs) > 1:
                print(f"Untagged: {st.untag(by_name)}")  # other names keep the image
                continue
            running = [c for c in users if refresh(c)["status"] in ("running", "paused",
                                                                     "restarting")]
            if users and not o.force:
                what = f'repository reference "{by_name}"' if by_name else img.short_id
                raise MiniboxError(
                    f"Error response from daemon: conflict: unable to remove {what} (must "
                    f"force) - container {users[0]['id'][:12]} is using its referenced image "
                    f"{img.short_id}", 1)
            if running:
                raise MiniboxError(
                    f"Error response from daemon: conflict: unable to delete {img.short_id} "
                    f"(cannot be forced) - image is being used by running container "
                    f"{running[0]['id'][:12]}", 1)
            if users:
                # -f with stopped containers: the names go; the image stays (dangling)
                # while a container stands on its layers.
                for name in img.refs:
                    print(f"Untagged: {st.untag(name)}")
                continue
            if len(img.refs) > 1 and not o.force:
                raise MiniboxError(
                    f"Error response from daemon: conflict: unable to delete {img.short_id} "
                    "(must be forced) - image is referenced in multiple repositories", 1)
            for name in img.refs:
                print(f"Untagged: {name}")
            for gone in st.remove(img, force=True, keep_layers=layers_in_use()):
                print(f"Deleted: {gone}")
        except MiniboxError as err:
            msg = err.message
            if msg.startswith("No such image"):
                msg = f"Error response from daemon: {msg}"
            sys.stderr.write(f"minibox: {msg}\n")
            code = 1
    return code


# -- containers -> images: commit, diff, export ------------------------------------------------

def _container(ref: str) -> tuple[str, dict, dict]:
    from minibox.cli.main import store

    cs = store()
    cid = cs.resolve(ref)
    return cid, cs.load(cid), cs.spec(cid)


def _image_container(ref: str, verb: str) -> tuple[str, dict, dict, str]:
    cid, state, spec = _container(ref)
    ann = spec.get("annotations") or {}
    rwdir = ann.get("minibox.rwdir")
    if not rwdir:
        raise MiniboxError(f"{verb}: container {ref} runs on the rootfs directory "
                           f"{spec['root']['path']}, not on an image: it has no layer of its "
                           "own (minibox import DIR makes an image of a directory)")
    return cid, state, spec, rwdir


def _container_config(image_cfg: dict, spec: dict) -> dict:
    """docker commit keeps the container's own configuration, not its image's: the command
    it was run with (split back into Entrypoint and Cmd), its environment (-e values too)
    and its working directory (docker-commit(1); the image spec's config fields)."""
    cfg = dict(image_cfg)
    proc = spec["process"]
    args = list(proc.get("args") or [])
    n = int(spec["annotations"].get("minibox.entrypointLen", len(cfg.get("Entrypoint") or [])))
    cfg["Entrypoint"] = args[:n] or None
    cfg["Cmd"] = args[n:] or None
    # minibox adds these per container at run time; docker keeps them out of the config.
    ours = {"HOSTNAME", "HOME", "TERM"} - {e.split("=", 1)[0] for e in cfg.get("Env") or []}
    env = [e for e in proc.get("env") or [] if e.split("=", 1)[0] not in ours]
    cfg["Env"] = env or None
    if proc.get("cwd") and (proc["cwd"] != "/" or cfg.get("WorkingDir")):
        cfg["WorkingDir"] = proc["cwd"]
    return {k: v for k, v in cfg.items() if v is not None}


def commit(argv: list[str]) -> int:
    from minibox.image import changes
    from minibox.image import store as S

    p = FlagParser("minibox commit", "minibox commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
                   "Make an image from a container's changes: its overlay upper dir becomes "
                   "a new layer on top of its image's.", positionals=("CONTAINER",),
                   rest="ref", interspersed=True)
    p.add("-m", "--message", default="", help="commit message")
    p.add("-a", "--author", default="", help='author (e.g. "Name <mail@example.com>")')
    p.add("-c", "--change", kind="append", metavar="INSTRUCTION",
          help="Dockerfile instruction to apply to the config")
    p.add("-p", "--pause", default="true",
          help="freeze the container while committing (true|false)")
    p.add("--explain", kind="bool", help="tell each step that changes the store")
    o = p.parse(argv)
    _explain(o)
    die_unless_root("commit")
    if len(o.ref) > 1:
        raise MiniboxError("commit takes at most one reference")
    ref = o.ref[0] if o.ref else None
    if ref is not None and reference_has_digest(ref):
        raise MiniboxError(f'refusing to create a tag with a digest reference: "{ref}"')
    cid, state, spec, rwdir = _image_container(o.container, "commit")
    st = image_store()
    try:
        base = st.image(spec["annotations"]["minibox.image"])
    except MiniboxError:
        raise MiniboxError(f"commit: the image container {o.container} was made from is no "
                           "longer in the store") from None
    cfg_obj = changes.apply(_container_config(base.config.get("config") or {}, spec),
                            o.change)
    from minibox.cli.progress import Progress

    upper = os.path.join(rwdir, "upper")
    frozen = _pause(cid, state, str(o.pause).lower() not in ("false", "0"))
    prog = Progress("Committing")
    try:
        if os.path.isdir(upper):
            digest, diff_id, size = st.layer_from_dir(upper, prog)
        else:
            empty = st.tmp_path("empty")
            os.mkdir(empty)
            try:
                digest, diff_id, size = st.layer_from_dir(empty, prog)
            finally:
                os.rmdir(empty)
    finally:
        if frozen is not None:
            frozen.thaw()
        prog.done()
    created = S.now()
    hist = list(base.config.get("history") or [])
    row = {"created": created,
           "created_by": " ".join(spec["process"]["args"])}
    if o.author:
        row["author"] = o.author
    if o.message:
        row["comment"] = o.message
    hist.append(row)
    config = dict(base.config)
    config.update(created=created, config=cfg_obj,
                  rootfs={"type": "layers", "diff_ids": base.diff_ids + [diff_id]},
                  history=hist)
    if o.author:
        config["author"] = o.author
    else:
        config.pop("author", None)
    cfg_bytes = json.dumps(config).encode()
    cfg_digest = st.put_blob(cfg_bytes)
    layers = [(d, sz) for d, _, sz in base.layers] + [(digest, size)]
    manifest = S.new_manifest(cfg_digest, len(cfg_bytes), layers)
    st.add_image(manifest, ref, parent=base.manifest_digest)
    print(cfg_digest)
    return 0


def reference_has_digest(ref: str) -> bool:
    from minibox.image import reference

    return reference.parse(ref).digest is not None


def _pause(cid: str, state: dict, want: bool) -> object:
    """docker commit pauses a running container so its files hold still (cgroup freezer)."""
    from minibox.runtime.state import refresh

    if not want or refresh(state).get("status") != "running":
        return None
    from minibox.cgroups.driver import open_group

    group = open_group(cid)
    try:
        group.freeze()
    except OSError:
        return None
    return group


def diff(argv: list[str]) -> int:
    p = FlagParser("minibox diff", "minibox diff CONTAINER",
                   "List what changed in a container's filesystem: A added, C changed, "
                   "D deleted (read from its overlay upper dir).", positionals=("CONTAINER",))
    o = p.parse(argv)
    _, _, spec, rwdir = _image_container(o.container, "diff")
    lowers = [os.path.join(image_store().layers_dir, d.partition(":")[2]) for d in
              reversed(spec["annotations"].get("minibox.layers", "").split(",")) if d]
    for kind, path in changes_of(os.path.join(rwdir, "upper"), lowers):
        print(f"{kind} {path}")
    return 0


def changes_of(upper: str, lowers: list[str]) -> list[tuple[str, str]]:
    """(A|C|D, /path) for an overlay upper dir over `lowers` (highest first), sorted."""
    import stat as S

    from minibox.image.layer import OPAQUE_XATTR

    def in_lower(rel: str) -> bool:
        for d in lowers:
            try:
                st = os.lstat(os.path.join(d, rel))
            except OSError:
                # a higher layer's opaque parent hides everything below it
                continue
            return not (S.S_ISCHR(st.st_mode) and st.st_rdev == 0)
        return False

    out: list[tuple[str, str]] = []

    def walk(rel: str) -> None:
        full = os.path.join(upper, rel)
        try:
            names = sorted(os.listdir(full))
        except OSError:
            return
        for name in names:
            r = f"{rel}/{name}" if rel else name
            st = os.lstat(os.path.join(upper, r))
            if S.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                if in_lower(r):
                    out.append(("D", "/" + r))
                continue
            out.append(("C" if in_lower(r) else "A", "/" + r))
            if S.S_ISDIR(st.st_mode):
                try:
                    opaque = os.getxattr(os.path.join(upper, r), OPAQUE_XATTR) == b"y"
                except OSError:
                    opaque = False
                if opaque:
                    # Everything the lower layers had in it is gone.
                    for d in lowers:
                        try:
                            for gone in sorted(os.listdir(os.path.join(d, r))):
                                if not os.path.lexists(os.path.join(upper, r, gone)):
                                    out.append(("D", f"/{r}/{gone}"))
                        except OSError:
                            pass
                        break
                walk(r)

    walk("")
    return sorted(set(out), key=lambda x: x[1])


def export(argv: list[str]) -> int:
    p = FlagParser("minibox export", "minibox export [OPTIONS] CONTAINER",
                   "Write a container's whole filesystem (its image's layers with its own "
                   "changes on top) as a tar archive.", positionals=("CONTAINER",),
                   interspersed=True)
    p.add("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    o = p.parse(argv)
    die_unless_root("export")
    cid, _, spec, rwdir = _image_container(o.container, "export")
    if not o.output and os.isatty(1):
        raise MiniboxError("cowardly refusing to write a tar to a terminal: use -o FILE "
                           "or redirect stdout")
    st = image_store()
    lowers = [st.layer_dir("sha256:" + d.partition(":")[2]) for d in
              reversed(spec["annotations"].get("minibox.layers", "").split(",")) if d]
    from minibox.runtime import export as ex

    tmp = None
    if o.output:
        tmp = f"{o.output}.tmp.{os.getpid()}"
        out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    else:
        out_fd = 1
    try:
        ex.export_tar(st.tmp_path("export"), rwdir, lowers, out_fd)
        if tmp:
            os.rename(tmp, o.output)
            tmp = None
    finally:
        if out_fd != 1:
            os.close(out_fd)
        if tmp:
            os.unlink(tmp)
    return 0
