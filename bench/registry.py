#!/usr/bin/env python3
"""Registry pull and push: minibox vs skopeo, through the same local docker-registry.

The image is a Debian minbase root filesystem (debootstrap --variant=minbase, without
its downloaded .debs), imported once into a minibox store as a one-layer gzip image. If
no such tree is given or can be built, a synthetic ~100 MB tree stands in (--synthetic).

Each round, on fresh registries (new storage, so nothing is skipped or mounted):

    minibox push    store -> registry A                 (HEAD, POST, PUT per blob)
    skopeo pull     registry A -> oci: layout dir       (skopeo copy docker:// oci:)
    minibox pull    registry A -> an empty store        (fetch, verify: the same work)
    minibox 1st run run --rm IMAGE /bin/true            (unpacks the layer, then runs)
    podman pull     registry A -> empty podman storage  (fetch, verify and unpack)
    skopeo push     oci: layout dir -> registry B       (skopeo copy oci: docker://)

The pulls run in a shuffled order per round (seeded). `minibox pull` does what skopeo's
copy into an oci: layout does (manifest and blobs, each sha256 checked, kept
compressed); the layer is unpacked (gunzip, untar, sha256 of the tar for the diff_id) by
the image's first run. So a second comparison puts pull + first run beside podman's
pull, which unpacks at once. The per-byte costs of those steps are measured on the same
layer and printed first, to show where time goes.

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
    # Each step starts with nothing left to write back from the one before (a pull
    # leaves hundreds of MB of dirty pages), so no step pays for another's writes.
    os.sync()
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


def gunzip(data: bytes) -> bytes:
    """Every member of a gzip stream (the store writes layers as 1 MiB members; zlib's
    one-shot decompress stops after the first), fed a piece at a time so that no member
    boundary copies the rest of the stream."""
    out = []
    view = memoryview(data)
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for at in range(0, len(data), 1 << 20):
        piece = bytes(view[at:at + (1 << 20)])
        while piece:
            out.append(d.decompress(piece))
            piece = d.unused_data if d.eof else b""
            if d.eof:
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return b"".join(out)


def per_byte_costs(blob: Path) -> None:
    data = blob.read_bytes()
    raw = gunzip(data)
    mb_c, mb_u = len(data) / 1e6, len(raw) / 1e6

    def rate(fn, mb: float) -> str:
        t = time.perf_counter()
        fn()
        return f"{mb / (time.perf_counter() - t):7.0f} MB/s"

    print(f"layer: {mb_c:.1f} MB gzip, {mb_u:.1f} MB tar")
    print(f"  sha256 of the gzip blob      {rate(lambda: hashlib.sha256(data).digest(), mb_c)}")
    print(f"  sha256 of the tar (diff_id)  {rate(lambda: hashlib.sha256(raw).digest(), mb_u)}")
    print(f"  gunzip (zlib)                {rate(lambda: gunzip(data), mb_u)} of tar")
    try:
        from isal import igzip
    except ImportError:
        pass
    else:
        print(f"  gunzip (ISA-L, as the store) {rate(lambda: igzip.decompress(data), mb_u)} "
              "of tar")
    for level in (1, 6):
        t = time.perf_counter()
        out = zlib.compress(raw, level)
        took = time.perf_counter() - t
        print(f"  gzip level {level} (zlib)         {mb_u / took:7.0f} MB/s of tar, "
              f"{len(out) / 1e6:.1f} MB out")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rootfs", help="the tree to make the image from")
    ap.add_argument("--synthetic", action="store_true", help="a synthetic ~100 MB tree")
    ap.add_argument("--seed", type=int, default=1)
    o = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (the image store keeps owners)")
    # Byte-compile first: with PYTHONDONTWRITEBYTECODE set, a changed module would be
    # compiled again on every start and the timings would measure the compiler.
    subprocess.run([str(REPO / ".venv/bin/python"), "-m", "compileall", "-q",
                    str(REPO / "minibox")], check=True)
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
        keys = ("minibox push", "skopeo push", "minibox pull", "skopeo pull",
                "minibox 1st run", "podman pull")
        times: dict[str, list[float]] = {k: [] for k in keys}
        rng = random.Random(o.seed)
        for r in range(o.rounds):
            a = Registryd(top / f"reg-a{r}").start()
            b = Registryd(top / f"reg-b{r}").start()
            regs += [a, b]
            name = f"{a.host}/bench:1"
            sh(MINIBOX, "tag", "bench:1", name, env=env)
            # The registry must hold the image before any pull, and the oci: layout
            # must exist before skopeo pushes it: those orders are kept, the rest shuffled.
            times["minibox push"].append(sh(MINIBOX, "push", name, env=env))
            layout = top / f"oci{r}"
            pulled = dict(env, MINIBOX_DATA_ROOT=str(top / f"pulled{r}"))
            podman = ["podman", "--root", top / f"podman{r}", "--runroot",
                      top / f"podman-run{r}", "--storage-driver", "overlay",
                      "--events-backend", "none"]
            steps = [
                ("skopeo pull", [["skopeo", "copy", "-q", "--src-tls-verify=false",
                                  f"docker://{name}", f"oci:{layout}:bench"]], None),
                ("minibox pull", [[MINIBOX, "pull", name],
                                  [MINIBOX, "run", "--rm", name, "/bin/true"]], pulled),
                ("podman pull", [[*podman, "pull", "-q", "--tls-verify=false", name]], None),
            ]
            rng.shuffle(steps)
            for key, argvs, e in steps:
                times[key].append(sh(*argvs[0], env=e))
                if len(argvs) > 1:
                    times["minibox 1st run"].append(sh(*argvs[1], env=e))
            sh(*podman, "rmi", "-a", "-f")
            sh(*podman, "system", "reset", "-f")
            times["skopeo push"].append(sh(
                "skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:bench",
                f"docker://{b.host}/bench:1"))
            a.stop()
            b.stop()
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                  flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"\nmedian of {o.rounds} rounds (load {os.getloadavg()[0]:.2f}):")
        for d in ("push", "pull"):
            m, s = med[f"minibox {d}"], med[f"skopeo {d}"]
            print(f"  {d:5}  minibox {m:5.2f} s   skopeo {s:5.2f} s   minibox/skopeo {m / s:.2f}")
        m = med["minibox pull"] + med["minibox 1st run"]
        print(f"  pull + first run (unpacks)  minibox {m:5.2f} s   podman pull "
              f"{med['podman pull']:5.2f} s   minibox/podman {m / med['podman pull']:.2f}")
        print("  (minibox pull = manifest and blobs verified into the store, as skopeo's "
              "oci: copy; its first run unpacks the layer and runs /bin/true)")
    finally:
        for reg in regs:
            reg.stop()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
