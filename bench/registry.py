#!/usr/bin/env python3
"""Registry pull and push: minibox vs skopeo, through the same local docker-registry.

The image is a Debian minbase root filesystem (debootstrap --variant=minbase, without
its downloaded .debs), imported once into a minibox store as a one-layer gzip image. If
no such tree is given or can be built, a synthetic ~100 MB tree stands in (--synthetic).

Each round, on fresh registries (new storage, so nothing is skipped or mounted):

    minibox push    store -> registry A                 (HEAD, POST, PUT per blob)
    skopeo pull     registry A -> oci: layout dir       (skopeo copy docker:// oci:)
    minibox pull    registry A -> an empty store        (download, verify, unpack)
    skopeo push     oci: layout dir -> registry B       (skopeo copy oci: docker://)

The four steps run in a shuffled order per round (seeded). Note the work is not the same:
minibox pull also unpacks the layer into the store (gunzip, untar, sha256 of the tar for
the diff_id); skopeo's oci: layout keeps the compressed blobs only. The per-byte costs
of those steps are measured on the same layer and printed first, to show where time goes.

    sudo .venv/bin/python bench/registry.py                   # 3 rounds, minbase
    sudo .venv/bin/python bench/registry.py --rootfs DIR      # any tree
    sudo .venv/bin/python bench/registry.py --synthetic
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from registryd import Registryd  # noqa: E402

MINIBOX = REPO / ".venv" / "bin" / "minibox"
MINBASE = Path("/var/tmp/minibox-bench/minbase")
MIRROR = "http://deb.debian.org/debian"


def sh(*argv: object, env: dict | None = None) -> float:
    t = time.perf_counter()
    proc = subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, argv))} failed:\n{proc.stderr}")
    return took


def minbase(path: Path) -> Path | None:
    """A debootstrap minbase tree at `path` (built once, from the mirror apt uses)."""
    if (path / "usr/bin/apt").exists():
        return path
    if not shutil.which("debootstrap"):
        return None
    print(f"building {path} with debootstrap --variant=minbase bookworm ...", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(path), MIRROR],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"debootstrap failed: {proc.stderr[-500:]}", flush=True)
        shutil.rmtree(path, ignore_errors=True)
        return None
    return path


def clean_tree(src: Path, dest: Path) -> None:
    """The tree as an image would hold it: without apt's downloaded .debs."""
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    for deb in (dest / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def synthetic(dest: Path, total: int = 100 << 20) -> None:
    """~100 MB: text-like files (compress ~3:1, as binaries and docs do) in a deep tree."""
    rng = random.Random(7)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(4000)]
    made = 0
    k = 0
    while made < total:
        d = dest / f"usr/lib/pkg{k // 50}"
        d.mkdir(parents=True, exist_ok=True)
        size = min(total - made, int(rng.expovariate(1 / 60000)) + 100)
        out = bytearray()
        while len(out) < size:
            out += rng.choice(words) + (b"\n" if rng.random() < 0.1 else b" ")
        half = size // 4  # a quarter random bytes (machine code compresses poorly)
        out[:half] = rng.randbytes(half)
        (d / f"f{k}").write_bytes(bytes(out[:size]))
        made += size
        k += 1


def per_byte_costs(blob: Path) -> None:
    data = blob.read_bytes()
    raw = zlib.decompress(data, 16 + zlib.MAX_WBITS)
    mb_c, mb_u = len(data) / 1e6, len(raw) / 1e6

    def rate(fn, mb: float) -> str:
        t = time.perf_counter()
        fn()
        return f"{mb / (time.perf_counter() - t):7.0f} MB/s"

    print(f"layer: {mb_c:.1f} MB gzip, {mb_u:.1f} MB tar")
    print(f"  sha256 of the gzip blob      {rate(lambda: hashlib.sha256(data).digest(), mb_c)}")
    print(f"  sha256 of the tar (diff_id)  {rate(lambda: hashlib.sha256(raw).digest(), mb_u)}")
    print(f"  gunzip (zlib)                "
          f"{rate(lambda: zlib.decompress(data, 16 + zlib.MAX_WBITS), mb_u)} of tar")
    for level in (1, 6):
        t = time.perf_counter()
        out = zlib.compress(raw, level)
        took = time.perf_counter() - t
        print(f"  gzip level {level} (zlib)         {mb_u / took:7.0f} MB/s of tar, "
              f"{len(out) / 1e6:.1f} MB out")


