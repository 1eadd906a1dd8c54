"""Image verbs: images, import, history, tag, rmi, commit, export, diff (docker's shapes)."""

from __future__ import annotations

import json
import os
import sys
import time

from minibox.cli.flags import FlagParser
from minibox.errors import MiniboxError
from minibox.image.store import Image, Store


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


# -- formatting, as docker's go-units prints it ------------------------------------------

def human_size(n: float) -> str:
    """Decimal units, three significant digits (go-units HumanSizeWithPrecision)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.3g}{units[i]}"


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


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: "About a minute", "3 hours", "2 weeks"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


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
    o = p.parse(argv)
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
    comment = o.message or f"Imported from {'-' if src == '-' else src}"
    if "://" in src:
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