def fetch_only(host: str, data_root: Path) -> float:
    """The pull path up to the store, in-process: manifest, then every blob streamed
    through BlobReader into Store.put_blob (hash checked), without unpacking layers."""
    sys.path.insert(0, str(REPO))
    import json

    from minibox.image.registry.client import Registry
    from minibox.image.registry.pull import get_manifest
    from minibox.image.store import Store

    t = time.perf_counter()
    st = Store(str(data_root))
    st.ensure()
    reg = Registry(host)
    body, _media, _digest = get_manifest(reg, "bench", "1", f"{host}/bench:1")
    m = json.loads(body)
    for desc in [m["config"], *m["layers"]]:
        st.put_blob(reg.blob_reader("bench", desc["digest"], desc["size"]),
                    expected=desc["digest"])
    reg.close()
    return time.perf_counter() - t


def unpack_only(store: Path, data_root: Path) -> float:
    """Store.ensure_layer of the image's layer into an empty store (image/layer.py)."""
    from minibox.image.store import Store

    src = Store(str(store))
    img = src.image("bench:1")
    dst = Store(str(data_root))
    dst.ensure()
    for (d, mt, _size), diff in zip(img.layers, img.diff_ids, strict=True):
        with src.open_blob(d) as f:
            dst.put_blob(f, expected=d)
        t = time.perf_counter()
        dst.ensure_layer(d, diff, mt)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rootfs", help="the tree to make the image from")
    ap.add_argument("--synthetic", action="store_true", help="a synthetic ~100 MB tree")
    ap.add_argument("--seed", type=int, default=1)
    o = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (the image store keeps owners)")
    top = Path(tempfile.mkdtemp(prefix="minibox-bench-registry."))
    regs: list[Registryd] = []
    try:
        tree = top / "tree"
        src = Path(o.rootfs) if o.rootfs else None if o.synthetic else minbase(MINBASE)
        if src:
            clean_tree(src, tree)
            what = f"{src} (debootstrap minbase)" if src == MINBASE else str(src)
        else:
            synthetic(tree)
            what = "synthetic ~100 MB tree"
        size = subprocess.run(["du", "-sh", str(tree)], capture_output=True,
                              text=True).stdout.split()[0]
        print(f"image: {what}, {size} on disk")
        store = top / "store"
        env = dict(os.environ, MINIBOX_DATA_ROOT=str(store), MINIBOX_CONFIG=str(top / "cfg"),
                   MINIBOX_NO_PROGRESS="1")
        t_import = sh(MINIBOX, "import", tree, "bench:1", env=env)
        print(f"minibox import (tar + gzip + unpack): {t_import:.2f} s")
        blobs = sorted((store / "blobs/sha256").iterdir(), key=lambda p: p.stat().st_size)
        per_byte_costs(blobs[-1])
        print(f"load: {os.getloadavg()[0]:.2f} (1-min), {os.cpu_count()} CPUs\n", flush=True)
        times: dict[str, list[float]] = {k: [] for k in
                                         ("minibox push", "skopeo push", "minibox pull",
                                          "skopeo pull", "minibox fetch", "unpack")}
        rng = random.Random(o.seed)
        for r in range(o.rounds):
            a = Registryd(top / f"reg-a{r}").start()
            b = Registryd(top / f"reg-b{r}").start()
            regs += [a, b]
            name = f"{a.host}/bench:1"
            sh(MINIBOX, "tag", "bench:1", name, env=env)
            # The registry must hold the image before either pull, and the oci: layout
            # must exist before skopeo pushes it: those orders are kept, the rest shuffled.
            times["minibox push"].append(sh(MINIBOX, "push", name, env=env))
            layout = top / f"oci{r}"
            steps = [
                ("skopeo pull", ["skopeo", "copy", "-q", "--src-tls-verify=false",
                                 f"docker://{name}", f"oci:{layout}:bench"], None),
                ("minibox pull", [MINIBOX, "pull", name],
                 dict(env, MINIBOX_DATA_ROOT=str(top / f"pulled{r}"))),
            ]
            rng.shuffle(steps)
            for key, argv, e in steps:
                times[key].append(sh(*argv, env=e))
            times["minibox fetch"].append(fetch_only(a.host, top / f"fetched{r}"))
            times["unpack"].append(unpack_only(store, top / f"unpacked{r}"))
            times["skopeo push"].append(sh(
                "skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:bench",
                f"docker://{b.host}/bench:1"))
            a.stop()
            b.stop()
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                  flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"\nmedian of {o.rounds} rounds (load {os.getloadavg()[0]:.2f}):")
        for d in ("push", "pull", "fetch"):
            m, s = med[f"minibox {d}"], med[f"skopeo {'pull' if d == 'fetch' else d}"]
            print(f"  {d:5}  minibox {m:5.2f} s   skopeo {s:5.2f} s   minibox/skopeo {m / s:.2f}")
        print(f"  (pull = fetch + unpack; unpack alone, image/layer.py: {med['unpack']:.2f} s;"
              " fetch = manifest and blobs verified into the store, in-process)")
    finally:
        for reg in regs:
            reg.stop()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
